"""Molecule GNN backbones that turn a featurized graph into one vector per atom.

Two families, each written so its ``state_dict`` keys equal the published checkpoints' keys:

* pretrain-gnns (Hu et al. 2020, ``snap-stanford/pretrain-gnns`` ``chem/model.py``): GIN, GCN, GraphSAGE
  and GAT over ``x = [atom type, chirality]`` and ``edge_attr = [bond type, bond direction]``, with a
  self-loop on every atom carrying bond type :data:`SELF_LOOP_BOND_TYPE`.
* OGB-style GIN (MoleculeSTM, PRESTO): per-feature embeddings summed over the nine OGB atom and three
  OGB bond features, no self-loops, a learnable ``eps``.

The pretrain-gnns layers pass messages with ``flow="target_to_source"``: the checkpoints were trained on
PyG 1.0, where the message of edge column ``k`` went to ``edge_index[0, k]`` from ``edge_index[1, k]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import glorot
from torch_geometric.utils import add_self_loops, degree, softmax

PRETRAIN_GNNS_ATOM_VOCAB: tuple[int, ...] = (120, 3)
"""Embedding rows per pretrain-gnns atom feature: 118 elements + dummy ``*`` + mask token; 3 chirality tags."""

PRETRAIN_GNNS_BOND_VOCAB: tuple[int, ...] = (6, 3)
"""Embedding rows per pretrain-gnns bond feature: 4 bond types + self-loop + mask token; 3 directions."""

SELF_LOOP_BOND_TYPE = 4
"""Bond-type index the pretrain-gnns layers give the self-loop they add to every atom."""

OGB_ATOM_VOCAB: tuple[int, ...] = (119, 5, 12, 12, 10, 6, 6, 2, 2)
"""``ogb.utils.features.get_atom_feature_dims()``: rows per OGB atom feature."""

OGB_BOND_VOCAB: tuple[int, ...] = (5, 6, 2)
"""``ogb.utils.features.get_bond_feature_dims()``: rows per OGB bond feature."""

JK_MODES: tuple[str, ...] = ("last", "concat", "max", "sum")
PRETRAIN_GNN_TYPES: tuple[str, ...] = ("gin", "gcn", "graphsage", "gat")


def _xavier_embedding(num_rows: int, dim: int) -> nn.Embedding:
    """An embedding table initialised as the references do (Xavier uniform)."""
    embedding = nn.Embedding(num_rows, dim)
    nn.init.xavier_uniform_(embedding.weight)
    return embedding


class _PretrainConv(MessagePassing):
    """Shared part of the pretrain-gnns layers: bond embeddings and the self-loop each atom gets."""

    def __init__(self, edge_dim: int, aggr: str) -> None:
        super().__init__(aggr=aggr, flow="target_to_source", node_dim=0)
        self.edge_embedding1 = _xavier_embedding(PRETRAIN_GNNS_BOND_VOCAB[0], edge_dim)
        self.edge_embedding2 = _xavier_embedding(PRETRAIN_GNNS_BOND_VOCAB[1], edge_dim)

    def _with_self_loops(
        self, edge_index: torch.Tensor, edge_attr: torch.Tensor, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one self-loop per atom (bond type 4, direction 0) and embed every edge's features."""
        edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
        loop_attr = edge_attr.new_zeros(num_nodes, edge_attr.size(1))
        loop_attr[:, 0] = SELF_LOOP_BOND_TYPE
        edge_attr = torch.cat([edge_attr, loop_attr], dim=0)
        return edge_index, self.edge_embedding1(edge_attr[:, 0]) + self.edge_embedding2(edge_attr[:, 1])


class PretrainGINConv(_PretrainConv):
    """GIN layer: ``mlp(sum over neighbours and self of (h_j + e_ij))``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size, aggr="add")
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.ReLU(), nn.Linear(2 * hidden_size, hidden_size)
        )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        edge_index, edge_emb = self._with_self_loops(edge_index, edge_attr, x.size(0))
        return self.mlp(self.propagate(edge_index, x=x, edge_emb=edge_emb))

    def message(self, x_j: torch.Tensor, edge_emb: torch.Tensor) -> torch.Tensor:
        return x_j + edge_emb


class PretrainGCNConv(_PretrainConv):
    """GCN layer: ``sum_j (Wh_j + e_ij) / sqrt(deg_i deg_j)``, degrees counting the self-loop."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size, aggr="add")
        self.linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        edge_index, edge_emb = self._with_self_loops(edge_index, edge_attr, x.size(0))
        row, col = edge_index
        deg_inv_sqrt = degree(row, x.size(0), dtype=x.dtype).pow(-0.5)  # >= 1: every atom has a self-loop
        norm = deg_inv_sqrt[row] * deg_inv_sqrt[col]
        return self.propagate(edge_index, x=self.linear(x), edge_emb=edge_emb, norm=norm)

    def message(self, x_j: torch.Tensor, edge_emb: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return norm.unsqueeze(-1) * (x_j + edge_emb)


class PretrainGraphSAGEConv(_PretrainConv):
    """GraphSAGE layer: L2-normalised mean over neighbours and self of ``(Wh_j + e_ij)``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size, aggr="mean")
        self.linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        edge_index, edge_emb = self._with_self_loops(edge_index, edge_attr, x.size(0))
        return self.propagate(edge_index, x=self.linear(x), edge_emb=edge_emb)

    def message(self, x_j: torch.Tensor, edge_emb: torch.Tensor) -> torch.Tensor:
        return x_j + edge_emb

    def update(self, aggr_out: torch.Tensor) -> torch.Tensor:
        return F.normalize(aggr_out, p=2, dim=-1)


class PretrainGATConv(_PretrainConv):
    """GAT layer with ``heads`` heads averaged, then a bias.

    Per head, the score of edge ``i <- j`` is ``leaky_relu(att . [Wh_i, Wh_j + e_ij])``, softmaxed over the
    edges into ``i`` (self-loop included); the message is ``Wh_j + e_ij``. No attention dropout.
    """

    def __init__(self, hidden_size: int, heads: int = 2, negative_slope: float = 0.2) -> None:
        super().__init__(heads * hidden_size, aggr="add")
        self.heads = heads
        self.hidden_size = hidden_size
        self.negative_slope = negative_slope
        self.weight_linear = nn.Linear(hidden_size, heads * hidden_size)
        self.att = nn.Parameter(torch.empty(1, heads, 2 * hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        glorot(self.att)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        edge_index, edge_emb = self._with_self_loops(edge_index, edge_attr, x.size(0))
        x = self.weight_linear(x).view(-1, self.heads, self.hidden_size)
        return self.propagate(edge_index, x=x, edge_emb=edge_emb.view(-1, self.heads, self.hidden_size))

    def message(
        self, x_i: torch.Tensor, x_j: torch.Tensor, edge_emb: torch.Tensor, index: torch.Tensor, size_i: int
    ) -> torch.Tensor:
        x_j = x_j + edge_emb
        score = (torch.cat([x_i, x_j], dim=-1) * self.att).sum(dim=-1)
        alpha = softmax(F.leaky_relu(score, self.negative_slope), index, num_nodes=size_i)
        return x_j * alpha.unsqueeze(-1)

    def update(self, aggr_out: torch.Tensor) -> torch.Tensor:
        return aggr_out.mean(dim=1) + self.bias


class AtomEncoder(nn.Module):
    """OGB atom embedding: the sum of one embedding per OGB atom feature column."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.atom_embedding_list = nn.ModuleList(_xavier_embedding(n, hidden_size) for n in OGB_ATOM_VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(emb(x[:, k]) for k, emb in enumerate(self.atom_embedding_list))


class BondEncoder(nn.Module):
    """OGB bond embedding: the sum of one embedding per OGB bond feature column."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.bond_embedding_list = nn.ModuleList(_xavier_embedding(n, hidden_size) for n in OGB_BOND_VOCAB)

    def forward(self, edge_attr: torch.Tensor) -> torch.Tensor:
        return sum(emb(edge_attr[:, k]) for k, emb in enumerate(self.bond_embedding_list))


class OGBGINConv(MessagePassing):
    """OGB GIN layer: ``mlp((1 + eps) h_i + sum_j relu(h_j + e_ij))``, no self-loops."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(aggr="add")
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size),
            nn.BatchNorm1d(2 * hidden_size),
            nn.ReLU(),
            nn.Linear(2 * hidden_size, hidden_size),
        )
        self.eps = nn.Parameter(torch.zeros(1))
        self.bond_encoder = BondEncoder(hidden_size)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        neighbours = self.propagate(edge_index, x=x, edge_emb=self.bond_encoder(edge_attr))
        return self.mlp((1 + self.eps) * x + neighbours)

    def message(self, x_j: torch.Tensor, edge_emb: torch.Tensor) -> torch.Tensor:
        return F.relu(x_j + edge_emb)


class _GNNStack(nn.Module, ABC):
    """Embed atoms, then ``num_layers`` of conv -> batch norm -> ReLU (not after the last) -> dropout, then JK.

    Subclasses set ``gnns`` and ``batch_norms`` after their atom embedding, keeping the reference key order.
    """

    gnns: nn.ModuleList
    batch_norms: nn.ModuleList

    def __init__(self, num_layers: int, jk: str, dropout: float) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if jk not in JK_MODES:
            raise ValueError(f"unknown jk {jk!r}; allowed: {', '.join(JK_MODES)}")
        self.jk = jk
        self.dropout = dropout

    @abstractmethod
    def embed_atoms(self, x: torch.Tensor) -> torch.Tensor:
        """The layer-0 atom features ``[num_atoms, D]`` from the integer feature matrix ``x``."""

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """Per-atom features ``[num_atoms, D]`` (``[num_atoms, (num_layers + 1) * D]`` for ``jk="concat"``)."""
        layers = [self.embed_atoms(x)]
        last = len(self.gnns) - 1
        for i, (conv, norm) in enumerate(zip(self.gnns, self.batch_norms, strict=True)):
            h = norm(conv(layers[-1], edge_index, edge_attr))
            if i < last:
                h = F.relu(h)
            layers.append(F.dropout(h, self.dropout, training=self.training))
        if self.jk == "last":
            return layers[-1]
        if self.jk == "concat":
            return torch.cat(layers, dim=-1)
        stacked = torch.stack(layers)
        # "sum" is the sum over layers; the reference's version indexes [0] after summing, a bug we do not copy.
        return stacked.max(dim=0).values if self.jk == "max" else stacked.sum(dim=0)


_PRETRAIN_CONVS: dict[str, type[_PretrainConv]] = {
    "gin": PretrainGINConv,
    "gcn": PretrainGCNConv,
    "graphsage": PretrainGraphSAGEConv,
    "gat": PretrainGATConv,
}


class PretrainGNN(_GNNStack):
    """The pretrain-gnns ``GNN`` node encoder; its ``state_dict`` keys equal the released ``.pth`` keys."""

    def __init__(
        self,
        gnn_type: str,
        num_layers: int = 5,
        hidden_size: int = 300,
        jk: str = "last",
        dropout: float = 0.0,
    ) -> None:
        if gnn_type not in _PRETRAIN_CONVS:
            raise ValueError(
                f"unknown pretrain-gnns gnn_type {gnn_type!r}; allowed: {', '.join(_PRETRAIN_CONVS)}"
            )
        super().__init__(num_layers, jk, dropout)
        self.x_embedding1 = _xavier_embedding(PRETRAIN_GNNS_ATOM_VOCAB[0], hidden_size)
        self.x_embedding2 = _xavier_embedding(PRETRAIN_GNNS_ATOM_VOCAB[1], hidden_size)
        self.gnns = nn.ModuleList(_PRETRAIN_CONVS[gnn_type](hidden_size) for _ in range(num_layers))
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(hidden_size) for _ in range(num_layers))

    def embed_atoms(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])


class OGBGNN(_GNNStack):
    """The OGB-feature GIN node encoder of MoleculeSTM / PRESTO (keys ``atom_encoder.*``, ``gnns.*``, ...)."""

    def __init__(
        self, num_layers: int = 5, hidden_size: int = 300, jk: str = "last", dropout: float = 0.0
    ) -> None:
        super().__init__(num_layers, jk, dropout)
        self.atom_encoder = AtomEncoder(hidden_size)
        self.gnns = nn.ModuleList(OGBGINConv(hidden_size) for _ in range(num_layers))
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(hidden_size) for _ in range(num_layers))

    def embed_atoms(self, x: torch.Tensor) -> torch.Tensor:
        return self.atom_encoder(x)
