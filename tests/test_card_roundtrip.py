"""Every card that builds offline survives ``save_pretrained`` -> ``zoo.load`` exactly (same state, same outputs,
ties kept), and a tied tensor (lm_head = embed_tokens) loads from whichever of its names a file uses, while a
tensor that is really missing is still refused."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from encoders.smiles.hf_encoder import RXNMAPPER_ALBERT
from tasks.data.audio_scenes import SAMPLE_RATE, make_clip
from tests.helpers import image
from zoo.cards import card, list_models
from zoo.errors import WeightsError
from zoo.io import load_safetensors, load_state_strict, sha256_file, tied_groups
from zoo.models.dual_encoder import DualEncoder
from zoo.models.multimodal_lm import MultimodalLM
from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM
from zoo.models.predictor import Predictor
from zoo.models.template_model import TemplateModel
from zoo.recipes import export_weights

# a spec's ``pretrained`` that names a file inside an installed package (not the Hub): the package it needs
PACKAGE_CHECKPOINTS = {RXNMAPPER_ALBERT: "rxnmapper"}

MOLECULES = ["CC(=O)OCC", "c1ccc(-c2ccccc2)cc1"]  # products for a retro model, molecules for an encoder
REACTANTS = ["CCO.CC(=O)Cl", "OB(O)c1ccccc1.Brc1ccccc1"]  # what a forward model reads
ITEMS = {
    "image": [image(0), image(1)],
    "smiles": MOLECULES,
    "molecule_graph": MOLECULES,
    "text": ["a red circle left of a blue square", "ethyl acetate"],
    "audio": [(make_clip(0, i).samples, SAMPLE_RATE) for i in (0, 1)],
}


def _installed(package: str) -> bool:
    try:
        distribution(package)
    except PackageNotFoundError:
        return False
    return True


def _pretrained_references(spec: Any) -> Iterator[str]:
    """Every ``pretrained`` value in a spec (a Hub repo, an open_clip tag, or a package checkpoint)."""
    if isinstance(spec, dict):
        if isinstance(spec.get("pretrained"), str):
            yield spec["pretrained"]
        for value in spec.values():
            yield from _pretrained_references(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _pretrained_references(value)


def offline_skip_reason(name: str) -> str | None:
    """Why card ``name`` cannot be built on a machine without a network or ``../shared`` (None if it can):
    every weight file must ship with this package or an installed one, and so must what its spec names."""
    model_card = card(name)
    for source in model_card.weights:
        if source.bundled:
            continue
        if source.package:
            if not _installed(source.package):
                return f"{source.package} is not installed (make venv installs it --no-deps)"
            continue
        where = f"the Hub ({source.hf_repo})" if source.hf_repo else source.url or "outside this package"
        return f"its weights {source.file} come from {where}; tests use no network"
    for reference in _pretrained_references(model_card.spec):
        package = PACKAGE_CHECKPOINTS.get(reference)
        if package is None:
            return f"its spec loads pretrained {reference!r} from the Hub or the web; tests use no network"
        if not _installed(package):
            return f"{package} is not installed (make venv installs it --no-deps)"
    return None


def outputs(model: Any) -> list[Any]:
    """What the model gives on a small fixed input, by family: logits and greedy text (multimodal LMs),
    embeddings (encoders, dual encoders), logits and top-k outcomes (template models), values (predictors)."""
    with torch.no_grad():
        if isinstance(model, MultimodalLM):
            placeholders = model.processor.placeholders
            prompts = [" ".join(placeholders[m] for m in sorted(placeholders)) + f" Describe item {i}." for i in (0, 1)]
            items = {m: [[ITEMS[m][i]] for i in (0, 1)] for m in placeholders}
            # an encoder-decoder's forward reads an answer as the decoder's input; a causal LM's reads none
            targets = ["an answer", "another answer"] if isinstance(model, MultimodalSeq2SeqLM) else None
            batch = model.processor(prompts, items, targets=targets)
            return [model(**batch).logits,
                    model.generate_text(prompts, items, max_new_tokens=4, do_sample=False, num_beams=1)]
        if isinstance(model, DualEncoder):
            return [model.embed(m, ITEMS[m]) for m in sorted(model.towers)] + [model.embed_text(ITEMS["text"])]
        if isinstance(model, TemplateModel):
            inputs = REACTANTS if model.spec.direction == "forward" else MOLECULES
            return [model(**model.processor(model.modality, inputs).inputs), model.predict(inputs, top_k=3)]
        if isinstance(model, Predictor):
            return [model.predict([f"{r}>>{p}" for r, p in zip(REACTANTS, MOLECULES, strict=True)])]
        return [model.embed(ITEMS[model.modality])]


def assert_same(model: Any, reloaded: Any) -> None:
    """Equal state key by key (values and dtypes), the same ties, the same outputs bit for bit."""
    ours, theirs = model.state_dict(), reloaded.state_dict()
    assert list(theirs) == list(ours)
    differ = [k for k in ours if ours[k].dtype != theirs[k].dtype or not torch.equal(ours[k], theirs[k])]
    assert not differ, f"{len(differ)} tensor(s) changed: {differ[:10]}"
    assert tied_groups(reloaded) == tied_groups(model)
    for expected, got in zip(outputs(model), outputs(reloaded), strict=True):
        if isinstance(expected, torch.Tensor):
            assert torch.equal(expected, got)
        else:
            assert expected == got


@pytest.fixture
def no_network(monkeypatch):
    """Weight sources that could reach the Hub read only local copies."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", list_models())
def test_every_offline_card_round_trips_through_save_pretrained(name, tmp_path, no_network):
    if reason := offline_skip_reason(name):
        pytest.skip(reason)
    model = zoo.load(name)
    reloaded = zoo.load(model.save_pretrained(tmp_path / name))
    assert_same(model, reloaded)


# ---- a tiny tied model: the tie survives, either name loads, a missing tensor is refused -----------------------

EMBED = "language_model.model.embed_tokens.weight"
HEAD = "language_model.lm_head.weight"


def tied_spec() -> dict[str, Any]:
    spec = copy.deepcopy(card("tiny-test-vlm").spec)
    spec["backbone"]["config"]["model_config"]["tie_word_embeddings"] = True
    return spec


@pytest.fixture(scope="module")
def tied():
    model = zoo.build(tied_spec()).eval()
    assert tied_groups(model) == [[EMBED, HEAD]]
    return model


@pytest.fixture(scope="module")
def saved(tied, tmp_path_factory) -> Path:
    return tied.save_pretrained(tmp_path_factory.mktemp("tied") / "model")


def _rewrite(saved: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of ``saved`` whose weights file went through ``edit`` (its sha256 updated, so only keys differ)."""
    copy_dir = tmp_path / "copy"
    shutil.copytree(saved, copy_dir)
    state = load_file(str(copy_dir / "model.safetensors"))
    edit(state)
    save_file(state, str(copy_dir / "model.safetensors"))
    config = json.loads((copy_dir / "config.json").read_text())
    config["weights"]["sha256"] = sha256_file(copy_dir / "model.safetensors")
    (copy_dir / "config.json").write_text(json.dumps(config))
    return copy_dir


def test_a_tied_model_reloads_exactly_with_its_tie(tied, saved):
    assert len(set(load_file(str(saved / "model.safetensors"))) & {EMBED, HEAD}) == 1  # written once
    reloaded = zoo.load(saved)
    assert_same(tied, reloaded)
    head, embed = reloaded.get_parameter(HEAD), reloaded.get_parameter(EMBED)
    assert head is embed  # one tensor, not two equal copies
    with torch.no_grad():
        embed.add_(1.0)
    assert torch.equal(head, embed)


@pytest.mark.parametrize("kept", [EMBED, HEAD])
def test_a_tied_tensor_loads_under_either_of_its_names(tied, saved, tmp_path, kept):
    """save_pretrained (safetensors) keeps one name, a recipe's export the other; both load."""
    def keep_one(state: dict[str, torch.Tensor]) -> None:
        state[kept] = next(state.pop(key) for key in (EMBED, HEAD) if key in state)

    reloaded = zoo.load(_rewrite(saved, tmp_path, keep_one))
    assert reloaded.get_parameter(HEAD) is reloaded.get_parameter(EMBED)
    assert torch.equal(reloaded.get_parameter(HEAD), tied.get_parameter(HEAD))


def test_exported_weights_hold_a_tied_tensor_once_and_load_strictly(tied, tmp_path):
    target = tmp_path / "w.safetensors"
    export_weights(tied, ["encoders", "projectors", "language_model"], target)
    state = load_safetensors(target)
    assert EMBED in state and HEAD not in state  # the first name of the pair
    fresh = zoo.build(tied_spec())
    load_state_strict(fresh, state, "exported")
    assert fresh.get_parameter(HEAD) is fresh.get_parameter(EMBED)
    assert torch.equal(fresh.get_parameter(HEAD), tied.get_parameter(HEAD))


def test_a_tied_tensor_missing_under_every_name_is_refused(saved, tmp_path):
    def drop_both(state: dict[str, torch.Tensor]) -> None:
        state.pop(EMBED, None)
        state.pop(HEAD, None)

    with pytest.raises(WeightsError, match=rf"1 missing key\(s\): {EMBED}$"):
        zoo.load(_rewrite(saved, tmp_path, drop_both))


def test_a_tied_tensor_stored_twice_is_refused(tied, saved, tmp_path):
    def store_both(state: dict[str, torch.Tensor]) -> None:
        state[EMBED], state[HEAD] = (tied.get_parameter(HEAD).detach().clone() for _ in range(2))

    with pytest.raises(WeightsError, match=f"holds tied tensors more than once: {EMBED} = {HEAD}"):
        zoo.load(_rewrite(saved, tmp_path, store_both))


def test_an_untied_missing_key_is_still_refused_in_a_tied_model(saved, tmp_path):
    with pytest.raises(WeightsError, match=r"1 missing key\(s\): projectors.image.layers.2.bias"):
        zoo.load(_rewrite(saved, tmp_path, lambda s: s.pop("projectors.image.layers.2.bias")))
