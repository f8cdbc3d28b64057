"""Key map for the released pretrain-gnns checkpoints (Hu et al., ICLR 2020, snap-stanford/pretrain-gnns).

The ``.pth`` files are plain state dicts of the reference ``GNN`` module; our
:class:`~encoders.molecule.graph_encoder.MoleculeGraphEncoder` keeps that module under ``gnn.``. The map is
an explicit, checked rename. Where each file comes from, its sha256 and the config it needs live in the
``pretrain-gnns-*`` model cards; ``zoo`` reads the files with ``weights_only=True`` and stores safetensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

GNN_PREFIX = "gnn."
"""Where :class:`MoleculeGraphEncoder` keeps its backbone; every checkpoint key is mapped under it."""

_EDGE_KEYS = ("edge_embedding1.weight", "edge_embedding2.weight")
_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "gin": ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", *_EDGE_KEYS),
    "gcn or graphsage": ("linear.weight", "linear.bias", *_EDGE_KEYS),
    "gat": ("att", "bias", "weight_linear.weight", "weight_linear.bias", *_EDGE_KEYS),
}
_BATCH_NORM_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _layer_family(keys: set[str]) -> str:
    """Which conv layout layer 0 of a pretrain-gnns state dict has (GCN and GraphSAGE share one)."""
    if "gnns.0.att" in keys:
        return "gat"
    if "gnns.0.mlp.0.weight" in keys:
        return "gin"
    return "gcn or graphsage"


def pretrain_gnns_key_map(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Map each pretrain-gnns checkpoint key to its :class:`MoleculeGraphEncoder` key.

    The expected keys are spelled out for the layer layout and depth found in ``state_dict``; any key it
    lacks or any extra key raises ``ValueError`` listing them, so a wrong file never half-loads.
    """
    keys = set(state_dict)
    layer_ids = {int(k.split(".")[1]) for k in keys if k.startswith("gnns.") and k.split(".")[1].isdigit()}
    num_layers = max(layer_ids, default=-1) + 1
    family = _layer_family(keys)
    expected = ["x_embedding1.weight", "x_embedding2.weight"]
    expected += [f"gnns.{i}.{name}" for i in range(num_layers) for name in _LAYER_KEYS[family]]
    expected += [f"batch_norms.{i}.{name}" for i in range(num_layers) for name in _BATCH_NORM_KEYS]
    missing = [k for k in expected if k not in keys]
    unexpected = sorted(keys - set(expected))
    if num_layers == 0 or missing or unexpected:
        raise ValueError(
            f"not a pretrain-gnns GNN state dict ({family} layout, {num_layers} layers): "
            f"missing keys {missing}, unexpected keys {unexpected}; pass the state dict of chem/model.py's GNN"
        )
    return {k: GNN_PREFIX + k for k in expected}
