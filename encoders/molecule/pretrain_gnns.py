"""The ``pretrain-gnns`` scheme of Hu et al. 2020 (snap-stanford/pretrain-gnns, ``mol_to_graph_data_obj_simple``).

``x`` [N, 2] = [atom type, chirality]; ``edge_attr`` [E, 2] = [bond type, bond direction], the indices the
released checkpoints' embedding tables (120 atom rows, 3 chirality rows, 6 bond rows, 3 direction rows) expect:

* atom type: atomic number - 1 (H=0, C=5, ..., Og=117); the dummy atom ``*`` (atomic number 0) -> 118, the
  row PRESTO uses. Row 119 is the model's mask token and is never produced here.
* chirality: CHI_UNSPECIFIED=0, CHI_TETRAHEDRAL_CW=1, CHI_TETRAHEDRAL_CCW=2. Every other tag (CHI_OTHER,
  allene, square-planar, trigonal-bipyramidal, octahedral, and any tag RDKit adds later) -> 0, because the
  table has no row for it; the reference would crash (CHI_OTHER) or index past the table.
* bond type: SINGLE=0, DOUBLE=1, TRIPLE=2, AROMATIC=3. Every other type (DATIVE, QUADRUPLE, IONIC, ...) -> 0,
  treated as a single bond. Rows 4 (self-loop) and 5 (mask) belong to the model and are never produced here.
* bond direction: NONE=0, ENDUPRIGHT=1, ENDDOWNRIGHT=2; every other direction (wedges, EITHERDOUBLE,
  UNKNOWN) -> 0.

Edges are sorted by (source, target) rather than kept in RDKit bond order; message passing sums over
neighbours, so a pretrained GNN gives the same output either way.

Speed: featurizing must cost little next to ``Chem.MolFromSmiles`` itself, and each RDKit atom or bond
object visited from Python costs about a microsecond. So for a SMILES string the atom types are read from
the string's atom tokens (RDKit numbers atoms in the order they are written; the token count is checked
against the atom count, and each distinct token is resolved once by RDKit's own ``AtomFromSmiles``), and
bonds come from RDKit's adjacency matrix in one C++ call. RDKit objects are visited only for what the text
flags: ``@`` atoms for chirality, and bonds when ``/`` or ``\\`` is present. Any mismatch, a ``Mol`` input,
or text with whitespace or CXSMILES (``|``) takes the plain per-atom path, which gives identical arrays.
"""

from __future__ import annotations

import re

import numpy as np
from rdkit import Chem, rdBase

from encoders.molecule.scheme_base import FeatureScheme, GraphArrays, edges_from_bonds

DUMMY_ATOM_TYPE = 118
"""Atom-type index of the dummy atom ``*`` and of any atomic number outside 1..118."""

_CHIRALITY = {
    Chem.ChiralType.CHI_UNSPECIFIED: 0,
    Chem.ChiralType.CHI_TETRAHEDRAL_CW: 1,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 2,
}
_BOND_TYPE = {
    Chem.BondType.SINGLE: 0,
    Chem.BondType.DOUBLE: 1,
    Chem.BondType.TRIPLE: 2,
    Chem.BondType.AROMATIC: 3,
}
_BOND_DIR = {Chem.BondDir.NONE: 0, Chem.BondDir.ENDUPRIGHT: 1, Chem.BondDir.ENDDOWNRIGHT: 2}

# Twice RDKit's bond order (1, 2, 3, 1.5) -> [bond type, direction 0] row; other orders (and anything past
# the end, via mode="clip") -> [0, 0], matching _BOND_TYPE's fallback. Dative bonds fill only one direction
# of the matrix and zero-order bonds none, so the edge-count check sends those to the per-bond path.
_TWICE_ORDER_TO_ROW = np.zeros((16, 2), dtype=np.int64)
_TWICE_ORDER_TO_ROW[[2, 4, 6, 3], 0] = [0, 1, 2, 3]

# Atom tokens of a SMILES string: bracket atoms, the organic subset (two-letter ones first), aromatic, '*'.
_ATOM_TOKEN = re.compile(r"\[[^\]]*\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*")
# Text the fast path does not read: whitespace (a name follows, or CXSMILES) and CXSMILES itself.
_NEEDS_GENERAL_PATH = re.compile(r"[\s|]")
# The N x N float adjacency matrix beats visiting bonds up to ~3,000 atoms; cap its memory at 32 MB.
_DENSE_MAX_ATOMS = 2048
_MAX_CACHED_TOKENS = 100_000  # atom-mapped datasets have many distinct tokens; bound the memory they take
_token_types: dict[str, int] = {}


def atom_type_index(atomic_num: int) -> int:
    """Atom-type index for ``atomic_num``: atomic number - 1 for 1..118, else :data:`DUMMY_ATOM_TYPE`."""
    return atomic_num - 1 if 1 <= atomic_num <= 118 else DUMMY_ATOM_TYPE


class PretrainGNNsScheme(FeatureScheme):
    """Hu et al. 2020 features, indexed for the released pretrain-gnns checkpoints (see module docstring)."""

    name = "pretrain-gnns"
    version = "1.0"
    atom_feature_dims = (119, 3)
    bond_feature_dims = (4, 3)

    def arrays(self, mol: Chem.Mol, smiles: str | None = None) -> GraphArrays:
        """Featurize ``mol``, reading what it can from ``smiles`` (the text ``mol`` was parsed from)."""
        readable = smiles is not None and _NEEDS_GENERAL_PATH.search(smiles) is None
        x = _atoms_from_text(mol, smiles) if readable else None
        if x is None:
            x = _atoms(mol)
        if readable and len(x) <= _DENSE_MAX_ATOMS:
            edges = _bonds_from_adjacency(mol, smiles)
            if edges is not None:
                return GraphArrays(x, *edges)
        return GraphArrays(x, *_bonds(mol))


def _atoms(mol: Chem.Mol) -> np.ndarray:
    """Atom features by visiting every RDKit atom."""
    rows = [(atom_type_index(a.GetAtomicNum()), _CHIRALITY.get(a.GetChiralTag(), 0)) for a in mol.GetAtoms()]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _bonds(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Edge index and attributes by visiting every RDKit bond."""
    begin, end, rows = [], [], []
    for bond in mol.GetBonds():
        begin.append(bond.GetBeginAtomIdx())
        end.append(bond.GetEndAtomIdx())
        rows.append((_BOND_TYPE.get(bond.GetBondType(), 0), _BOND_DIR.get(bond.GetBondDir(), 0)))
    return edges_from_bonds(begin, end, rows, 2)


def _atoms_from_text(mol: Chem.Mol, smiles: str) -> np.ndarray | None:
    """Atom features from the atom tokens of ``smiles``; None when they do not line up with ``mol``'s atoms."""
    tokens = _ATOM_TOKEN.findall(smiles)
    if len(tokens) != mol.GetNumAtoms():  # e.g. RDKit removed explicit [H] atoms
        return None
    try:
        types = [_token_types[t] for t in tokens]
    except KeyError:
        types = [_token_type(t) for t in tokens]
        if None in types:
            return None
    x = np.zeros((len(types), 2), dtype=np.int64)
    x[:, 0] = types
    if "@" in smiles:
        for i, token in enumerate(tokens):
            if "@" in token:
                x[i, 1] = _CHIRALITY.get(mol.GetAtomWithIdx(i).GetChiralTag(), 0)
    return x


def _token_type(token: str) -> int | None:
    """Atom type of one atom token, resolved by RDKit's own parser and cached; None if RDKit cannot."""
    cached = _token_types.get(token)
    if cached is not None:
        return cached
    with rdBase.BlockLogs():
        atom = Chem.AtomFromSmiles(token)
    if atom is None:
        return None
    if len(_token_types) >= _MAX_CACHED_TOKENS:
        _token_types.clear()
    _token_types[token] = index = atom_type_index(atom.GetAtomicNum())
    return index


def _bonds_from_adjacency(mol: Chem.Mol, smiles: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Edges from RDKit's bond-order adjacency matrix; None when some bond does not show up there as a pair."""
    adjacency = Chem.GetAdjacencyMatrix(mol, useBO=True)
    bonded = adjacency != 0
    edge_index = np.array(bonded.nonzero(), dtype=np.int64)  # row-major: sorted by (source, target)
    if edge_index.shape[1] != 2 * mol.GetNumBonds():
        return None
    attr = _TWICE_ORDER_TO_ROW.take((adjacency[bonded] * 2).astype(np.intp), axis=0, mode="clip")
    if "/" in smiles or "\\" in smiles:
        _mark_directions(mol, edge_index[0] * len(adjacency) + edge_index[1], attr)
    return edge_index, attr


def _mark_directions(mol: Chem.Mol, edge_keys: np.ndarray, attr: np.ndarray) -> None:
    """Write bond directions into ``attr``, whose rows are edges sorted by ``edge_keys`` = src * N + dst."""
    n = mol.GetNumAtoms()
    for bond in mol.GetBonds():
        direction = _BOND_DIR.get(bond.GetBondDir(), 0)
        if direction:
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            attr[np.searchsorted(edge_keys, (i * n + j, j * n + i)), 1] = direction
