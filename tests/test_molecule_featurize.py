"""Molecule featurization: exact features on hand-checked molecules, errors, batching, reactions, schemes."""

from __future__ import annotations

import csv
import gzip
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from torch_geometric.data import Batch, Data

from encoders.base import InvalidInputError
from encoders.molecule import (
    MAX_SMILES_LENGTH,
    SCHEMES,
    InvalidMoleculeError,
    featurize_many,
    get_scheme,
    pretrain_gnns,
    reaction_to_graphs,
    smiles_to_graph,
    split_reaction,
)
from encoders.molecule.parsing import parse_hydrogen_free, screen_smiles
from encoders.molecule.pretrain_gnns import PretrainGNNsScheme
from encoders.molecule.scheme_base import bonds_of

TRICKY_SMILES = [
    "CCO",
    "c1ccccc1",
    "C/C=C/C",
    "F/C=C\\F",
    "CC(=O)/C=C/C",
    "C[C@@H]1CC/C=C/C1",
    "[C@H](F)(Cl)Br",
    "F[C@H](F)Cl",
    "[Na+].[Cl-]",
    "*CC",
    "[*:1]C",
    "[H]C([H])([H])[H]",
    "[2H]C",
    "[H][H]",
    "[NH3]->[Cu]",
    "C$C",
    "C~C",
    "C1.C1",
    "[Fe@SP1](F)(Cl)(Br)I",
    "[CH3:1][OH:2]",
    "c1cc[se]c1",
    "[te]1cccc1",
    "Sc1ccccc1",
    "[Sc]",
    "C[N+](C)(C)C.[O-]C(=O)C",
    "OC(=O)C%10CC%10",
]


def assert_same_graph(a: Data, b: Data) -> None:
    """Equal feature tensors (the ``smiles`` text may differ)."""
    assert torch.equal(a.x, b.x)
    assert torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.edge_attr, b.edge_attr)
    assert a.num_nodes == b.num_nodes


def assert_well_formed(data: Data, scheme: str = "pretrain-gnns") -> None:
    """Shapes, dtypes, value ranges, both edge directions, (source, target) order."""
    dims = SCHEMES[scheme]
    n, e = data.num_nodes, data.edge_index.shape[1]
    assert data.x.dtype == data.edge_index.dtype == data.edge_attr.dtype == torch.long
    assert data.x.shape == (n, len(dims.atom_feature_dims))
    assert data.edge_index.shape == (2, e)
    assert data.edge_attr.shape == (e, len(dims.bond_feature_dims))
    assert ((data.x >= 0) & (data.x < torch.tensor(dims.atom_feature_dims))).all()
    assert ((data.edge_attr >= 0) & (data.edge_attr < torch.tensor(dims.bond_feature_dims))).all()
    if e:
        assert int(data.edge_index.max()) < n
        pairs = data.edge_index.t().tolist()
        assert pairs == sorted(pairs)
        assert {tuple(p) for p in pairs} == {(j, i) for i, j in pairs}


# --- pretrain-gnns scheme: hand-checked values -------------------------------------------------------


def test_ethanol() -> None:
    data = smiles_to_graph("CCO")
    assert data.x.tolist() == [[5, 0], [5, 0], [7, 0]]  # C = 6 - 1, O = 8 - 1
    assert data.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert data.edge_attr.tolist() == [[0, 0]] * 4
    assert data.smiles == "CCO" and data.num_nodes == 3


def test_benzene_bonds_are_aromatic() -> None:
    data = smiles_to_graph("c1ccccc1")
    assert data.x.tolist() == [[5, 0]] * 6
    assert data.edge_index.shape == (2, 12)
    assert data.edge_attr.tolist() == [[3, 0]] * 12
    assert_same_graph(data, smiles_to_graph("C1=CC=CC=C1"))  # Kekulé input is aromatized


def test_double_bond_directions() -> None:
    trans = smiles_to_graph("C/C=C/C")
    # edges (0,1) (1,0) (1,2) (2,1) (2,3) (3,2): ENDUPRIGHT = 1 on both single bonds, DOUBLE = 1 in the middle
    assert trans.edge_attr.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
    cis = smiles_to_graph("C/C=C\\C")
    assert cis.edge_attr.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0], [0, 2], [0, 2]]  # ENDDOWNRIGHT = 2


def test_chirality_follows_rdkit_tags() -> None:
    # RDKit stores '@' on an atom written first with an implicit H as CW and '@@' as CCW
    assert smiles_to_graph("[C@H](F)(Cl)Br").x[:, 1].tolist() == [1, 0, 0, 0]
    assert smiles_to_graph("[C@@H](F)(Cl)Br").x[:, 1].tolist() == [2, 0, 0, 0]
    tag = Chem.MolFromSmiles("C[C@@H](O)F").GetAtomWithIdx(1).GetChiralTag()
    assert smiles_to_graph("C[C@@H](O)F").x[1, 1] == int(tag) == 1
    assert smiles_to_graph("F[C@H](F)Cl").x[:, 1].tolist() == [0, 0, 0, 0]  # not a stereocentre: tag cleared


def test_other_chiral_tags_map_to_unspecified() -> None:
    mol = Chem.MolFromSmiles("C[C@H](O)F")
    mol.GetAtomWithIdx(1).SetChiralTag(Chem.ChiralType.CHI_OTHER)
    assert smiles_to_graph(mol).x[1].tolist() == [5, 0]
    assert smiles_to_graph("[Fe@SP1](F)(Cl)(Br)I").x[0].tolist() == [25, 0]  # square-planar -> 0


def test_salt_has_two_atoms_and_no_bonds() -> None:
    data = smiles_to_graph("[Na+].[Cl-]")
    assert data.x.tolist() == [[10, 0], [16, 0]]
    assert data.edge_index.shape == (2, 0) and data.edge_attr.shape == (0, 2)
    assert data.num_nodes == 2


def test_dummy_atom_is_118() -> None:
    assert smiles_to_graph("*CC").x[:, 0].tolist() == [118, 5, 5]
    assert smiles_to_graph("[*:1]C").x[:, 0].tolist() == [118, 5]


def test_unusual_bond_types_map_to_single() -> None:
    assert smiles_to_graph("[NH3]->[Cu]").edge_attr.tolist() == [[0, 0], [0, 0]]  # dative
    assert smiles_to_graph("C$C").edge_attr.tolist() == [[0, 0], [0, 0]]  # quadruple


def test_explicit_hydrogens() -> None:
    assert smiles_to_graph("[H]C([H])([H])[H]").x.tolist() == [[5, 0]]  # RDKit removes plain explicit H
    assert smiles_to_graph("[2H]C").x.tolist() == [[0, 0], [5, 0]]  # isotopic H stays, H = index 0
    with_hs = smiles_to_graph(Chem.AddHs(Chem.MolFromSmiles("C")))
    assert with_hs.x[:, 0].tolist() == [5, 0, 0, 0, 0] and with_hs.edge_index.shape == (2, 8)


def test_charged_and_multi_fragment() -> None:
    data = smiles_to_graph("C[N+](C)(C)C.[O-]C(=O)C")
    assert data.num_nodes == 9
    assert_well_formed(data)
    frags = smiles_to_graph("CCO.O")
    assert frags.num_nodes == 4 and frags.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]


@pytest.mark.parametrize("smiles", ["C" * 600, "C1" + "C" * 598 + "C1", "c1ccccc1" + "-c1ccccc1" * 120])
def test_very_large_molecules(smiles: str) -> None:
    data = smiles_to_graph(smiles)
    mol = Chem.MolFromSmiles(smiles)
    assert data.num_nodes == mol.GetNumAtoms() and data.edge_index.shape[1] == 2 * mol.GetNumBonds()
    assert_well_formed(data)
    assert_same_graph(data, smiles_to_graph(mol))


@pytest.mark.parametrize("smiles", ["CC(=O)O", "C" * 514, "C1" + "C" * 998 + "C1"])
def test_bonds_of_visits_every_bond_once(smiles: str) -> None:
    """By index up to _BONDS_BY_INDEX bonds, through the atoms past it: every bond once either way."""
    mol = Chem.MolFromSmiles(smiles)
    assert sorted(bond.GetIdx() for bond in bonds_of(mol)) == list(range(mol.GetNumBonds()))


@pytest.mark.parametrize("smiles", TRICKY_SMILES)
def test_text_fast_path_matches_per_atom_path(smiles: str) -> None:
    """Features read from the SMILES text equal those from visiting the RDKit Mol."""
    data = smiles_to_graph(smiles)
    assert_well_formed(data)
    assert_same_graph(data, smiles_to_graph(Chem.MolFromSmiles(smiles)))


def test_mol_input_records_canonical_smiles() -> None:
    data = smiles_to_graph(Chem.MolFromSmiles("OCC"))
    assert data.smiles == "CCO"


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("", "empty"),
        ("   ", "whitespace ' ' at position 0"),
        ("CCO ethanol", "whitespace ' ' at position 3"),
        ("C[C@H](F)Cl |&1:1|", "whitespace ' ' at position 11"),
        ("C1CC", "unclosed ring"),
        ("C(", "syntax error"),
        ("CN(C)(C)(C)C", "valence"),
        ("c1cccc1", "kekulize"),
        ("Xx", "syntax error"),
        ("\ud800", "non-ascii character '\\ud800' (u+d800) at position 0"),
        ("C" * 4001, "4,001 characters, over the limit of 4,000"),
        ("CC>>O", "reaction_to_graphs"),
    ],
)
def test_invalid_smiles_raise_with_input_and_reason(
    smiles: str, reason: str, capfd: pytest.CaptureFixture
) -> None:
    with pytest.raises(InvalidMoleculeError) as info:
        smiles_to_graph(smiles)
    assert repr(smiles[:120]) in str(info.value)
    assert reason in str(info.value).lower()
    assert isinstance(info.value, InvalidInputError)
    assert capfd.readouterr().err == ""  # RDKit's own logging is silenced


def test_unknown_scheme_lists_schemes() -> None:
    with pytest.raises(ValueError, match="pretrain-gnns.*ogb"):
        smiles_to_graph("C", scheme="nope")


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="SMILES string"):
        smiles_to_graph(42)  # type: ignore[arg-type]


def test_unsanitized_mol_explains_fix(capfd: pytest.CaptureFixture) -> None:
    mol = Chem.MolFromSmiles("CC", sanitize=False)
    with pytest.raises(InvalidMoleculeError, match="Chem.SanitizeMol"):
        smiles_to_graph(mol, scheme="ogb")
    assert capfd.readouterr().err == ""
    with pytest.raises(InvalidMoleculeError, match="no atoms"):
        smiles_to_graph(Chem.Mol())


# --- featurize_many --------------------------------------------------------------------------------


class CountingScheme(PretrainGNNsScheme):
    """The pretrain-gnns scheme, counting the SMILES it is asked to featurize."""

    def __init__(self) -> None:
        self.calls = 0

    def chunk_arrays(self, smiles):  # type: ignore[no-untyped-def]
        self.calls += len(smiles)
        return super().chunk_arrays(smiles)


def test_featurize_many_keeps_order_and_collects_errors() -> None:
    inputs = ["CCO", "C1CC", "c1ccccc1", "", 7, "CCO"]
    result = featurize_many(inputs)
    assert len(result) == len(inputs)
    assert [g is None for g in result] == [False, True, False, True, True, False]
    assert [g.smiles for g in result if g is not None] == ["CCO", "c1ccccc1", "CCO"]
    assert [(e.index, e.input) for e in result.errors] == [(1, "C1CC"), (3, ""), (4, 7)]
    assert "unclosed ring" in result.errors[0].message and "not a SMILES string" in result.errors[2].message
    summary = result.summary()
    assert "3 of 6" in summary and all(f"item {i}:" in summary for i in (1, 3, 4))
    assert_same_graph(result[0], smiles_to_graph("CCO"))


def test_featurize_many_featurizes_each_distinct_smiles_once() -> None:
    scheme = CountingScheme()
    result = featurize_many(["CCO", "C", "CCO", "CCO", "C1CC", "C1CC"], scheme=scheme)
    assert scheme.calls == 3 and result.num_unique == 3
    assert len(result.errors) == 2  # every failed item is reported, repeats included
    first, repeat = result[0], result[2]
    assert first is not repeat
    assert_same_graph(first, repeat)
    repeat.x[0, 0] = 99  # an in-place edit of one item does not leak into its repeats
    assert first.x[0, 0] == 5


def test_featurize_many_with_two_workers_matches_one() -> None:
    inputs = TRICKY_SMILES * 3 + ["C1CC", "", "CN(C)(C)(C)C"]
    serial = featurize_many(inputs, workers=1)
    parallel = featurize_many(inputs, workers=2)
    assert serial.errors == parallel.errors
    for a, b in zip(serial, parallel, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_same_graph(a, b)
            assert a.smiles == b.smiles


def test_featurize_many_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="workers"):
        featurize_many(["C"], workers=0)
    with pytest.raises(ValueError, match="choose one of"):
        featurize_many(["C"], scheme="nope")
    with pytest.raises(TypeError, match="list of SMILES"):
        featurize_many("CCO")
    assert featurize_many([]).summary().startswith("featurized 0 of 0")


# --- featurize_many's chunk path against the one-molecule path --------------------------------------

# Cases the chunk path treats specially: bracket atoms and charges, dummy atoms, several fragments, '@'
# chirality, '/' '\\' bond directions, dative and zero-order bonds (their matrices miss bonds), molecules
# past the dense-matrix limit, failures, and text refused before parsing (a name after a space, CXSMILES,
# invisible and control characters, text over the length limit).
CHUNK_EDGE_CASES = [
    *TRICKY_SMILES,
    "C[N+](C)(C)C.[O-]C(=O)C.[Na+]",
    "*c1ccccc1.*C(=O)O.[*:2]N",
    "F/C=C/[C@@H](Cl)C/C=C\\Br",
    "[NH3]->[Cu]/C=C/F",
    "F/C=C\\[C@@H](N)[Cu]<-N",
    "C~C.c1ccccc1/C=C/C",
    "[13CH3][C@@H](N)C(=O)O.Cl.Br",
    "ClC(Br)=C(Cl)Br",
    "C[C@H](F)Cl |&1:1|",
    "C" * 2100,
    "F/C=C/" + "C" * 2100 + "/C=C\\F",
    "C1CC",
    "",
    "c1cccc1",
    "CCO ethanol",
    "CC\u200bO",
    "CCO\x00",
    "C" * 4001,
]


def assert_identical(graph: Data, expected: Data) -> None:
    """Same tensors (values, dtype, shape, contiguity), SMILES, node count and attribute order."""
    for key in ("x", "edge_index", "edge_attr"):
        ours, theirs = graph[key], expected[key]
        assert torch.equal(ours, theirs) and ours.dtype == theirs.dtype == torch.long, key
        assert ours.is_contiguous() and (ours.stride() == theirs.stride() or not ours.numel()), key
    assert graph.smiles == expected.smiles and graph.num_nodes == expected.num_nodes
    assert type(graph.num_nodes) is int and list(graph.keys()) == list(expected.keys())


def check_against_one_by_one(inputs: list[str], scheme: str = "pretrain-gnns", workers_too: bool = True) -> None:
    """featurize_many gives exactly what smiles_to_graph gives, item by item; with ``workers_too``, so does
    workers=2."""
    result = featurize_many(inputs, scheme=scheme)
    expected_errors = []
    for index, (text, graph) in enumerate(zip(inputs, result, strict=True)):
        try:
            expected = smiles_to_graph(text, scheme=scheme)
        except InvalidMoleculeError as exc:
            expected_errors.append((index, str(exc)))
            assert graph is None
            continue
        assert graph is not None, text
        assert_identical(graph, expected)
    assert [(e.index, e.message) for e in result.errors] == expected_errors
    if not workers_too:
        return
    parallel = featurize_many(inputs, scheme=scheme, workers=2)
    assert parallel.errors == result.errors
    for graph, other in zip(result, parallel, strict=True):
        assert (graph is None) == (other is None)
        if graph is not None:
            assert_identical(other, graph)


@pytest.mark.parametrize("batch", [pretrain_gnns._ADJACENCY_BATCH, 2_000])
def test_chunk_path_matches_smiles_to_graph(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """A few hundred USPTO-50K products and reactants with the edge cases mixed in; with a small adjacency
    batch the edge cases also land next to (and across) flushes of the queued matrices."""
    monkeypatch.setattr(pretrain_gnns, "_ADJACENCY_BATCH", batch)
    uspto = shared_dir / "data" / "uspto50k"
    products = ["".join(line.split()[1:]) for line in (uspto / "src-test.txt").read_text().splitlines()[:200]]
    reactants = ["".join(line.split()) for line in (uspto / "tgt-test.txt").read_text().splitlines()[:200]]
    molecules = list(dict.fromkeys(products + reactants))
    inputs = [
        text
        for i, text in enumerate(molecules)
        for text in (text, CHUNK_EDGE_CASES[i % len(CHUNK_EDGE_CASES)])
    ]
    check_against_one_by_one(inputs)
    for text in molecules[::10]:  # and the text-reading paths agree with visiting the RDKit Mol
        assert_same_graph(smiles_to_graph(text), smiles_to_graph(Chem.MolFromSmiles(text)))


def test_chunk_path_edge_cases_without_shared_data() -> None:
    check_against_one_by_one(CHUNK_EDGE_CASES * 2)
    check_against_one_by_one(CHUNK_EDGE_CASES, scheme="ogb")


# Stereo cases for the quick parse: ring and chain stereocentres, E/Z, stereo that RDKit's clean-up removes
# (identical substituents), allenes, atropisomer-like biaryls, and text it rejects (valence, kekulization).
QUICK_PARSE_CASES = [
    text
    for text in CHUNK_EDGE_CASES
    if screen_smiles(text, MAX_SMILES_LENGTH) is None and "[H" not in text and "[2H" not in text
] + [
    "C[C@H](C)Cl",
    "C[C@@H]1CCCC[C@H]1C",
    "F/C(Cl)=C(/F)Cl",
    "CC=C=C[C@H](F)Cl",
    "C/C=C/C=C\\C",
    "N[C@@H](Cc1c[nH]c2ccccc12)C(=O)O",
    "Cc1ccccc1-c1ccccc1C",
    "C1=CC=CC=C1",
    "C(C)(C)(C)(C)C",
    "c1ccc1",
    "[NH4]",
]


@pytest.mark.parametrize("legacy", [True, False])
def test_quick_parse_gives_what_rdkit_parser_gives(legacy: bool) -> None:
    """parse_hydrogen_free against Chem.MolFromSmiles: same validity, canonical SMILES and features; the
    chunk path uses it only under legacy stereo perception, and with either setting still matches."""
    was_legacy = Chem.GetUseLegacyStereoPerception()
    Chem.SetUseLegacyStereoPerception(legacy)
    try:
        if legacy:
            for text in QUICK_PARSE_CASES:
                reference, quick = Chem.MolFromSmiles(text), parse_hydrogen_free(text)
                assert (reference is None) == (quick is None), text
                if reference is not None:
                    assert Chem.MolToSmiles(quick) == Chem.MolToSmiles(reference), text
                    assert_same_graph(smiles_to_graph(quick), smiles_to_graph(reference))
        check_against_one_by_one(QUICK_PARSE_CASES)
    finally:
        Chem.SetUseLegacyStereoPerception(was_legacy)


def test_featurize_many_graphs_behave_like_data_built_the_usual_way() -> None:
    """featurize_many fills Data's dicts directly (see _new_data); the result must be a plain Data."""
    graph, expected = featurize_many(["C[C@H](O)c1ccccc1"])[0], smiles_to_graph("C[C@H](O)c1ccccc1")
    assert type(graph) is Data and graph.__dict__.keys() == expected.__dict__.keys()
    assert {k: v for k, v in graph.__dict__.items() if k != "_store"} == {
        k: v for k, v in expected.__dict__.items() if k != "_store"
    }
    assert graph._store.__dict__.keys() == expected._store.__dict__.keys() and graph._store._parent() is graph
    assert graph.x.untyped_storage().nbytes() == graph.x.numel() * 8  # its own memory, not a chunk's
    for copy in (graph.clone(), graph.to("cpu"), pickle.loads(pickle.dumps(graph))):
        assert_identical(copy, expected)
    batch = Batch.from_data_list([graph, expected])
    assert batch.num_graphs == 2 and torch.equal(batch.x[: graph.num_nodes], batch.x[graph.num_nodes :])
    assert batch.smiles == [graph.smiles] * 2 and graph.validate()


# --- reactions -------------------------------------------------------------------------------------


def test_reaction_roles_and_fragments() -> None:
    graphs = reaction_to_graphs("CCO.CC(=O)O>[H+]>CCOC(C)=O")
    assert [role for role, _ in graphs] == ["reactant", "reactant", "agent", "product"]
    assert [g.smiles for _, g in graphs] == ["CCO", "CC(=O)O", "[H+]", "CCOC(C)=O"]
    assert split_reaction("A.B>>C") == [("reactant", "A"), ("reactant", "B"), ("product", "C")]


def test_reaction_atom_maps_do_not_change_features() -> None:
    mapped = reaction_to_graphs("[CH3:1][OH:2]>>[CH2:1]=[O:2]")
    plain = reaction_to_graphs("CO>>C=O")
    for (role_a, a), (role_b, b) in zip(mapped, plain, strict=True):
        assert role_a == role_b
        assert_same_graph(a, b)
    assert mapped[0][1].smiles == "[CH3:1][OH:2]"  # the mapping stays in the text


def test_reaction_with_dative_bond_and_cxsmiles_tail() -> None:
    assert split_reaction("[NH3]->[Cu].CC>O>N |f:0.1|") == [
        ("reactant", "[NH3]->[Cu]"),
        ("reactant", "CC"),
        ("agent", "O"),
        ("product", "N"),
    ]


@pytest.mark.parametrize(
    ("rxn", "message"),
    [
        ("CCO", "0 '>' separators"),
        ("A>B>C>D", "3 '>' separators"),
        (">>", "no molecules"),
        ("CC..O>>C", "empty reactant"),
        ("C1CC>>C", "reactant 'C1CC'"),
    ],
)
def test_bad_reactions(rxn: str, message: str) -> None:
    with pytest.raises(InvalidMoleculeError, match=message) as info:
        reaction_to_graphs(rxn)
    assert repr(rxn) in str(info.value)


# --- ogb scheme and the registry -------------------------------------------------------------------


def test_ogb_matches_reference_example() -> None:
    data = smiles_to_graph("Cl[C@H](/C=C/C)Br", scheme="ogb")  # the example in ogb/utils/features.py
    assert_well_formed(data, "ogb")
    assert data.x.shape == (6, 9) and data.edge_attr.shape == (10, 3)
    assert data.x[1].tolist() == [5, 2, 4, 5, 1, 0, 2, 0, 0]
    double = data.edge_index.t().tolist().index([2, 3])
    assert data.edge_attr[double].tolist() == [1, 2, 0]  # DOUBLE, STEREOE, not conjugated


def test_ogb_misc_values() -> None:
    data = smiles_to_graph("*c1ccccc1", scheme="ogb")
    assert data.x[0, 0] == 118  # dummy atom -> atomic-number misc
    assert data.x[1].tolist()[7:] == [1, 1]  # aromatic, in ring
    assert data.edge_attr[:, 0].tolist().count(3) == 12  # aromatic bond type
    assert smiles_to_graph("[NH3]->[Cu]", scheme="ogb").edge_attr[0, 0] == 4  # dative -> bond-type misc
    assert smiles_to_graph("[Na+].[Cl-]", scheme="ogb").edge_attr.shape == (0, 3)


def test_scheme_registry() -> None:
    assert set(SCHEMES) == {"pretrain-gnns", "ogb"}
    assert all(isinstance(s.version, str) and s.version for s in SCHEMES.values())
    assert get_scheme("ogb") is SCHEMES["ogb"] and get_scheme(SCHEMES["ogb"]) is SCHEMES["ogb"]


# --- property test ---------------------------------------------------------------------------------

SMILES_PIECES = ["C", "c", "N", "n", "O", "o", "S", "Cl", "Br", "F", "*", "(", ")", "=", "#", "$", "/", "\\",
                 "1", "2", "%10", ".", "[C@H]", "[C@@H]", "[nH]", "[Na+]", "[O-]", "[2H]", "[H]", "[CH3:1]",
                 "->", "~", ":", "@", "[", "]", " ", "|", ">"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(SMILES_PIECES), max_size=14).map("".join), st.text(max_size=12)))
def test_any_string_gives_a_graph_or_invalid_molecule_error(text: str) -> None:
    try:
        data = smiles_to_graph(text)
    except InvalidMoleculeError as exc:
        assert repr(text) in str(exc)
        return
    assert_well_formed(data)
    assert data.smiles == text
    assert_same_graph(data, smiles_to_graph(Chem.MolFromSmiles(text)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(SMILES_PIECES), min_size=1, max_size=14).map("".join), max_size=8))
def test_chunk_path_matches_one_by_one_on_drawn_smiles(texts: list[str]) -> None:
    """Whatever strings are drawn, featurize_many gives item for item what smiles_to_graph gives."""
    check_against_one_by_one(texts, workers_too=False)


# --- every molecule of the shared data sets ---------------------------------------------------------


def shared_smiles(data: Path) -> list[str]:
    """Distinct SMILES of the shared data: USPTO-50K test products and reactants, ChEBI-20 test, and
    MoleculeNet (every file; HIV, the largest, sampled deterministically: every 16th row)."""
    uspto = data / "uspto50k"
    smiles = ["".join(line.split()[1:]) for line in (uspto / "src-test.txt").read_text().splitlines()]
    smiles += ["".join(line.split()) for line in (uspto / "tgt-test.txt").read_text().splitlines()]
    with (data / "chebi20" / "test.txt").open(newline="") as handle:
        smiles += [row[1] for row in list(csv.reader(handle, delimiter="\t"))[1:]]
    for path in sorted((data / "moleculenet").glob("*.csv")):
        with path.open(newline="") as handle:
            smiles += [row.get("smiles") or row["mol"] for row in csv.DictReader(handle)]
    with gzip.open(data / "moleculenet" / "hiv.csv.gz", "rt", newline="") as handle:
        smiles += [row["smiles"] for i, row in enumerate(csv.DictReader(handle)) if i % 16 == 0]
    return list(dict.fromkeys(s for s in smiles if s))


def test_every_shared_molecule_gives_a_graph_or_invalid_molecule_error(shared_dir: Path) -> None:
    """USPTO-50K test src/tgt, ChEBI-20 test, all MoleculeNet CSVs except HIV, every 16th HIV row (~32k
    distinct SMILES): each gives a well-formed graph or InvalidMoleculeError; every 20th graph is also
    checked against the per-atom path."""
    smiles = shared_smiles(shared_dir / "data")
    assert len(smiles) > 30_000
    failed = []
    for i, text in enumerate(smiles):
        try:
            data = smiles_to_graph(text)
        except InvalidMoleculeError:
            failed.append(text)
            continue
        assert data.x.shape == (data.num_nodes, 2)
        assert data.edge_attr.shape == (data.edge_index.shape[1], 2)
        if i % 20 == 0:
            assert_same_graph(data, smiles_to_graph(Chem.MolFromSmiles(text)))
    assert len(failed) < 0.002 * len(smiles), failed  # a few hypervalent Al/Hg entries, nothing systematic
