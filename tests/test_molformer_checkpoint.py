"""IBM's MoLFormer-XL (``ibm/MoLFormer-XL-both-10pct``) into the native MoLFormer encoder, without its own code.

The reference model runs only as Hub remote code, so nothing here runs it. Instead the checkpoint's tensor names
and shapes are written out below, and the tests check that the ``molformer`` key map sends every one of them to
exactly one tensor of ``MolFormerEncoder`` built with the published config (shape for shape), and that a
checkpoint holding exactly those names (sizes scaled down) loads strictly through the card loading path.

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
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import zoo
from encoders.smiles.molformer import MolFormerConfig, MolFormerEncoder, molformer_key_map
from encoders.smiles.tokenizer import SmilesTokenizer, build_vocab
from zoo.cards import ModelCard
from zoo.errors import WeightsError
from zoo.weights.sources import WeightSource
from zoo.weights.verify import sha256_file

REPO = "ibm/MoLFormer-XL-both-10pct"
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


# ---- a checkpoint with exactly the published names, scaled down, loaded strictly through a card ---------------

SMALL = {"vocab": 0, "hidden": 32, "layers": 2, "heads": 4, "ffn": 48, "features": 6}  # vocab: the vocab.txt's
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C[C@@H](N)C(=O)O"]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """``model.safetensors`` holding exactly the published tensor names at small sizes, a vocab.txt, and the
    native encoder config of those sizes."""
    root = tmp_path_factory.mktemp("molformer")
    vocab = SmilesTokenizer(build_vocab(SMILES))
    vocab.save(root)
    sizes = {**SMALL, "vocab": len(vocab)}
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) for name, shape in published_shapes(**sizes).items()}
    save_file(state, str(root / "model.safetensors"))
    config = dataclasses.asdict(native_config(**sizes, vocab_file=str(root / "vocab.txt"),
                                              pad_token_id=vocab.pad_token_id, max_length=64))
    return root, state, config


def molformer_card(root: Path, config: dict[str, Any]) -> ModelCard:
    """A card in the shape a MoLFormer-XL card takes: an ``encoder`` spec on the native encoder, the Hub file
    renamed by the ``molformer`` key map into ``encoder.``; loaded here from ``root`` (``weights_dir``)."""
    weights = WeightSource(file="model.safetensors", sha256=sha256_file(root / "model.safetensors"), hf_repo=REPO,
                           key_map="molformer", prefix="encoder.")
    spec = {"type": "encoder", "modality": "smiles", "encoder": {"type": "molformer", "config": config}}
    return ModelCard(name="molformer-test", description="", license="apache-2.0", spec=spec, weights=[weights])


def test_a_checkpoint_with_the_published_names_loads_strictly_through_a_card(small_checkpoint):
    root, state, config = small_checkpoint
    model = zoo.load(molformer_card(root, config), weights_dir=root)
    ours = model.encoder.state_dict()
    renames = molformer_key_map(state)
    assert all(torch.equal(ours[target], state[name]) for name, target in renames.items() if target is not None)
    first = model.encode(SMILES)
    assert torch.equal(model.encode(SMILES).pooled, first.pooled)  # the loaded random features stay fixed
    assert torch.isfinite(first.pooled).all() and first.pooled.shape == (len(SMILES), SMALL["hidden"])


@pytest.mark.parametrize("change", ["extra tensor", "missing tensor", "wrong feature count"])
def test_a_checkpoint_that_differs_from_the_published_names_fails(small_checkpoint, tmp_path, change):
    root, state, config = small_checkpoint
    (tmp_path / "vocab.txt").write_bytes((root / "vocab.txt").read_bytes())
    config = {**config, "vocab_file": str(tmp_path / "vocab.txt")}
    if change == "extra tensor":
        state, error = {**state, "molformer.pooler.dense.weight": torch.zeros(2, 2)}, "molformer.pooler.dense.weight"
    elif change == "missing tensor":
        state = {k: v for k, v in state.items() if k != "molformer.encoder.layer.1.output.dense.bias"}
        error = "missing key.*layers.1.ffn_out.bias"
    else:
        config, error = {**config, "num_random_features": 5}, "feature_map.projection has shape"
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises((ValueError, WeightsError), match=error):
        zoo.load(molformer_card(tmp_path, config), weights_dir=tmp_path)
