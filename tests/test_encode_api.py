"""``EncoderModel.encode/embed`` and ``DualEncoder.embed/embed_text``: inference mode without kept grad, batching
that gives the one-batch result, and bad items named by index while the good items' vectors stay their own."""

from __future__ import annotations

import pytest
import torch

import zoo
from encoders.base import InvalidInputError
from tests.helpers import dual_encoder_spec, image
from zoo.models.embedding import EmbedResult, ItemsFailedError

TINY_GCN = {"type": "encoder", "modality": "molecule_graph",
            "encoder": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}}
FINGERPRINT = {"type": "encoder", "modality": "smiles",
               "encoder": {"type": "fingerprint", "config": {"radius": 2, "size": 256}}}
GOOD = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C1CCNCC1", "CCN(CC)CC", "O=C=O", "c1ccncc1"]


@pytest.fixture(scope="module")
def gnn():
    torch.manual_seed(0)
    return zoo.build(TINY_GCN).eval()


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return zoo.build(dual_encoder_spec()).eval()


def _no_grad_anywhere(model: torch.nn.Module) -> bool:
    return all(p.grad is None for p in model.parameters())


# --- no grad kept, inside and outside inference mode ---------------------------------------------------------

def test_embed_keeps_no_grad_and_gives_ordinary_tensors_outside_inference_mode(gnn):
    assert any(p.requires_grad for p in gnn.parameters())  # the weights still train; only embed runs without
    vectors = gnn.embed(GOOD)
    assert vectors.shape == (len(GOOD), 16) and not vectors.requires_grad and vectors.grad_fn is None
    assert not vectors.is_inference()  # so it can feed autograd later, e.g. a probe trained on it
    weight = torch.zeros(16, 1, requires_grad=True)
    (vectors @ weight).sum().backward()
    assert weight.grad is not None and _no_grad_anywhere(gnn)


def test_embed_inside_inference_mode_and_no_grad_gives_the_same_vectors(gnn):
    outside = gnn.embed(GOOD)
    with torch.inference_mode():
        inside = gnn.embed(GOOD)
    with torch.no_grad():
        under_no_grad = gnn.embed(GOOD)
    assert inside.is_inference() and not inside.requires_grad
    assert torch.equal(outside, inside) and torch.equal(outside, under_no_grad)


def test_encode_keeps_no_grad_inside_and_outside_inference_mode(gnn):
    out = gnn.encode(GOOD[:3])
    assert out.tokens.shape[0] == 3 and out.mask.shape == out.tokens.shape[:2]
    for tensor in (out.tokens, out.mask, out.pooled):
        assert not tensor.requires_grad and not tensor.is_inference()
    with torch.inference_mode():
        inside = gnn.encode(GOOD[:3])
    assert inside.pooled.is_inference() and torch.equal(inside.pooled, out.pooled)
    assert torch.allclose(out.pooled, gnn.embed(GOOD[:3]))


def test_dual_encoder_embeddings_keep_no_grad_and_training_still_works_afterwards(clip):
    img = clip.embed("image", [image(0), image(1)])
    txt = clip.embed_text(["a red circle", "a blue square"])
    assert not img.requires_grad and not txt.requires_grad and not img.is_inference()
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    # embed ran under inference mode: the contrastive loss must still train the same modules afterwards
    clip.train()
    try:
        out = clip("image", clip.processor("image", [image(0), image(1)]).inputs,
                   clip.processor("text", ["one", "two"]).inputs)
        out["loss"].backward()
        assert clip.logit_scale.grad is not None
    finally:
        clip.zero_grad(set_to_none=True)
        clip.eval()


# --- batch_size gives the one-batch result --------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_embed_batches_give_the_one_batch_vectors(gnn, batch_size):
    one_batch = gnn.encode(GOOD).pooled
    torch.testing.assert_close(gnn.embed(GOOD, batch_size=batch_size), one_batch, rtol=1e-5, atol=1e-6)


def test_dual_encoder_batches_give_the_one_batch_embeddings(clip):
    pictures = [image(i) for i in range(5)]
    texts = ["a red circle", "a blue square at the top left", "two stars", "a green triangle", "nothing"]
    torch.testing.assert_close(clip.embed("image", pictures, batch_size=2), clip.embed("image", pictures),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clip.embed_text(texts, batch_size=1), clip.embed_text(texts, batch_size=64),
                               rtol=1e-5, atol=1e-5)


def test_model_dtype_and_device_are_kept(gnn):
    half = zoo.build(TINY_GCN).to(torch.bfloat16).eval()
    vectors = half.embed(GOOD[:2], batch_size=1)
    assert vectors.dtype == torch.bfloat16 and vectors.device == half.device
    empty = gnn.embed([])
    assert empty.shape == (0, 16) and empty.dtype == torch.float32


# --- bad items: named, and the good items' vectors are their own --------------------------------------------

def test_a_bad_smiles_among_good_ones_is_named_by_index(gnn):
    items = [*GOOD[:3], "C1CC", *GOOD[3:]]
    with pytest.raises(ItemsFailedError) as caught:
        gnn.embed(items, batch_size=2)
    err = caught.value
    assert isinstance(err, InvalidInputError) and isinstance(err, ValueError)  # what callers caught before
    assert list(err.errors) == [3] and err.total == len(items)
    assert "item 3: InvalidMoleculeError" in str(err) and "'C1CC'" in str(err) and "unclosed ring" in str(err)
    assert "molecule item 3" in str(err)  # the processor's own position is the caller's, not 0 in a batch of one


def test_every_failure_is_listed_in_one_error_after_trying_all_items(gnn):
    items = ["CCO", "C1CC", "CC", "c1ccccc1", None, "CCN", "not a smiles"]
    with pytest.raises(ItemsFailedError) as caught:
        gnn.embed(items, batch_size=2)
    assert sorted(caught.value.errors) == [1, 4, 6]
    message = str(caught.value)
    for index in (1, 4, 6):
        assert f"item {index}: " in message
    assert "on_error='report'" in message


def test_report_returns_good_vectors_equal_to_those_computed_alone(gnn):
    items = ["CCO", "C1CC", "c1ccccc1O", 42, "CC(=O)Oc1ccccc1C(=O)O"]
    result = gnn.embed(items, batch_size=3, on_error="report")
    assert isinstance(result, EmbedResult)
    assert result.indices == [0, 2, 4] and sorted(result.errors) == [1, 3] and result.total == 5 and not result.ok
    assert "unclosed ring" in result.errors[1] and "int" in result.errors[3]
    assert result.summary().splitlines()[0] == "embedded 3 of 5 items; 2 failed:"
    for row, index in enumerate(result.indices):
        alone = gnn.embed([items[index]])[0]
        torch.testing.assert_close(result.embeddings[row], alone, rtol=1e-5, atol=1e-6)
    clean = gnn.embed(GOOD, on_error="report")
    assert clean.ok and clean.indices == list(range(len(GOOD))) and clean.summary().endswith("none failed")


def test_report_with_every_item_bad_gives_an_empty_tensor(gnn):
    result = gnn.embed(["C1CC", "(("], on_error="report")
    assert result.embeddings.shape == (0, 16) and result.indices == [] and sorted(result.errors) == [0, 1]


def test_encode_names_the_bad_item_and_encodes_nothing(gnn):
    with pytest.raises(ItemsFailedError) as caught:
        gnn.encode(["CCO", "CC", "C1CC"])
    assert list(caught.value.errors) == [2] and "item 2: InvalidMoleculeError" in str(caught.value)
    assert "none was encoded" in str(caught.value)


def test_fingerprint_encoder_without_weights_reports_the_same_way():
    model = zoo.build(FINGERPRINT)
    result = model.embed(["CCO", "C1CC", "c1ccccc1"], batch_size=2, on_error="report")
    assert result.indices == [0, 2] and list(result.errors) == [1]
    torch.testing.assert_close(result.embeddings, model.embed(["CCO", "c1ccccc1"]))


def test_dual_encoder_reports_a_bad_text_and_a_bad_image(clip):
    texts = ["a red circle", 7, "a blue square"]
    result = clip.embed_text(texts, batch_size=2, on_error="report")
    assert result.indices == [0, 2] and list(result.errors) == [1] and "text item 1" in result.errors[1]
    torch.testing.assert_close(result.embeddings[1], clip.embed_text(["a blue square"])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ItemsFailedError, match=r"item 1: "):
        clip.embed_text(texts)
    pictures = [image(0), None, image(2)]
    images = clip.embed("image", pictures, on_error="report")
    assert images.indices == [0, 2] and list(images.errors) == [1]
    torch.testing.assert_close(images.embeddings[0], clip.embed("image", [image(0)])[0], rtol=1e-5, atol=1e-5)


# --- arguments ----------------------------------------------------------------------------------------------

def test_bad_arguments_are_clear_errors(gnn, clip):
    with pytest.raises(TypeError, match=r"a list of items, not one str; wrap it: \['CCO'\]"):
        gnn.embed("CCO")
    with pytest.raises(TypeError, match="not one str"):
        clip.embed_text("a cat")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        gnn.embed(GOOD, batch_size=0)
    with pytest.raises(ValueError, match="on_error must be one of 'raise', 'report', got 'skip'"):
        gnn.embed(GOOD, on_error="skip")
    with pytest.raises(KeyError, match="no 'audio' tower"):
        clip.embed("audio", [b"..."], on_error="report")  # a wrong modality is not an item failure
