"""MultimodalLM: forward/generate, placeholder expansion and checks, save -> load, strict weights, hub paths."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers import image
from zoo.errors import ModelNotFoundError, WeightsError
from zoo.io import sha256_file
from zoo.processing import IGNORE_INDEX, PlaceholderCountError
from zoo.weights.convert import convert_pickle_checkpoint

PROMPTS = ["<image> What colour is the circle?", "Compare <image> with <image> please"]
ITEMS = {"image": [[image(0)], [image(1), image(2)]]}


@pytest.fixture(scope="module")
def model():
    return zoo.build("tiny-test-vlm").eval()


GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 256, "vocab_size": 600}


@pytest.fixture(scope="module", params=["llama (rotary positions)", "gpt2 (absolute positions)"])
def any_backbone_model(request, model):
    """Llama's rotary positions hide a shifted position count; GPT-2's absolute positions expose it."""
    if request.param.startswith("llama"):
        return model
    spec = json.loads(json.dumps(zoo.card("tiny-test-vlm").spec))
    spec["backbone"]["config"]["model_config"] = GPT2
    return zoo.build(spec).eval()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("saved") / "tiny")


def test_placeholders_expand_to_the_token_count_of_encoder_and_projector(model):
    batch = model.processor(PROMPTS, ITEMS)
    pid = model.processor.placeholder_ids["image"]
    per_image = model.projectors["image"].num_tokens(model.encoders["image"].num_tokens((32, 32)))
    assert per_image == 16
    assert (batch["input_ids"] == pid).sum(1).tolist() == [16, 32]
    assert batch["modality_inputs"]["image"]["pixel_values"].shape == (3, 3, 32, 32)


def test_forward_loss_is_finite_and_only_on_answer_tokens(model):
    batch = model.processor(PROMPTS, ITEMS, targets=["red", "they differ"])
    out = model(**batch)
    assert torch.isfinite(out.loss)
    tok = model.processor.tokenizer
    for row, answer in zip(batch["labels"], ["red", "they differ"], strict=True):
        supervised = row[row != IGNORE_INDEX].tolist()
        assert supervised == tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    out.loss.backward()
    assert model.projectors["image"].layers[0].weight.grad is not None
    model.zero_grad()


def test_logits_do_not_depend_on_padding_or_batch_composition(any_backbone_model):
    model = any_backbone_model
    alone = model.processor(PROMPTS[:1], {"image": ITEMS["image"][:1]})
    together = model.processor(PROMPTS, ITEMS)
    n = alone["input_ids"].shape[1]
    with torch.no_grad():
        a = model(**alone).logits[0]
        b = model(**together).logits[0, -n:]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_generate_is_batched_with_left_padding_and_batch_invariant(any_backbone_model):
    model = any_backbone_model
    together = model.generate_text(PROMPTS, ITEMS, max_new_tokens=6, do_sample=False)
    single = [
        model.generate_text([p], {"image": [imgs]}, max_new_tokens=6, do_sample=False)[0]
        for p, imgs in zip(PROMPTS, ITEMS["image"], strict=True)
    ]
    assert together == single
    right = model.processor(PROMPTS, ITEMS, padding_side="right")
    with pytest.raises(ValueError, match="left padding"):
        model.generate(**right, max_new_tokens=2)


def test_several_sequences_per_prompt_come_back_as_one_list_per_prompt(model):
    """``num_return_sequences=k`` gives ``out[i]``: the k candidates of ``prompts[i]``, as when it is generated alone;
    the first is the one returned with the default k=1."""
    beams = {"max_new_tokens": 3, "num_beams": 2, "do_sample": False}
    together = model.generate_text(PROMPTS, ITEMS, num_return_sequences=2, **beams)
    assert [len(candidates) for candidates in together] == [2, 2] and together[0] != together[1]
    for prompt, imgs, candidates in zip(PROMPTS, ITEMS["image"], together, strict=True):
        assert model.generate_text([prompt], {"image": [imgs]}, num_return_sequences=2, **beams) == [candidates]
    assert model.generate_text(PROMPTS, ITEMS, **beams) == [candidates[0] for candidates in together]  # k=1: flat


def test_two_images_in_one_prompt_go_to_their_own_spans(model):
    """Swapping the two images of prompt 1 changes its logits: each span gets its own item's features."""
    swapped = {"image": [[image(0)], [image(2), image(1)]]}
    with torch.no_grad():
        a = model(**model.processor(PROMPTS, ITEMS)).logits[1]
        b = model(**model.processor(PROMPTS, swapped)).logits[1]
    assert not torch.allclose(a, b)


def test_placeholder_count_mismatch_is_a_clear_error(model):
    with pytest.raises(PlaceholderCountError, match="prompt 0 has 1 <image> placeholder.*2 image item"):
        model.processor(["<image> hi"], {"image": [[image(0), image(1)]]})
    with pytest.raises(PlaceholderCountError, match="more <image> placeholders"):
        model.processor(["<image> <image> hi"], {"image": [[image(0)]]})
    batch = model.processor(PROMPTS, ITEMS)
    pid = model.processor.placeholder_ids["image"]
    ids = batch["input_ids"].clone()
    ids[1, (ids[1] == pid).nonzero()[0]] = model.processor.tokenizer.pad_token_id
    batch["input_ids"] = ids
    with pytest.raises(PlaceholderCountError, match="sample 1 has 31 <image> placeholder tokens.*produce 32"):
        model(**batch)


def test_bad_image_names_the_item(model, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(Exception, match=r"image 1 \(.*broken.png\): not a readable image"):
        model.processor(["<image> <image>"], {"image": [[image(0), broken]]})


def test_save_then_load_gives_identical_logits(model, saved):
    loaded = zoo.load(saved)
    batch = model.processor(PROMPTS, ITEMS)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**loaded.processor(PROMPTS, ITEMS)).logits)
    assert loaded.spec == model.spec
    assert {p.name for p in saved.iterdir()} >= {"config.json", "model.safetensors", "README.md", "tokenizer"}
    assert zoo.load(f"local-dir:{saved}").spec == model.spec


def test_saved_card_is_a_parseable_model_card(saved):
    from zoo.cards import parse_card

    parsed = parse_card((saved / "README.md").read_text(), "README.md")
    assert parsed.spec == json.loads((saved / "config.json").read_text())["spec"]


def _tamper(saved, tmp_path, edit):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    state = load_file(str(copy / "model.safetensors"))
    edit(state)
    save_file(state, str(copy / "model.safetensors"))
    config = json.loads((copy / "config.json").read_text())
    config["weights"]["sha256"] = sha256_file(copy / "model.safetensors")
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_strict_load_lists_missing_keys(saved, tmp_path):
    copy = _tamper(saved, tmp_path, lambda s: s.pop("projectors.image.layers.2.bias"))
    with pytest.raises(WeightsError, match=r"1 missing key\(s\): projectors.image.layers.2.bias"):
        zoo.load(copy)


def test_strict_load_lists_unexpected_keys(saved, tmp_path):
    copy = _tamper(saved, tmp_path, lambda s: s.update({"projectors.image.extra": torch.zeros(2)}))
    with pytest.raises(WeightsError, match=r"1 unexpected key\(s\): projectors.image.extra"):
        zoo.load(copy)


def test_strict_load_rejects_wrong_shapes(saved, tmp_path):
    copy = _tamper(saved, tmp_path, lambda s: s.update({"projectors.image.layers.2.bias": torch.zeros(3)}))
    with pytest.raises(WeightsError, match="has shape"):
        zoo.load(copy)


def test_sha256_mismatch_is_an_error(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    config = json.loads((copy / "config.json").read_text())
    config["weights"]["sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="sha256 of .*model.safetensors is [0-9a-f]{64}, but its card says 0{64}"):
        zoo.load(copy)


def test_processor_drift_is_detected(saved, tmp_path):
    from zoo.assembly import ProcessorDriftError

    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    config = json.loads((copy / "config.json").read_text())
    config["processor"]["encoders"]["image"]["resolved_data_config"]["mean"] = [0.4, 0.4, 0.4]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ProcessorDriftError, match="resolved_data_config"):
        zoo.load(copy)


def _fake_hub_cache(saved, cache, repo="org/tiny", commit="a" * 40):
    """Lay out ``saved`` as the Hugging Face cache would after downloading ``repo`` at ``commit``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(saved, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return root


def test_hub_loading_goes_through_huggingface_hub_offline(model, saved, tmp_path, monkeypatch):
    _fake_hub_cache(saved, tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = zoo.load("hf-hub:org/tiny")
    batch = model.processor(PROMPTS, ITEMS)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert zoo.load("hf-hub:org/tiny@main").spec == model.spec


def test_hub_missing_file_error_names_file_and_prefetch(saved, tmp_path, monkeypatch):
    root = _fake_hub_cache(saved, tmp_path / "hub")
    (root / "snapshots" / ("a" * 40) / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError, match=r"could not get model.safetensors from hf-hub:org/tiny.*hf download"):
        zoo.load("hf-hub:org/tiny")
    with pytest.raises(ModelNotFoundError, match="could not get config.json from hf-hub:org/other@v1"):
        zoo.load("hf-hub:org/other@v1")


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no directory"):
        zoo.load(str(tmp_path / "nope"))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_conversion_is_explicit_and_weights_only(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(2)}, good)
    out = convert_pickle_checkpoint(good, tmp_path / "good.safetensors", lambda s: {k: "enc." + k for k in s})
    assert torch.equal(load_file(str(out))["enc.w"], torch.ones(2))
    with pytest.raises(WeightsError, match=r"1 missing key\(s\): w"):
        convert_pickle_checkpoint(good, tmp_path / "bad.safetensors", lambda s: {})
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        convert_pickle_checkpoint(evil, tmp_path / "evil.safetensors", lambda s: {k: k for k in s})
    assert not (tmp_path / "evil.safetensors").exists()


def test_load_places_on_device_and_dtype(saved):
    loaded = zoo.load(saved, device="cpu", dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16 and not loaded.training


def test_an_image_and_two_molecules_in_one_prompt(tmp_path):
    from tests.helpers import image_molecule_lm_spec

    model = zoo.build(image_molecule_lm_spec()).eval()
    prompts = ["<image> shows <molecule> reacting with <molecule>", "What is <molecule>?"]
    items = {"image": [[image(0)], []], "molecule_graph": [["CCO", "c1ccccc1"], ["CC(=O)O"]]}
    batch = model.processor(prompts, items, targets=["ester", "acetic acid"])
    mol_id = model.processor.placeholder_ids["molecule_graph"]
    assert (batch["input_ids"] == mol_id).sum(1).tolist() == [3 + 6, 4]  # one token per heavy atom
    assert torch.isfinite(model(**batch).loss)
    reloaded = zoo.load(model.save_pretrained(tmp_path / "m"))
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


def test_processor_model_token_count_drift_is_caught_per_item(model):
    """A processor whose count function disagrees with the model (e.g. built from another config) fails."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class OffByOne:
        def num_tokens(self, n_in: int) -> int:
            return n_in + 1

    processor = model.processor
    saved = processor.projector_configs["image"]
    processor.projector_configs["image"] = OffByOne()
    try:
        batch = processor(PROMPTS, ITEMS)
    finally:
        processor.projector_configs["image"] = saved
    with pytest.raises(PlaceholderCountError, match="image item 0 was given 17 placeholder tokens .* produce 16"):
        model(**batch)
