"""The ``molecule_graph`` encoder: a GNN over a featurized molecule, one token per atom plus a pooled vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_add_pool, global_mean_pool
from torch_geometric.utils import softmax, to_dense_batch

from encoders.base import EncoderOutput
from encoders.molecule.gnn import (
    JK_MODES,
    OGB_ATOM_VOCAB,
    OGB_BOND_VOCAB,
    OGBGNN,
    PRETRAIN_GNN_TYPES,
    PRETRAIN_GNNS_ATOM_VOCAB,
    PRETRAIN_GNNS_BOND_VOCAB,
    PretrainGNN,
)

GNN_TYPES: tuple[str, ...] = (*PRETRAIN_GNN_TYPES, "ogb-gin")
POOLINGS: tuple[str, ...] = ("mean", "sum", "attention")
SCHEMES: tuple[str, ...] = ("pretrain-gnns", "ogb")

_VOCABS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "pretrain-gnns": (PRETRAIN_GNNS_ATOM_VOCAB, PRETRAIN_GNNS_BOND_VOCAB),
    "ogb": (OGB_ATOM_VOCAB, OGB_BOND_VOCAB),
}


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise naming the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class GraphEncoderConfig:
    """Everything that fixes a molecule-graph encoder's architecture and the features it reads.

    ``scheme`` names the featurization: ``"pretrain-gnns"`` (x ``[N, 2]``, edge_attr ``[E, 2]``) for gin, gcn,
    graphsage and gat; ``"ogb"`` (x ``[N, 9]``, edge_attr ``[E, 3]``) for ogb-gin.
    """

    gnn_type: str = "gin"
    num_layers: int = 5
    hidden_size: int = 300
    jk: str = "last"
    dropout: float = 0.0
    pooling: str = "mean"
    scheme: str = "pretrain-gnns"

    def __post_init__(self) -> None:
        _check_choice("gnn_type", self.gnn_type, GNN_TYPES)
        _check_choice("jk", self.jk, JK_MODES)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("scheme", self.scheme, SCHEMES)
        needed = "ogb" if self.gnn_type == "ogb-gin" else "pretrain-gnns"
        if self.scheme != needed:
            raise ValueError(
                f"gnn_type {self.gnn_type!r} reads {needed!r} features, not {self.scheme!r}; pass scheme={needed!r}"
            )
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ValueError(
                f"num_layers and hidden_size must be positive, got {self.num_layers}, {self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def output_size(self) -> int:
        """Width of each token and of the pooled vector (JK "concat" joins all ``num_layers + 1`` layers)."""
        return self.hidden_size * (self.num_layers + 1 if self.jk == "concat" else 1)

    @property
    def atom_vocab(self) -> tuple[int, ...]:
        """Number of categories of each column of ``x``; its length is the width ``x`` must have."""
        return _VOCABS[self.scheme][0]

    @property
    def bond_vocab(self) -> tuple[int, ...]:
        """Number of categories of each column of ``edge_attr``; its length is the width it must have."""
        return _VOCABS[self.scheme][1]

    def num_tokens(self, size: int) -> int:
        """Tokens for a molecule of ``size`` atoms: one per atom."""
        if size < 1:
            raise ValueError(f"a molecule graph needs at least one atom, got {size}")
        return size


def build_gnn(config: GraphEncoderConfig) -> PretrainGNN | OGBGNN:
    """The node-level GNN backbone ``config`` describes."""
    if config.gnn_type == "ogb-gin":
        return OGBGNN(config.num_layers, config.hidden_size, config.jk, config.dropout)
    return PretrainGNN(config.gnn_type, config.num_layers, config.hidden_size, config.jk, config.dropout)


class MoleculeGraphEncoder(nn.Module):
    """Encode a PyG ``Batch`` of molecules into padded per-atom tokens and one pooled vector each.

    The backbone sits under ``gnn``, so pretrained GNN weights load as ``gnn.<checkpoint key>``.
    """

    modality = "molecule_graph"
    config_class = GraphEncoderConfig

    def __init__(self, config: GraphEncoderConfig, load_pretrained: bool = True) -> None:
        """``load_pretrained`` is part of the encoder contract; GNN weights come from model cards, not here."""
        super().__init__()
        self.config = config
        self.hidden_size = config.output_size
        self.gnn = build_gnn(config)
        self.attention_gate = nn.Linear(self.hidden_size, 1) if config.pooling == "attention" else None

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, graph: Batch) -> EncoderOutput:
        nodes = self.gnn(graph.x, graph.edge_index, graph.edge_attr)
        tokens, mask = to_dense_batch(nodes, graph.batch, batch_size=graph.num_graphs)
        return EncoderOutput(
            tokens=tokens, mask=mask, pooled=self._pool(nodes, graph.batch, graph.num_graphs)
        )

    def _pool(self, nodes: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """One vector per molecule: mean or sum over its atoms, or an attention-weighted sum."""
        if self.attention_gate is not None:
            weights = softmax(self.attention_gate(nodes), batch, num_nodes=num_graphs)
            return global_add_pool(weights * nodes, batch, size=num_graphs)
        pool = global_mean_pool if self.config.pooling == "mean" else global_add_pool
        return pool(nodes, batch, size=num_graphs)


from encoders.molecule.graph_processor import MoleculeGraphProcessor  # noqa: E402  (it imports the config above)

MoleculeGraphEncoder.processor_class = MoleculeGraphProcessor
