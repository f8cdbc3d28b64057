"""IBM's MoLFormer-XL (``ibm/MoLFormer-XL-both-10pct``) into the native MoLFormer encoder, without its own code.

The reference model runs only as Hub remote code, so nothing here runs it. Instead the checkpoint's tensor names
and shapes are written out below, and the tests check that the ``molformer`` key map sends every one of them to
exactly one tensor of ``MolFormerEncoder`` built with the published config (shape for shape), and that a
checkpoint holding exactly those names (sizes scaled down) loads strictly through the card loading path.

IBM's tokenizer is checked the same way: a small ``vocab.json`` written here, and the ids IBM's tokenizer logic
(``tokenization_molformer.py``: its SMILES regex by ``findall``, ``<bos> X <eos>``, ``<unk>`` for tokens outside
the vocabulary) gives for it, worked out by hand.

Where the names come from: the checkpoint is one ``model.safetensors`` (no index file), saved from
``MolformerForMaskedLM`` (config.json ``architectures``) as ``modeling_molformer.py`` defines it at commit
c551b8ab1b2be09d8967b3740026d27a84f459cb: ``molformer.`` holds ``embeddings.word_embeddings``, 12
``encoder.layer.N`` blocks (BERT's module names; ``attention.self.feature_map.weight`` is the persistent
``[head_dim, num_random_features]`` random-feature buffer; the rotary ``inv_freq``/``cos_cached``/``sin_cached``
buffers are not persistent, so not saved) and a final ``LayerNorm``; ``lm_head`` is the masked-LM head (a
transform and an untied ``decoder`` without bias, as ``tie_word_embeddings`` is false).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import zoo
from encoders.smiles.molformer import MolFormerConfig, MolFormerEncoder, MolFormerProcessor, molformer_key_map
from tests.test_public_cards import point_at
from zoo.errors import WeightsError
from zoo.weights.verify import sha256_file

REPO = "ibm-research/MoLFormer-XL-both-10pct"
CARD = "molformer-xl-both-10pct"
# config.json of the published checkpoint (the fields that size tensors)
PUBLISHED = {"vocab_size": 2362, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 768, "num_random_features": 32, "max_position_embeddings": 202, "pad_token_id": 2}

# Every tensor of the published checkpoint: name -> shape in the sizes of ``PUBLISHED`` (V vocabulary, D hidden,
# F feed-forward, H head_dim, R random features); ``{i}`` runs over the layers.
_V, _D, _F, _H, _R = "V", "D", "F", "H", "R"
PER_LAYER = {
    "molformer.encoder.layer.{i}.attention.self.query.weight": (_D, _D),
    "molformer.encoder.layer.{i}.attention.self.query.bias": (_D,),
    "molformer.encoder.layer.{i}.attention.self.key.weight": (_D, _D),
    "molformer.encoder.layer.{i}.attention.self.key.bias": (_D,),
    "molformer.encoder.layer.{i}.attention.self.value.weight": (_D, _D),
    "molformer.encoder.layer.{i}.attention.self.value.bias": (_D,),
    "molformer.encoder.layer.{i}.attention.self.feature_map.weight": (_H, _R),
    "molformer.encoder.layer.{i}.attention.output.dense.weight": (_D, _D),
    "molformer.encoder.layer.{i}.attention.output.dense.bias": (_D,),
    "molformer.encoder.layer.{i}.attention.output.LayerNorm.weight": (_D,),
    "molformer.encoder.layer.{i}.attention.output.LayerNorm.bias": (_D,),
    "molformer.encoder.layer.{i}.intermediate.dense.weight": (_F, _D),
    "molformer.encoder.layer.{i}.intermediate.dense.bias": (_F,),
    "molformer.encoder.layer.{i}.output.dense.weight": (_D, _F),
    "molformer.encoder.layer.{i}.output.dense.bias": (_D,),
    "molformer.encoder.layer.{i}.output.LayerNorm.weight": (_D,),
    "molformer.encoder.layer.{i}.output.LayerNorm.bias": (_D,),
}
ONCE = {
    "molformer.embeddings.word_embeddings.weight": (_V, _D),
    "molformer.LayerNorm.weight": (_D,),
    "molformer.LayerNorm.bias": (_D,),
    "lm_head.transform.dense.weight": (_D, _D),
    "lm_head.transform.dense.bias": (_D,),
    "lm_head.transform.LayerNorm.weight": (_D,),
    "lm_head.transform.LayerNorm.bias": (_D,),
    "lm_head.decoder.weight": (_V, _D),
}
MLM_HEAD = {name for name in ONCE if name.startswith("lm_head.")}


def published_shapes(vocab: int, hidden: int, layers: int, heads: int, ffn: int, features: int
                     ) -> dict[str, tuple[int, ...]]:
    """The checkpoint's tensor names with their shapes at these sizes (the published ones, or scaled down)."""
    size = {_V: vocab, _D: hidden, _F: ffn, _H: hidden // heads, _R: features}
    names = {**ONCE, **{name.format(i=i): shape for i in range(layers) for name, shape in PER_LAYER.items()}}
    return {name: tuple(size[dim] for dim in shape) for name, shape in names.items()}


def native_config(vocab: int, hidden: int, layers: int, heads: int, ffn: int, features: int, **extra: Any
                  ) -> MolFormerConfig:
    return MolFormerConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
                           intermediate_size=ffn, feature_map="random_relu", num_random_features=features, **extra)


def test_the_published_checkpoint_has_212_tensors():
    sizes = PUBLISHED
    names = published_shapes(sizes["vocab_size"], sizes["hidden_size"], sizes["num_hidden_layers"],
                             sizes["num_attention_heads"], sizes["intermediate_size"], sizes["num_random_features"])
    assert len(names) == 12 * 17 + 8 == 212
    assert names["molformer.encoder.layer.11.attention.self.feature_map.weight"] == (64, 32)


def test_the_key_map_sends_every_published_tensor_to_one_encoder_tensor_of_its_shape():
    sizes = (PUBLISHED["vocab_size"], PUBLISHED["hidden_size"], PUBLISHED["num_hidden_layers"],
             PUBLISHED["num_attention_heads"], PUBLISHED["intermediate_size"], PUBLISHED["num_random_features"])
    shapes = published_shapes(*sizes)
    renames = molformer_key_map(dict.fromkeys(shapes))
    assert renames.keys() == shapes.keys()
    assert {name for name, target in renames.items() if target is None} == MLM_HEAD  # only the MLM head is dropped
    targets = [target for target in renames.values() if target is not None]
    assert len(targets) == len(set(targets))  # no two checkpoint tensors land on one of ours
    with torch.device("meta"):  # the full-size encoder's names and shapes, without allocating its 47M parameters
        encoder = MolFormerEncoder(native_config(*sizes, pad_token_id=PUBLISHED["pad_token_id"],
                                                 max_length=PUBLISHED["max_position_embeddings"]))
    ours = {name: tuple(tensor.shape) for name, tensor in encoder.state_dict().items()}
    assert set(targets) == set(ours)  # every tensor of ours is filled, by exactly one published tensor
    assert {renames[name]: shape for name, shape in shapes.items() if renames[name]} == ours


def test_a_name_outside_the_published_list_is_refused_by_name():
    with pytest.raises(ValueError, match=r"no MoLFormerEncoder counterpart.*molformer\.pooler\.dense\.weight"):
        molformer_key_map(dict.fromkeys([*ONCE, "molformer.pooler.dense.weight"]))


# ---- IBM's tokenizer: ids from a vocab.json written here, expected ids worked out by hand --------------------

# IBM's layout: the specials first (pad at 2), <unk> last; the rest in no particular order.
IBM_VOCAB = {"<bos>": 0, "<eos>": 1, "<pad>": 2, "<mask>": 3, "C": 4, "(": 5, ")": 6, "=": 7, "O": 8, "c": 9,
             "1": 10, "N": 11, "[C@@H]": 12, "Cl": 13, ">": 14, "%10": 15, "<unk>": 16}
# IBM's tokenizer: regex findall, then <bos> ids <eos>; "Br" and "[Na+]" are not in the vocabulary -> <unk> (16);
# ">>" is two ">" tokens in IBM's regex (one token in ours).
IBM_IDS = {
    "CCO": [0, 4, 4, 8, 1],
    "CC(=O)Cl": [0, 4, 4, 5, 7, 8, 6, 13, 1],
    "C[C@@H](N)Br": [0, 4, 12, 5, 11, 6, 16, 1],
    "c1ccccc1": [0, 9, 10, 9, 9, 9, 9, 9, 10, 1],
    "CC>>O.[Na+]": [0, 4, 4, 14, 14, 8, 16, 16, 1],  # "." is not in this vocabulary either
    "C%10CC%10": [0, 4, 15, 4, 4, 15, 1],
}


def ibm_config(root: Path, vocab_file: str, **extra: Any) -> MolFormerConfig:
    return MolFormerConfig(vocab_size=len(IBM_VOCAB), pad_token_id=IBM_VOCAB["<pad>"], vocab_format="molformer",
                           pretrained=str(root), vocab_file=vocab_file, hidden_size=8, num_layers=1, num_heads=2,
                           intermediate_size=8, **extra)


@pytest.fixture
def ibm_vocab_dir(tmp_path) -> Path:
    """IBM's two forms of the vocabulary: ``vocab.json`` (the mapping) and ``tokenizer.json`` (WordLevel)."""
    (tmp_path / "vocab.json").write_text(json.dumps(IBM_VOCAB))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": IBM_VOCAB,
                                                                   "unk_token": "<unk>"}}))
    return tmp_path


@pytest.mark.parametrize("vocab_file", ["vocab.json", "tokenizer.json"])
def test_the_processor_gives_ibm_token_ids(ibm_vocab_dir, vocab_file):
    processor = MolFormerProcessor(ibm_config(ibm_vocab_dir, vocab_file))
    batch = processor(list(IBM_IDS))
    longest = max(map(len, IBM_IDS.values()))
    rows = zip(IBM_IDS.values(), batch.inputs["input_ids"].tolist(), batch.inputs["attention_mask"].tolist(),
               strict=True)
    for expected, ids, mask in rows:
        assert ids == expected + [IBM_VOCAB["<pad>"]] * (longest - len(expected))  # padded with IBM's <pad>
        assert sum(mask) == len(expected)
    assert batch.sizes == [len(ids) for ids in IBM_IDS.values()]


def test_the_vocabulary_is_pinned_by_sha256(ibm_vocab_dir):
    digest = sha256_file(ibm_vocab_dir / "vocab.json")
    assert MolFormerProcessor(ibm_config(ibm_vocab_dir, "vocab.json", vocab_sha256=digest))
    (ibm_vocab_dir / "vocab.json").write_text(json.dumps({**IBM_VOCAB, "C": 16, "<unk>": 4}))
    with pytest.raises(ValueError, match=f"not the vocab_sha256 {digest}"):
        MolFormerProcessor(ibm_config(ibm_vocab_dir, "vocab.json", vocab_sha256=digest))


def test_a_vocabulary_without_ibm_specials_or_with_gaps_is_refused(ibm_vocab_dir):
    (ibm_vocab_dir / "vocab.json").write_text(json.dumps({k: v for k, v in IBM_VOCAB.items() if k != "<bos>"}))
    with pytest.raises(ValueError, match="ids of its 16 tokens are not 0..15"):
        MolFormerProcessor(ibm_config(ibm_vocab_dir, "vocab.json"))
    (ibm_vocab_dir / "vocab.json").write_text(json.dumps({**{k: v for k, v in IBM_VOCAB.items() if k != "<bos>"},
                                                          "[Na+]": 0}))
    with pytest.raises(ValueError, match=r"lacks IBM's special tokens \['<bos>'\]"):
        MolFormerProcessor(ibm_config(ibm_vocab_dir, "vocab.json"))


def test_a_hub_vocabulary_needs_its_revision_and_sha256():
    with pytest.raises(ValueError, match="give vocab_file, its vocab_sha256 and the revision"):
        MolFormerConfig(vocab_size=3, vocab_format="molformer", pretrained=REPO, vocab_file="tokenizer.json")


# ---- the card: the published config's sizes; a checkpoint with the published names loads through its spec ------

def test_the_card_has_the_published_config_and_ibm_tokenizer():
    card = zoo.card(CARD)
    config = card.spec["encoder"]["config"]
    assert (config["vocab_size"], config["hidden_size"], config["num_layers"], config["num_heads"],
            config["intermediate_size"], config["num_random_features"], config["max_length"], config["pad_token_id"]
            ) == tuple(PUBLISHED[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "intermediate_size", "num_random_features", "max_position_embeddings",
                                              "pad_token_id"))
    assert (config["pretrained"], config["vocab_format"], config["feature_map"]) == (REPO, "molformer", "random_relu")
    [weights] = card.weights
    assert (weights.hf_repo, weights.revision, weights.key_map, weights.prefix, weights.format) == (
        REPO, config["revision"], "molformer", "encoder.", "safetensors")


SMALL = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 48, "features": 6}
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C[C@@H](N)C(=O)O"]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A folder like the Hub repo, at small sizes: ``model.safetensors`` holding exactly the published tensor
    names, and IBM's vocabulary as ``tokenizer.json``."""
    root = tmp_path_factory.mktemp("molformer")
    (root / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": IBM_VOCAB}}))
    generator = torch.Generator().manual_seed(0)
    shapes = published_shapes(vocab=len(IBM_VOCAB), **SMALL)
    state = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    save_file(state, str(root / "model.safetensors"))
    return root, state


def small_card(root: Path, **config_changes: Any) -> Any:
    """The card as published, pointed at ``root`` (its Hub repo replaced by the folder, see ``point_at``) with
    the sizes scaled down and the sha256s of the files there; everything else (encoder type, vocabulary file
    and format, key map, prefix) is the card's."""
    card = zoo.card(CARD)
    spec = point_at(card.spec, REPO, root)
    sizes = {"vocab_size": len(IBM_VOCAB), "hidden_size": SMALL["hidden"], "num_layers": SMALL["layers"],
             "num_heads": SMALL["heads"], "intermediate_size": SMALL["ffn"], "num_random_features": SMALL["features"],
             "vocab_sha256": sha256_file(root / "tokenizer.json"), "max_length": 64}
    spec["encoder"]["config"] = {**spec["encoder"]["config"], **sizes, **config_changes}
    weights = [dataclasses.replace(w, sha256=sha256_file(root / w.file), hf_repo=None, revision=None)
               for w in card.weights]
    return dataclasses.replace(card, spec=spec, weights=weights)


def test_a_checkpoint_with_the_published_names_loads_strictly_through_the_card(small_checkpoint, tmp_path):
    root, state = small_checkpoint
    model = zoo.load(small_card(root), weights_dir=root)
    ours = model.encoder.state_dict()
    renames = molformer_key_map(state)
    assert all(torch.equal(ours[target], state[name]) for name, target in renames.items() if target is not None)
    batch = model.processor("smiles", ["CCO"])
    assert batch.inputs["input_ids"].tolist() == [IBM_IDS["CCO"]]  # IBM's ids, from the card's file
    first = model.encode(SMILES)
    assert torch.equal(model.encode(SMILES).pooled, first.pooled)  # the loaded random features stay fixed
    assert torch.isfinite(first.pooled).all() and first.pooled.shape == (len(SMILES), SMALL["hidden"])
    saved = model.save_pretrained(tmp_path / "saved")
    (root / "tokenizer.json").rename(root / "moved.json")  # the saved model needs neither the source nor the Hub
    try:
        reloaded = zoo.load(str(saved))
    finally:
        (root / "moved.json").rename(root / "tokenizer.json")
    assert reloaded.encoder.config.vocab_sha256 == sha256_file(root / "tokenizer.json")  # which vocabulary, recorded
    assert torch.equal(reloaded.processor("smiles", SMILES).inputs["input_ids"],
                       model.processor("smiles", SMILES).inputs["input_ids"])
    torch.testing.assert_close(reloaded.encode(SMILES).pooled, first.pooled, rtol=0, atol=0)


@pytest.mark.parametrize("change", ["extra tensor", "missing tensor", "wrong feature count"])
def test_a_checkpoint_that_differs_from_the_published_names_fails(small_checkpoint, tmp_path, change):
    root, state = small_checkpoint
    (tmp_path / "tokenizer.json").write_bytes((root / "tokenizer.json").read_bytes())
    changes: dict[str, Any] = {}
    if change == "extra tensor":
        state, error = {**state, "molformer.pooler.dense.weight": torch.zeros(2, 2)}, "molformer.pooler.dense.weight"
    elif change == "missing tensor":
        state = {k: v for k, v in state.items() if k != "molformer.encoder.layer.1.output.dense.bias"}
        error = "missing key.*layers.1.ffn_out.bias"
    else:
        changes, error = {"num_random_features": 5}, "feature_map.projection has shape"
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises((ValueError, WeightsError), match=error):
        zoo.load(small_card(tmp_path, **changes), weights_dir=tmp_path)
