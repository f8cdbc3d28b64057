"""DualEncoder: normalised embeddings in one space, similarity, contrastive loss, save -> load."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers import dual_encoder_spec, image
from zoo.models.dual_encoder import DualEncoder


@pytest.fixture(scope="module")
def model():
    return zoo.build(dual_encoder_spec()).eval()


def test_embeddings_are_normalised_and_share_a_space(model):
    assert isinstance(model, DualEncoder)
    with torch.no_grad():
        img = model.embed("image", [image(0), image(1), image(2)])
        txt = model.embed_text(["a red circle", "a blue square"])
    assert img.shape == (3, 16) and txt.shape == (2, 16)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    sim = model.similarity(img, txt)
    assert sim.shape == (3, 2) and bool((sim.abs() <= 1 + 1e-5).all())


def test_text_embedding_is_independent_of_batch_padding(model):
    with torch.no_grad():
        alone = model.embed_text(["a red circle"])
        padded = model.embed_text(["a red circle", "a much longer description of a blue square at the top"])
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-5, atol=1e-5)


def test_contrastive_loss_trains_projections_and_logit_scale(model):
    model.train()
    inputs = model.processor("image", [image(0), image(1)]).inputs
    text = model.processor("text", ["one", "two"]).inputs
    out = model("image", inputs, text)
    assert torch.isfinite(out["loss"]) and out["logits"].shape == (2, 2)
    out["loss"].backward()
    assert model.logit_scale.grad is not None and model.projections["image"].weight.grad is not None
    model.zero_grad()
    model.eval()


def test_save_then_load_gives_identical_embeddings(model, tmp_path):
    loaded = zoo.load(model.save_pretrained(tmp_path / "clip"))
    with torch.no_grad():
        assert torch.equal(model.embed("image", [image(3)]), loaded.embed("image", [image(3)]))
        assert torch.equal(model.embed_text(["a star"]), loaded.embed_text(["a star"]))


def test_unknown_tower_is_a_clear_error(model):
    with pytest.raises(KeyError, match="no 'audio' tower; this model has: image, text"):
        model.embed("audio", [b"..."])


def test_smiles_and_text_towers_save_both_tokenizers(tmp_path):
    """Two towers with their own tokenizers: both are saved under tokenizers/<modality>/ and reloaded."""
    from encoders.smiles import SmilesTokenizer, build_vocab
    from tests.helpers import TINY_BERT

    vocab_dir = tmp_path / "vocab"
    SmilesTokenizer(build_vocab(["CCO", "c1ccccc1", "CC(=O)O", "C(Cl)Br"])).save(vocab_dir)
    spec = dual_encoder_spec()
    smiles_bert = {**TINY_BERT, "vocab_size": 64}
    spec["towers"] = {
        "smiles": {"type": "hf-smiles", "config": {"model_config": smiles_bert, "vocab_file": str(vocab_dir / "vocab.txt"), "max_length": 32}}
    }
    model = zoo.build(spec).eval()
    saved = model.save_pretrained(tmp_path / "molclip")
    assert {p.name for p in (saved / "tokenizers").iterdir()} == {"smiles", "text"}
    loaded = zoo.load(saved)
    with torch.no_grad():
        assert torch.equal(model.embed("smiles", ["CCO", "CC(=O)O"]), loaded.embed("smiles", ["CCO", "CC(=O)O"]))
        assert torch.equal(model.embed_text(["ethanol"]), loaded.embed_text(["ethanol"]))
