"""The ``clap-htsat-unfused`` card is transformers' ``ClapModel`` as a DualEncoder.

A tiny random ``ClapModel`` (HTSAT with two stages, a two-layer RoBERTa, the card's 512-d projections) and its
``ClapProcessor`` are saved into a Hugging Face cache at the card's pinned commit, and the card is loaded by
name with ``HF_HUB_OFFLINE=1``, the way a user with a pre-fetched cache loads it. Audio and text embeddings
and both logit matrices (CLAP's two temperatures set apart) must equal transformers' within 1e-5; the zero-shot
audio task runs with CLAP's prompt, the model round-trips, and every checkpoint key is claimed strictly.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from encoders.audio.clap import ClapAudioEncoder, ClapAudioEncoderConfig
from encoders.clap_checkpoint import claim
from encoders.text.clap import ClapTextEncoder, ClapTextEncoderConfig
from encoders.text.tokenizers import tokenizer_path
from zoo.cards import card
from zoo.models.dual_encoder import DualEncoder
from zoo.spec import SpecError, spec_from_dict

NAME = "clap-htsat-unfused"
REPO = "laion/clap-htsat-unfused"
REVISION = card(NAME).spec["text_tower"]["config"]["revision"]
TINY_AUDIO = {"spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 8, "depths": [1, 1],
              "num_attention_heads": [2, 2], "window_size": 4, "hidden_size": 16, "patch_stride": 4, "patch_size": 4}
TINY_TEXT = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
SCALE_A, SCALE_T = math.log(20.0), math.log(9.0)  # apart, so a swapped or shared scale shows
CLASSES = ["dog", "rain", "siren"]
PROMPTS = [f"This is a sound of {label}." for label in CLASSES]  # CLAP's zero-shot template
RATE = 48000


def clips() -> list[tuple[np.ndarray, int]]:
    """Clips up to the tiny extractor's 2 s window (longer ones are cropped at random by transformers)."""
    rng = np.random.RandomState(0)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(50000) / RATE)
    return [(rng.uniform(-0.5, 0.5, 30000).astype(np.float32), RATE), (tone.astype(np.float32), RATE),
            (rng.uniform(-0.5, 0.5, 2 * RATE).astype(np.float32), RATE)]


def roberta_tokenizer():
    """A RoBERTa tokenizer built offline: the bundled tiny byte-level BPE with RoBERTa's special-token ids."""
    from transformers import RobertaTokenizer

    model = json.loads((Path(tokenizer_path("bundled:tiny-bpe")) / "tokenizer.json").read_text())["model"]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({token: i for token, i in model["vocab"].items() if i >= len(vocab)})
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[tuple(pair) for pair in model["merges"]])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The tiny ClapModel and its ClapProcessor in a Hugging Face cache as ``REPO`` at ``REVISION``; the cache
    is this module's and offline while it runs. Yields (reference model, reference processor, snapshot)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    cache = tmp_path_factory.mktemp("hf") / "hub"
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    tokenizer = roberta_tokenizer()
    torch.manual_seed(0)
    reference = ClapModel(ClapConfig(text_config={**TINY_TEXT, "vocab_size": len(tokenizer)}, audio_config=TINY_AUDIO,
                                     projection_dim=card(NAME).spec["embed_dim"])).eval()
    with torch.no_grad():
        reference.logit_scale_a.fill_(SCALE_A)
        reference.logit_scale_t.fill_(SCALE_T)
    reference.save_pretrained(snapshot)
    extractor = ClapFeatureExtractor(feature_size=TINY_AUDIO["num_mel_bins"], max_length_s=2, truncation="rand_trunc")
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(snapshot)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(cache))
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield reference, ClapProcessor.from_pretrained(snapshot), snapshot


@pytest.fixture(scope="module")
def model(hub):
    return zoo.load(NAME)


def test_the_card_loads_by_name_as_a_dual_encoder_with_both_temperatures(hub, model):
    assert isinstance(model, DualEncoder)
    assert type(model.towers["audio"]).__name__ == "ClapAudioEncoder"
    assert type(model.text_tower).__name__ == "ClapTextEncoder"
    assert model.logit_scale.item() == pytest.approx(SCALE_A)
    assert model.text_logit_scale.item() == pytest.approx(SCALE_T)
    reference, _, _ = hub
    theirs = reference.state_dict()
    ours = {**{f"towers.audio.model.{k}": v for k, v in model.towers["audio"].model.state_dict().items()},
            **{f"text_tower.model.{k}": v for k, v in model.text_tower.model.state_dict().items()}}
    assert len(ours) + 2 == len(theirs)  # every tensor of the checkpoint but the two scales is in a tower
    for key, value in ours.items():
        assert torch.equal(value, theirs[key.split(".model.", 1)[1]]), key


def test_the_processors_give_transformers_inputs(hub, model):
    _, processor, _ = hub
    audio = model.processor("audio", clips()).inputs
    expected = processor(audio=[c for c, _ in clips()], sampling_rate=RATE, return_tensors="pt")
    torch.testing.assert_close(audio["input_features"], expected["input_features"], atol=0, rtol=0)
    text = model.processor("text", PROMPTS).inputs
    expected = processor(text=PROMPTS, padding=True, return_tensors="pt")
    assert torch.equal(text["input_ids"], expected["input_ids"])
    assert torch.equal(text["attention_mask"], expected["attention_mask"])


def reference_outputs(reference, model, items):
    """transformers' embeddings and logits on the inputs our processors give (shown equal to its own above)."""
    audio = model.processor("audio", items).inputs
    text = model.processor("text", PROMPTS).inputs
    with torch.no_grad():
        out = reference(**text, **audio)
        audio_features = reference.get_audio_features(**audio).pooler_output
        text_features = reference.get_text_features(**text).pooler_output
    return audio_features, text_features, out.logits_per_audio, out.logits_per_text


def test_embeddings_and_logits_equal_transformers(hub, model):
    reference, _, _ = hub
    items = [*clips(), (np.random.RandomState(1).uniform(-0.5, 0.5, 5 * RATE).astype(np.float32), RATE)]  # cut to 2 s
    audio_features, text_features, per_audio, per_text = reference_outputs(reference, model, items)
    with torch.no_grad():
        audio = model.embed("audio", items)
        text = model.embed_text(PROMPTS)
        ours_per_audio, ours_per_text = model.logits(audio, text)
    for ours, theirs in [(audio, audio_features), (text, text_features), (ours_per_audio, per_audio),
                         (ours_per_text, per_text)]:
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours_per_text, ours_per_audio.T)  # two temperatures, not one transposed


def test_zero_shot_with_clap_prompt_ranks_classes_as_transformers(hub, model):
    reference, _, _ = hub
    _, _, per_audio, _ = reference_outputs(reference, model, clips())
    with torch.no_grad():
        audio, text = model.embed("audio", clips()), model.embed_text(PROMPTS)
        ours, _ = model.logits(audio, text)
    assert model.similarity(audio, text).argmax(1).tolist() == per_audio.argmax(1).tolist()
    torch.testing.assert_close(ours.softmax(-1), per_audio.softmax(-1), atol=1e-6, rtol=0)
    assert "This is a sound of {label}." in card(NAME).body


def test_the_zero_shot_audio_task_with_clap_prompt_alone_predicts_transformers_top_class(hub, model, tmp_path):
    """``zoo eval clap-htsat-unfused --task zero-shot-audio-classification --set class_templates=[...]`` on a few
    16 kHz clips (the task's item checks); the model resamples them to 48 kHz."""
    import soundfile as sf

    from zoo.evaluation.evaluate import evaluate

    reference, _, _ = hub
    labels = ["dog", "rain", "siren", "dog"]
    for i in range(len(labels)):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * np.arange(16000) / 16000)
        sf.write(tmp_path / f"{i}.wav", tone.astype(np.float32), 16000)
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio": f"{i}.wav", "label": label}) + "\n" for i, label in enumerate(labels)))
    results = evaluate(model, "zero-shot-audio-classification", manifest, batch_size=2, progress=False, report=False,
                       class_templates=["This is a sound of {}."])
    assert results["num_failed"] == 0
    classes = sorted(set(labels))
    audio = model.processor("audio", [str(tmp_path / f"{i}.wav") for i in range(len(labels))]).inputs
    text = model.processor("text", [f"This is a sound of {c}." for c in classes]).inputs
    with torch.no_grad():
        top = reference(**text, **audio).logits_per_audio.argmax(1)
    assert [row["prediction"] for row in results["rows"]] == [classes[k] for k in top]


def test_the_model_survives_save_pretrained_and_load(hub, model, tmp_path):
    reloaded = zoo.load(model.save_pretrained(tmp_path / "clap"))
    assert reloaded.spec == model.spec
    ours, theirs = model.state_dict(), reloaded.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with torch.no_grad():
        for modality, items in (("audio", clips()), ("text", PROMPTS)):
            assert torch.equal(model.embed(modality, items), reloaded.embed(modality, items))


def test_a_shared_scale_spec_gives_the_transposed_logits(hub, model):
    spec = {**card(NAME).spec, "logit_scales": "shared"}
    shared = zoo.build(spec)
    assert shared.text_logit_scale is None and "text_logit_scale" not in shared.state_dict()
    audio, text = torch.randn(3, 4), torch.randn(2, 4)
    per_item, per_text = shared.logits(audio, text)
    assert torch.equal(per_text, per_item.T)
    with pytest.raises(SpecError, match="unknown spec.logit_scales 'both'; allowed: shared, per-direction"):
        spec_from_dict({**spec, "logit_scales": "both"})


def copy_checkpoint(snapshot: Path, target: Path, edit) -> str:
    """A local copy of the checkpoint whose weights went through ``edit``."""
    shutil.copytree(snapshot, target)
    state = load_file(str(target / "model.safetensors"))
    edit(state)
    save_file(state, str(target / "model.safetensors"))
    return str(target)


def test_every_checkpoint_key_is_claimed_and_every_tower_tensor_filled(hub, tmp_path):
    _, _, snapshot = hub
    stranger = copy_checkpoint(snapshot, tmp_path / "stranger", lambda s: s.update({"lm_head.weight": torch.ones(1)}))
    with pytest.raises(ValueError, match="belong to no CLAP tower .*lm_head.weight"):
        ClapAudioEncoder(ClapAudioEncoderConfig(pretrained=stranger))
    missing = copy_checkpoint(snapshot, tmp_path / "missing", lambda s: s.pop("text_projection.linear2.bias"))
    with pytest.raises(ValueError, match="(?s)text tower .* does not fit .*Missing .*text_projection.linear2.bias"):
        ClapTextEncoder(ClapTextEncoderConfig(pretrained=missing))
    ClapAudioEncoder(ClapAudioEncoderConfig(pretrained=missing))  # the audio half is whole
    keys = list(load_file(str(snapshot / "model.safetensors")))
    own, scales = claim(keys, "audio", "the tiny checkpoint")
    assert scales == ["logit_scale_a", "logit_scale_t"]
    assert own and all(k.startswith(("audio_model.", "audio_projection.")) for k in own)
    assert not any(k.endswith("relative_position_index") for k in own)  # derived: rebuilt from the config


def test_a_pickle_only_checkpoint_loads_the_same_tensors(hub, model, tmp_path):
    _, _, snapshot = hub
    target = tmp_path / "pickle"
    shutil.copytree(snapshot, target)
    torch.save(load_file(str(target / "model.safetensors")), target / "pytorch_model.bin")
    (target / "model.safetensors").unlink()
    text = ClapTextEncoder(ClapTextEncoderConfig(pretrained=str(target)))
    assert (text.logit_scale_init, text.text_logit_scale_init) == pytest.approx((SCALE_A, SCALE_T))
    ours = model.text_tower.model.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in text.model.state_dict().items())
