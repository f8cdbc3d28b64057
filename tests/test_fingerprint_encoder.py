"""The ``fingerprint`` encoder: RDKit Morgan count fingerprints through the encoder contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

import zoo
from encoders.base import InvalidInputError
from encoders.molecule.fingerprint import FingerprintConfig, FingerprintEncoder, FingerprintProcessor
from encoders.molecule.parsing import InvalidMoleculeError

SPEC = {"type": "encoder", "modality": "smiles",
        "encoder": {"type": "fingerprint", "config": {"radius": 2, "size": 1024}}}


def test_counts_equal_rdkit_generator_and_transforms_apply():
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "CCCCCCCC"]
    reference = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    expected = np.stack([reference.GetCountFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles])
    counts = FingerprintProcessor(FingerprintConfig(size=1024, transform="counts"))(smiles).inputs["fingerprints"]
    assert np.array_equal(counts.numpy(), expected) and expected[1].max() > 1  # counts, not bits
    logged = FingerprintProcessor(FingerprintConfig(size=1024))(smiles).inputs["fingerprints"]
    torch.testing.assert_close(logged, torch.log1p(counts))
    bits = FingerprintProcessor(FingerprintConfig(size=1024, transform="binary"))(smiles).inputs["fingerprints"]
    assert set(bits.unique().tolist()) == {0.0, 1.0}


def test_radius_and_size_change_the_fingerprint():
    small = FingerprintProcessor(FingerprintConfig(radius=1, size=512))(["c1ccccc1O"]).inputs["fingerprints"]
    large = FingerprintProcessor(FingerprintConfig(radius=3, size=512))(["c1ccccc1O"]).inputs["fingerprints"]
    assert small.shape == (1, 512) and small.sum() < large.sum()


def test_one_token_per_molecule_through_the_model():
    model = zoo.build(SPEC)
    out = model.encode(["CCO", "c1ccccc1"])
    assert out.tokens.shape == (2, 1, 1024) and out.mask.all() and out.pooled.shape == (2, 1024)


def test_an_invalid_item_is_named():
    processor = FingerprintProcessor(FingerprintConfig())
    with pytest.raises(InvalidMoleculeError, match="molecule item 1: .*C1CC"):
        processor(["CCO", "C1CC"])
    with pytest.raises(InvalidMoleculeError, match="molecule item 0: .*whitespace"):
        processor(["CC O"])
    with pytest.raises(InvalidInputError, match="item 0 is a int"):
        processor([7])


@pytest.mark.parametrize("bad", [{"radius": -1}, {"size": 0}, {"transform": "sqrt"}])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        FingerprintConfig(**bad)


def test_encoder_rejects_a_wrong_width():
    with pytest.raises(ValueError, match=r"\[B, 64\]"):
        FingerprintEncoder(FingerprintConfig(size=64))(torch.zeros(2, 32))
