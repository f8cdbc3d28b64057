"""Molecule graph encoders: layer math against dense references, batching, processor checks, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rdkit import Chem
from torch_geometric.data import Batch, Data

from encoders.base import InvalidInputError
from encoders.molecule.gnn import (
    OGB_ATOM_VOCAB,
    OGB_BOND_VOCAB,
    OGBGINConv,
    PretrainGATConv,
    PretrainGCNConv,
    PretrainGINConv,
    PretrainGNN,
    PretrainGraphSAGEConv,
)
from encoders.molecule.graph_encoder import GraphEncoderConfig, MoleculeGraphEncoder
from encoders.molecule.graph_processor import MoleculeGraphProcessor
from encoders.molecule.pretrained import pretrain_gnns_key_map

_BOND_TYPES = {
    Chem.BondType.SINGLE: 0,
    Chem.BondType.DOUBLE: 1,
    Chem.BondType.TRIPLE: 2,
    Chem.BondType.AROMATIC: 3,
}
_BOND_DIRS = {Chem.BondDir.NONE: 0, Chem.BondDir.ENDUPRIGHT: 1, Chem.BondDir.ENDDOWNRIGHT: 2}
_CHIRALITY = {
    Chem.ChiralType.CHI_UNSPECIFIED: 0,
    Chem.ChiralType.CHI_TETRAHEDRAL_CW: 1,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 2,
}


def pretrain_graph(smiles: str) -> Data:
    """A pretrain-gnns-scheme graph (test-local; the real featurizer lives elsewhere)."""
    mol = Chem.MolFromSmiles(smiles)
    x = [[a.GetAtomicNum() - 1, _CHIRALITY[a.GetChiralTag()]] for a in mol.GetAtoms()]
    edges, attrs = [], []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        attr = [_BOND_TYPES[b.GetBondType()], _BOND_DIRS[b.GetBondDir()]]
        edges += [(i, j), (j, i)]
        attrs += [attr, attr]
    return Data(
        x=torch.tensor(x),
        edge_index=torch.tensor(edges).t().reshape(2, -1),
        edge_attr=torch.tensor(attrs).reshape(-1, 2),
    )


def ogb_graph(num_atoms: int, seed: int) -> Data:
    """A chain molecule with random but in-range OGB atom and bond features."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(n, (num_atoms,), generator=gen) for n in OGB_ATOM_VOCAB], dim=1)
    src = torch.arange(num_atoms - 1)
    edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
    bond = torch.stack([torch.randint(n, (num_atoms - 1,), generator=gen) for n in OGB_BOND_VOCAB], dim=1)
    return Data(x=x, edge_index=edge_index, edge_attr=torch.cat([bond, bond]))


def tiny_config(gnn_type: str, **kwargs: object) -> GraphEncoderConfig:
    scheme = "ogb" if gnn_type == "ogb-gin" else "pretrain-gnns"
    return GraphEncoderConfig(gnn_type=gnn_type, num_layers=2, hidden_size=16, scheme=scheme, **kwargs)


def graphs_for(config: GraphEncoderConfig, small: bool = False) -> list[Data]:
    if config.scheme == "ogb":
        return [ogb_graph(3, seed=1)] if small else [ogb_graph(7, seed=0), ogb_graph(3, seed=1)]
    return [pretrain_graph("CCO")] if small else [pretrain_graph("c1ccccc1C(=O)N"), pretrain_graph("CCO")]


# --- config ----------------------------------------------------------------------------------------------


def test_config_validates_and_counts_one_token_per_atom() -> None:
    with pytest.raises(ValueError, match="allowed: gin, gcn, graphsage, gat, ogb-gin"):
        GraphEncoderConfig(gnn_type="gine")
    with pytest.raises(ValueError, match="scheme='ogb'"):
        GraphEncoderConfig(gnn_type="ogb-gin")
    with pytest.raises(ValueError, match="scheme='pretrain-gnns'"):
        GraphEncoderConfig(gnn_type="gin", scheme="ogb")
    with pytest.raises(ValueError, match="pooling"):
        GraphEncoderConfig(pooling="max")
    config = GraphEncoderConfig(jk="concat", num_layers=3, hidden_size=10)
    assert config.output_size == 40 and MoleculeGraphEncoder(config).hidden_size == 40
    assert config.num_tokens(7) == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 3  # type: ignore[misc]


# --- layer math against independent dense references ----------------------------------------------------

# A 3-atom chain 0-1-2 whose two directions of each bond carry different direction features, so the
# references pin down which end of an edge column receives its message.
EDGE_INDEX = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
EDGE_ATTR = torch.tensor([[0, 1], [0, 2], [1, 0], [1, 1]])


def dense_pretrain_inputs(conv: torch.nn.Module, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjacency with self-loops ``[3, 3]`` and edge embeddings ``[3, 3, width]`` where ``E[a, b]`` is the
    embedding of the edge column ``(a, b)``: in the reference, atom ``a = edge_index[0]`` receives it."""
    adj = torch.eye(3)
    emb = torch.zeros(3, 3, width)
    attrs = [*EDGE_ATTR.tolist(), *[[4, 0]] * 3]
    columns = [*EDGE_INDEX.t().tolist(), *[[i, i] for i in range(3)]]
    for (a, b), (bond, direction) in zip(columns, attrs, strict=True):
        adj[a, b] = 1.0
        emb[a, b] = conv.edge_embedding1.weight[bond] + conv.edge_embedding2.weight[direction]
    return adj, emb


@torch.no_grad()
def test_gcn_matches_dense_normalised_adjacency() -> None:
    torch.manual_seed(0)
    conv, x = PretrainGCNConv(4), torch.randn(3, 4)
    adj, emb = dense_pretrain_inputs(conv, 4)
    deg = adj.sum(dim=1)  # chain with self-loops: degrees 2, 3, 2
    assert deg.tolist() == [2.0, 3.0, 2.0]
    norm = adj / torch.sqrt(deg[:, None] * deg[None, :])
    wx = conv.linear(x)
    expected = torch.stack([(norm[a, :, None] * (wx + emb[a])).sum(0) for a in range(3)])
    torch.testing.assert_close(conv(x, EDGE_INDEX, EDGE_ATTR), expected)


@torch.no_grad()
def test_gin_and_graphsage_match_dense_references() -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 4)
    gin = PretrainGINConv(4)
    adj, emb = dense_pretrain_inputs(gin, 4)
    summed = torch.stack([(adj[a, :, None] * (x + emb[a])).sum(0) for a in range(3)])
    torch.testing.assert_close(gin(x, EDGE_INDEX, EDGE_ATTR), gin.mlp(summed))

    sage = PretrainGraphSAGEConv(4)
    adj, emb = dense_pretrain_inputs(sage, 4)
    wx = sage.linear(x)
    mean = torch.stack([(adj[a, :, None] * (wx + emb[a])).sum(0) / adj[a].sum() for a in range(3)])
    out = sage(x, EDGE_INDEX, EDGE_ATTR)
    torch.testing.assert_close(out, mean / mean.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


@torch.no_grad()
def test_gat_matches_dense_two_head_attention() -> None:
    torch.manual_seed(2)
    heads, d = 2, 4
    conv, x = PretrainGATConv(d, heads=heads), torch.randn(3, d)
    conv.bias.normal_()
    adj, emb = dense_pretrain_inputs(conv, heads * d)
    z = conv.weight_linear(x).view(3, heads, d)
    emb = emb.view(3, 3, heads, d)
    att = conv.att.view(heads, 2 * d)
    expected = torch.zeros(3, d)
    for a in range(3):
        for h in range(heads):
            msgs = z[:, h] + emb[a, :, h]  # [3 sources, d]
            scores = F.leaky_relu(att[h, :d] @ z[a, h] + msgs @ att[h, d:], 0.2)
            alpha = torch.softmax(scores.masked_fill(adj[a] == 0, float("-inf")), dim=0)
            expected[a] += (alpha[:, None] * msgs).sum(0) / heads
    torch.testing.assert_close(conv(x, EDGE_INDEX, EDGE_ATTR), expected + conv.bias)


@torch.no_grad()
def test_ogb_gin_matches_dense_reference() -> None:
    torch.manual_seed(3)
    conv = OGBGINConv(4).eval()
    conv.eps.fill_(0.25)
    graph = ogb_graph(3, seed=4)
    x = torch.randn(3, 4)
    bond = conv.bond_encoder(graph.edge_attr)
    neighbours = torch.zeros(3, 4)
    for k, (src, dst) in enumerate(graph.edge_index.t().tolist()):  # standard flow, no self-loops
        neighbours[dst] += F.relu(x[src] + bond[k])
    expected = conv.mlp(1.25 * x + neighbours)
    torch.testing.assert_close(conv(x, graph.edge_index, graph.edge_attr), expected)


@torch.no_grad()
def test_stack_relus_all_but_last_layer_and_combines_layers_per_jk() -> None:
    torch.manual_seed(5)
    graph = pretrain_graph("CC(=O)N")
    gnn = PretrainGNN("gcn", num_layers=2, hidden_size=8).eval()
    for norm in gnn.batch_norms:  # non-trivial eval statistics
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    args = (graph.edge_index, graph.edge_attr)
    h0 = gnn.x_embedding1(graph.x[:, 0]) + gnn.x_embedding2(graph.x[:, 1])
    h1 = F.relu(gnn.batch_norms[0](gnn.gnns[0](h0, *args)))
    h2 = gnn.batch_norms[1](gnn.gnns[1](h1, *args))
    assert (h2 < 0).any()
    expected = {
        "last": h2,
        "concat": torch.cat([h0, h1, h2], dim=1),
        "max": torch.maximum(torch.maximum(h0, h1), h2),
        "sum": h0 + h1 + h2,
    }
    for jk, want in expected.items():
        gnn.jk = jk
        torch.testing.assert_close(gnn(graph.x, *args), want)


# --- the encoder ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gnn_type", "pooling", "jk"),
    [
        ("gin", "mean", "last"),
        ("gcn", "sum", "max"),
        ("graphsage", "attention", "sum"),
        ("gat", "mean", "concat"),
        ("ogb-gin", "attention", "last"),
    ],
)
def test_forward_backward_shapes_follow_num_tokens(gnn_type: str, pooling: str, jk: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(gnn_type, pooling=pooling, jk=jk, dropout=0.1)
    encoder = MoleculeGraphEncoder(config).train()
    batch = MoleculeGraphProcessor(config)(graphs_for(config))
    out = encoder(**batch.inputs)
    n_max = max(config.num_tokens(s) for s in batch.sizes)
    assert out.tokens.shape == (2, n_max, encoder.hidden_size)
    assert out.pooled.shape == (2, encoder.hidden_size)
    assert out.mask.dtype == torch.bool
    assert out.mask.sum(dim=1).tolist() == [config.num_tokens(s) for s in batch.sizes]
    (out.tokens.square().sum() + out.pooled.sum()).backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(
    ("gnn_type", "pooling"),
    [("gin", "sum"), ("gcn", "mean"), ("graphsage", "mean"), ("gat", "attention"), ("ogb-gin", "mean")],
)
@torch.no_grad()
def test_padding_invariance_in_eval_mode(gnn_type: str, pooling: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(gnn_type, pooling=pooling)
    encoder = MoleculeGraphEncoder(config).eval()
    processor = MoleculeGraphProcessor(config)
    alone = encoder(**processor(graphs_for(config, small=True)).inputs)
    together = encoder(**processor(graphs_for(config)).inputs)
    n = alone.tokens.shape[1]
    assert together.tokens.shape[1] > n and together.mask[1].sum() == n
    torch.testing.assert_close(together.tokens[1, :n], alone.tokens[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.pooled[1], alone.pooled[0], rtol=1e-5, atol=1e-6)
    assert not together.tokens[1, n:].any()


def test_state_dict_keys_use_checkpoint_names() -> None:
    keys = set(MoleculeGraphEncoder(tiny_config("gin")).state_dict())
    assert {"gnn.x_embedding1.weight", "gnn.gnns.0.mlp.0.weight", "gnn.gnns.1.mlp.2.bias"} <= keys
    assert {"gnn.gnns.0.edge_embedding1.weight", "gnn.batch_norms.0.running_mean"} <= keys
    gat = MoleculeGraphEncoder(tiny_config("gat")).state_dict()
    assert gat["gnn.gnns.0.att"].shape == (1, 2, 32) and gat["gnn.gnns.0.bias"].shape == (16,)
    assert gat["gnn.gnns.0.edge_embedding1.weight"].shape == (6, 32)
    ogb = set(MoleculeGraphEncoder(tiny_config("ogb-gin")).state_dict())
    assert {
        "gnn.atom_encoder.atom_embedding_list.8.weight",
        "gnn.gnns.0.eps",
        "gnn.gnns.0.mlp.1.running_var",
        "gnn.gnns.0.mlp.3.weight",
        "gnn.gnns.0.bond_encoder.bond_embedding_list.2.weight",
        "gnn.batch_norms.1.weight",
    } <= ogb


# --- the processor ----------------------------------------------------------------------------------------


def test_processor_names_the_bad_item() -> None:
    processor = MoleculeGraphProcessor(GraphEncoderConfig())
    good = pretrain_graph("CCO")
    with pytest.raises(InvalidInputError, match="item 1 is a int"):
        processor([good, 42])
    with pytest.raises(InvalidInputError, match="molecule item 1: SMILES 'C1CC' is not a valid molecule"):
        processor([good, "C1CC"])
    assert processor([good, "CCO"]).sizes == [3, 3]  # SMILES are featurized with the config's scheme
    with pytest.raises(InvalidInputError, match=r"item 1 has atom features x of shape \(3, 9\)"):
        processor([good, ogb_graph(3, seed=0)])
    with pytest.raises(InvalidInputError, match="item 0 has no atoms"):
        processor(
            [Data(x=torch.zeros(0, 2, dtype=torch.long), edge_index=torch.zeros(2, 0, dtype=torch.long))]
        )
    bad = good.clone()
    bad.x[0, 1] = 3
    with pytest.raises(InvalidInputError, match="item 0 has atom features x outside"):
        processor([bad])
    with pytest.raises(InvalidInputError, match="item 0 has edge_attr of shape"):
        processor([Data(x=good.x, edge_index=good.edge_index, edge_attr=good.edge_attr[:, :1])])
    batch = processor([good, pretrain_graph("c1ccccc1")])
    assert batch.sizes == [3, 6] and isinstance(batch.inputs["graph"], Batch)


# --- pretrained checkpoints -------------------------------------------------------------------------------


def test_key_map_is_strict_both_ways() -> None:
    state = PretrainGNN("gin", num_layers=2, hidden_size=8).state_dict()
    mapping = pretrain_gnns_key_map(state)
    assert mapping["gnns.1.mlp.2.weight"] == "gnn.gnns.1.mlp.2.weight" and len(mapping) == len(state)
    encoder = MoleculeGraphEncoder(GraphEncoderConfig(num_layers=2, hidden_size=8))
    encoder.load_state_dict({mapping[k]: v for k, v in state.items()}, strict=True)
    with pytest.raises(ValueError, match=r"missing keys \['batch_norms.1.running_var'\]"):
        pretrain_gnns_key_map({k: v for k, v in state.items() if k != "batch_norms.1.running_var"})
    with pytest.raises(ValueError, match=r"unexpected keys \['graph_pred_linear.weight'\]"):
        pretrain_gnns_key_map({**state, "graph_pred_linear.weight": torch.zeros(1)})


CARDS = [
    "pretrain-gnns-gcn-contextpred",
    "pretrain-gnns-gcn-supervised-contextpred",
    "pretrain-gnns-graphsage-supervised-contextpred",
    "pretrain-gnns-gat-supervised-contextpred",
]


@pytest.fixture(scope="module")
def weights_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "weights" / "pretrain-gnns"


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("name", CARDS)
@torch.no_grad()
def test_card_loads_real_checkpoint_strictly_and_encodes(name: str, weights_dir: Path, cache: Path) -> None:
    import zoo

    model = zoo.load(name, weights_dir=weights_dir)  # sha256-checked, weights_only, strict
    card = zoo.card(name)
    assert model.encoder.config.gnn_type == card.spec["encoder"]["config"]["gnn_type"]
    out = model.encode([pretrain_graph("CC(=O)Oc1ccccc1C(=O)O"), "CCO"])
    assert out.tokens.shape == (2, 13, 300) and out.mask.sum(1).tolist() == [13, 3]
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    converted = list((cache / "converted").glob("*.safetensors"))
    assert [p.name for p in converted] == [f"{card.weights[0].sha256}.safetensors"]
    # the pretrained embedding table really arrived: it is not the seeded random init
    random_init = zoo.build(name)
    assert not torch.equal(random_init.encoder.gnn.x_embedding1.weight, model.encoder.gnn.x_embedding1.weight)


def test_card_refuses_the_wrong_architecture_and_a_bad_checksum(weights_dir: Path, cache: Path, tmp_path: Path) -> None:
    import shutil

    import zoo
    from zoo.errors import WeightsError

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    # a GCN file under the GAT card's file name: the checksum catches it before unpickling
    shutil.copy(weights_dir / "gcn_contextpred.pth", wrong / "gat_supervised_contextpred.pth")
    with pytest.raises(WeightsError, match="sha256 of .* but its card says"):
        zoo.load("pretrain-gnns-gat-supervised-contextpred", weights_dir=wrong)
    with pytest.raises(FileNotFoundError, match="gcn_contextpred.pth is not in"):
        zoo.load("pretrain-gnns-gcn-contextpred", weights_dir=tmp_path)


def test_gcn_and_graphsage_checkpoints_do_not_load_into_gat(weights_dir: Path) -> None:
    state = torch.load(weights_dir / "gcn_contextpred.pth", weights_only=True, map_location="cpu")
    renamed = {new: state[old] for old, new in pretrain_gnns_key_map(state).items()}
    with pytest.raises(RuntimeError, match="Missing key"):
        MoleculeGraphEncoder(GraphEncoderConfig(gnn_type="gat")).load_state_dict(renamed, strict=True)
