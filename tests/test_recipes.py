"""Card recipes (`zoo recipe`): what a recipe may say, which weights it exports, and the bundled weight source."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tasks.data.manifest import read_rows
from zoo.cards import WeightSource, card
from zoo.errors import ModelNotFoundError
from zoo.recipes import Recipe, export_weights, init_from
from zoo.spec import SpecError
from zoo.weights import fetch_weights


def test_every_recipe_in_the_cards_is_complete():
    with_recipe = [name for name in zoo.list_models() if card(name).recipe]
    assert {"rxn-retro-uspto50k", "moltext-gnn-minilm"} <= set(with_recipe)
    for name in with_recipe:
        recipe = Recipe.from_card(name)
        bundled = [w for w in card(name).weights if w.bundled]
        # what run_recipe writes: the exported tensors, then each asset of the model as weights/NAME.ASSET
        assert [w.file for w in bundled if w.format != "asset"] == [f"weights/{name}.safetensors"], name
        assert all(w.file == f"weights/{name}.{w.asset}" for w in bundled if w.format == "asset"), name
        assert recipe.export, name


def test_a_card_without_recipe_says_so():
    with pytest.raises(SpecError, match="tiny-test-vlm has no recipe"):
        Recipe.from_card("tiny-test-vlm")


def test_export_writes_only_the_named_prefixes_with_their_sha256(tmp_path):
    model = zoo.build("tiny-test-vlm")
    target = tmp_path / "w.safetensors"
    digest = export_weights(model, ["projectors"], target)
    assert set(load_file(target)) == {k for k in model.state_dict() if k.startswith("projectors.")}
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(SpecError, match="match no weight"):
        export_weights(model, ["nothing_here"], tmp_path / "x.safetensors")


def test_init_takes_one_part_of_a_named_model():
    """`init: {encoders.image: scene-clip-tiny:towers.image}` starts a VLM's encoder from a trained CLIP tower."""
    spec = copy.deepcopy(card("scene-vlm-tiny").spec)
    spec["encoders"]["image"]["config"]["model_kwargs"]["embed_dim"] = 64  # scene-clip-tiny's tower width
    model = zoo.build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoders.image.")}
    init_from(model, "encoders.image", "scene-clip-tiny:towers.image")
    tower = zoo.load("scene-clip-tiny").get_submodule("towers.image").state_dict()
    loaded = model.get_submodule("encoders.image").state_dict()
    assert tower.keys() == loaded.keys() and all(torch.equal(loaded[k], tower[k]) for k in tower)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing else changed
    with pytest.raises(SpecError, match=r"no sub-module 'towers.audio'; it has: .*towers.image"):
        init_from(model, "encoders.image", "scene-clip-tiny:towers.audio")
    with pytest.raises(SpecError, match="the model has no sub-module 'encoders.audio'"):
        init_from(model, "encoders.audio", "scene-clip-tiny:towers.image")


def test_a_missing_bundled_file_says_how_to_rebuild_it():
    source = WeightSource(file="weights/no-such-model.safetensors", sha256="0" * 64, bundled=True)
    with pytest.raises(ModelNotFoundError, match="zoo recipe no-such-model"):
        fetch_weights(source)


def test_tsv_reader_keeps_quotes_inside_fields(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text('CID\tSMILES\tdescription\n1\tCCO\tThe molecule is "ethanol", a primary alcohol.\n2\tC\n')
    rows = read_rows("tsv", path)
    assert rows[0].fields["description"] == 'The molecule is "ethanol", a primary alcohol.'
    assert not rows[1].ok and "pairs.txt:3" in rows[1].error
