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
flags: ``@`` atoms for chirality, and bonds when ``/`` or ``\\`` is present. Any mismatch, or a ``Mol``
input, takes the plain per-atom path, which gives identical arrays. The text has been screened
(:func:`~encoders.molecule.parsing.screen_smiles`): printable ASCII without whitespace, so no name or
CXSMILES block follows the SMILES. Reading it takes time linear in its length.

For many SMILES (:meth:`PretrainGNNsScheme.chunk_arrays`, used by ``featurize_many``) the same recipe runs
per chunk: all text is read before any parsing (SMILES without brackets by one ``str.translate``), while
parsing each molecule costs only its adjacency matrix, its bond count and the ``@`` / ``/`` visits, and the
numpy work on the matrices runs once for about a thousand molecules. Code run between two parses is slowed
by the parser's cache footprint (and slows it), so as little as possible runs there. Text without hydrogen
atoms is parsed by :func:`~encoders.molecule.parsing.parse_hydrogen_free`, which gives the parser's
molecule without its flagging of possible stereocentres (15% of the parse); everything else, and any text
that parse rejects, goes through ``Chem.MolFromSmiles`` itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np
from rdkit import Chem, rdBase

from encoders.molecule.parsing import InvalidMoleculeError, parse_hydrogen_free, parse_smiles_unblocked
from encoders.molecule.scheme_base import ChunkArrays, FeatureScheme, GraphArrays, bonds_of, edges_from_bonds

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
# A bracket atom holds no '[' (none does in a valid SMILES), so each '[' is read once: '[' * n in linear time.
_ATOM_TOKEN = re.compile(r"\[[^\[\]]*\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*")
# The N x N float adjacency matrix beats visiting bonds up to ~3,000 atoms; cap its memory at 32 MB.
_DENSE_MAX_ATOMS = 2048
# Adjacency entries queued before they are turned into edges (8 MB of float64, about 1,500 molecules): the
# numpy work then runs about once per chunk, where its fixed costs vanish, and one huge molecule cannot make
# a chunk hold more than this plus its own matrix.
_ADJACENCY_BATCH = 1 << 20
_MAX_CACHED_TOKENS = 100_000  # atom-mapped datasets have many distinct tokens; bound the memory they take
_token_types: dict[str, int] = {}


def atom_type_index(atomic_num: int) -> int:
    """Atom-type index for ``atomic_num``: atomic number - 1 for 1..118, else :data:`DUMMY_ATOM_TYPE`."""
    return atomic_num - 1 if 1 <= atomic_num <= 118 else DUMMY_ATOM_TYPE


_HYDROGEN = atom_type_index(1)


# str.translate table for SMILES without brackets (Cl and Br written as L and R): atom character -> its atom
# type as a character, every other ASCII character (bonds, rings, branches) -> deleted.
_ORGANIC_TYPES = {code: None for code in range(128)} | {
    ord(symbol): chr(atom_type_index(number))
    for symbol, number in zip(
        "BCNOPSFIbcnopsLR*", (5, 6, 7, 8, 15, 16, 9, 53, 5, 6, 7, 8, 15, 16, 17, 35, 0), strict=True
    )
}


class PretrainGNNsScheme(FeatureScheme):
    """Hu et al. 2020 features, indexed for the released pretrain-gnns checkpoints (see module docstring)."""

    name = "pretrain-gnns"
    version = "1.0"
    atom_feature_dims = (119, 3)
    bond_feature_dims = (4, 3)

    def arrays(self, mol: Chem.Mol, smiles: str | None = None) -> GraphArrays:
        """Featurize ``mol``, reading what it can from ``smiles`` (the screened text it was parsed from)."""
        x = _atoms_from_text(mol, smiles) if smiles is not None else None
        if x is None:
            x = _atoms(mol)
        if smiles is not None and len(x) <= _DENSE_MAX_ATOMS:
            edges = _bonds_from_adjacency(mol, smiles)
            if edges is not None:
                return GraphArrays(x, *edges)
        return GraphArrays(x, *_bonds(mol))

    def chunk_arrays(self, smiles: list[str]) -> ChunkArrays:
        """:meth:`arrays` for many SMILES: the text is read up front, each molecule costs only a few RDKit
        calls while it is parsed, and the numpy work runs once per batch of molecules."""
        texts = [_read_text(text) for text in smiles]
        builder = _ChunkBuilder()
        errors: dict[int, str] = {}
        legacy_stereo = Chem.GetUseLegacyStereoPerception()  # what parse_hydrogen_free repeats
        with rdBase.BlockLogs():
            for position, (text, read) in enumerate(zip(smiles, texts, strict=True)):
                quick = legacy_stereo and read.hydrogen_free
                mol = parse_hydrogen_free(text) if quick else Chem.MolFromSmiles(text)
                if mol is None or not builder.add(mol, text, read):
                    try:  # rejected: parse_smiles_unblocked raises with RDKit's reason
                        builder.add(parse_smiles_unblocked(text), text, read)
                    except InvalidMoleculeError as exc:
                        errors[position] = str(exc)
                del mol  # free the Mol now: the next parse then reuses its memory, which is faster
            return builder.finish(errors)


def _atoms(mol: Chem.Mol) -> np.ndarray:
    """Atom features by visiting every RDKit atom."""
    rows = [(atom_type_index(a.GetAtomicNum()), _CHIRALITY.get(a.GetChiralTag(), 0)) for a in mol.GetAtoms()]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _bonds(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Edge index and attributes by visiting every RDKit bond."""
    begin, end, rows = [], [], []
    for bond in bonds_of(mol):
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
    for bond in bonds_of(mol):
        direction = _BOND_DIR.get(bond.GetBondDir(), 0)
        if direction:
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            attr[np.searchsorted(edge_keys, (i * n + j, j * n + i)), 1] = direction


class _TextAtoms(NamedTuple):
    """What :meth:`PretrainGNNsScheme.chunk_arrays` reads from one SMILES before parsing it."""

    num_atoms: int  # atom tokens in the text
    types: Sequence[int] | None  # their atom types; None when RDKit does not know some token
    chiral: Sequence[int]  # indices of the atom tokens with '@'

    @property
    def hydrogen_free(self) -> bool:
        """Every atom token is known and none is hydrogen: what :func:`parse_hydrogen_free` asks for."""
        return self.types is not None and _HYDROGEN not in self.types


def _read_text(smiles: str) -> _TextAtoms:
    """The atom tokens' count, types and ``@`` positions of screened (printable ASCII) text."""
    if "[" not in smiles and "L" not in smiles and "R" not in smiles:
        # Organic-subset atoms only: with Cl and Br as one letter each, one character per atom, which
        # translate() turns into the atom type (as a byte) and every other character into nothing.
        types = smiles.replace("Cl", "L").replace("Br", "R").translate(_ORGANIC_TYPES).encode("latin-1")
        return _TextAtoms(len(types), types, ())
    tokens = _ATOM_TOKEN.findall(smiles)
    chiral = [i for i, token in enumerate(tokens) if "@" in token] if "@" in smiles else ()
    try:
        return _TextAtoms(len(tokens), [_token_types[t] for t in tokens], chiral)
    except KeyError:
        types = [_token_type(t) for t in tokens]
        return _TextAtoms(len(tokens), None if None in types else types, chiral)


class _ChunkBuilder:
    """Collects a chunk's molecules and turns them into arrays.

    While a molecule is parsed it costs only a few RDKit calls and list appends: its atom types come from
    the text, its adjacency matrix is queued, and all numpy work runs once per batch of molecules
    (:meth:`_flush`, :meth:`finish`). Every molecule gives the same values as
    :meth:`PretrainGNNsScheme.arrays`.
    """

    def __init__(self) -> None:
        self.molecules: list[tuple[str, Sequence[int], int, int]] = []  # (SMILES, atom types, atoms, edges)
        self.chirality: list[tuple[int, int, int]] = []  # (molecule, atom, value) of each nonzero chirality
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []  # (edge_index, edge_attr) in molecule order
        self.matrices: list[np.ndarray] = []  # adjacency matrices not yet turned into edges
        self.queued_size = 0
        self.queued: list[int] = []  # the molecules of those matrices
        self.directions: list[tuple[int, int, int, int]] = []  # (queued matrix, begin, end, direction)

    def add(self, mol: Chem.Mol, smiles: str, text: _TextAtoms) -> bool:
        """Append one parsed molecule (``text`` is what :func:`_read_text` got from ``smiles``); False, with
        nothing appended, for a molecule without atoms."""
        if text.num_atoms > _DENSE_MAX_ATOMS:  # RDKit has at most one atom per token
            return self._add_general(mol, smiles)
        adjacency = Chem.GetAdjacencyMatrix(mol, useBO=True)
        num_atoms = len(adjacency)
        if not num_atoms:
            return False
        types = text.types
        if types is None or text.num_atoms != num_atoms:
            types = self._atom_rows(mol)
        elif text.chiral:
            self._add_chirality(mol, text.chiral)
        if self.queued_size + adjacency.size > _ADJACENCY_BATCH:
            self._flush()
        if "/" in smiles or "\\" in smiles:
            self._add_directions(mol)
        self.queued.append(len(self.molecules))
        self.molecules.append((smiles, types, num_atoms, 2 * mol.GetNumBonds()))
        self.matrices.append(adjacency)
        self.queued_size += adjacency.size
        return True

    def finish(self, errors: dict[int, str]) -> ChunkArrays:
        """All molecules' arrays, as :class:`ChunkArrays`."""
        self._flush()
        types = list(chain.from_iterable(types for _, types, _, _ in self.molecules))
        num_atoms = [atoms for _, _, atoms, _ in self.molecules]
        x = np.zeros((len(types), 2), dtype=np.int64)
        x[:, 0] = types
        if self.chirality:
            molecule, atom, value = np.array(self.chirality).T
            x[np.cumsum([0, *num_atoms[:-1]])[molecule] + atom, 1] = value
        edge_index = np.concatenate([np.empty((2, 0), np.int64)] + [e for e, _ in self.edges], axis=1)
        edge_attr = np.concatenate([np.empty((0, 2), np.int64)] + [a for _, a in self.edges])
        num_edges = [edges for _, _, _, edges in self.molecules]
        return ChunkArrays(x, edge_index, edge_attr, num_atoms, num_edges, errors)

    def _add_general(self, mol: Chem.Mol, smiles: str) -> bool:
        """:meth:`add` by visiting every atom and bond, for text the fast path does not read."""
        num_atoms = mol.GetNumAtoms()
        if not num_atoms:
            return False
        types = self._atom_rows(mol)
        self._flush()  # the queued molecules' edges come first
        edge_index, edge_attr = _bonds(mol)
        self.edges.append((edge_index, edge_attr))
        self.molecules.append((smiles, types, num_atoms, edge_index.shape[1]))
        return True

    def _atom_rows(self, mol: Chem.Mol) -> list[int]:
        """Atom types of the next molecule by visiting its atoms, noting their chirality on the way."""
        molecule = len(self.molecules)
        types, chirality = zip(*_atoms(mol).tolist(), strict=True)
        self.chirality += [(molecule, atom, value) for atom, value in enumerate(chirality) if value]
        return list(types)

    def _add_chirality(self, mol: Chem.Mol, atoms: Sequence[int]) -> None:
        """Chirality of the next molecule's ``@`` atoms, the only ones the text can give a nonzero value."""
        molecule = len(self.molecules)
        for atom in atoms:
            value = _CHIRALITY.get(mol.GetAtomWithIdx(atom).GetChiralTag(), 0)
            if value:
                self.chirality.append((molecule, atom, value))

    def _add_directions(self, mol: Chem.Mol) -> None:
        """Directions RDKit gave the next molecule's bonds (from ``/`` and ``\\``), for :meth:`_flush`."""
        matrix = len(self.queued)
        for bond in bonds_of(mol):
            direction = _BOND_DIR.get(bond.GetBondDir(), 0)
            if direction:
                self.directions.append((matrix, bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), direction))

    def _flush(self) -> None:
        """Turn the queued adjacency matrices into edges, sorted by (molecule, source, target)."""
        if not self.queued:
            return
        sizes = np.array([self.molecules[m][2] for m in self.queued])
        starts = np.zeros(len(sizes), dtype=np.int64)
        np.cumsum(sizes[:-1] * sizes[:-1], out=starts[1:])
        expected = np.array([self.molecules[m][3] for m in self.queued])
        flat = np.concatenate(self.matrices, axis=None)
        # Row-major within each matrix, so sorted by (molecule, source, target).
        bonded = np.flatnonzero(flat != 0)
        # A matrix never shows more entries than twice its bonds, so equal totals mean all matrices are whole;
        # otherwise count per matrix to find those with dative or zero-order bonds (see _per_bond).
        counts = expected
        if len(bonded) != expected.sum():
            counts = np.add.reduceat(flat != 0, starts, dtype=np.int64)
        local, n = bonded - np.repeat(starts, counts), np.repeat(sizes, counts)
        source = local // n
        edge_index = np.stack((source, local - source * n))
        edge_attr = _TWICE_ORDER_TO_ROW.take((flat[bonded] * 2).astype(np.intp), axis=0, mode="clip")
        redo = np.flatnonzero(counts != expected)
        directions = [d for d in self.directions if d[0] not in redo] if len(redo) else self.directions
        if directions:
            m, i, j, direction = np.array(directions, dtype=np.int64).T
            keys = np.concatenate((i * sizes[m] + j, j * sizes[m] + i)) + np.tile(starts[m], 2)
            edge_attr[np.searchsorted(bonded, keys), 1] = np.concatenate((direction, direction))
        if len(redo):
            owner = np.repeat(np.arange(len(sizes)), counts)
            edge_index, edge_attr = self._per_bond(redo, owner, edge_index, edge_attr)
        self.edges.append((edge_index, edge_attr))
        self.matrices, self.queued_size, self.queued, self.directions = [], 0, [], []

    def _per_bond(
        self, redo: np.ndarray, owner: np.ndarray, edge_index: np.ndarray, edge_attr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Replace the edges of the queued matrices ``redo`` with edges from visiting their bonds.

        These matrices miss bonds (zero-order ones show as 0, dative ones in one direction only), as
        :func:`_bonds_from_adjacency` finds; the Mol is gone by now, so these rare SMILES are parsed again.
        """
        keep = ~np.isin(owner, redo)
        owners, indexes, attrs = [owner[keep]], [edge_index[:, keep]], [edge_attr[keep]]
        for matrix in redo.tolist():
            bond_index, bond_attr = _bonds(Chem.MolFromSmiles(self.molecules[self.queued[matrix]][0]))
            owners.append(np.full(bond_index.shape[1], matrix))
            indexes.append(bond_index)
            attrs.append(bond_attr)
        order = np.argsort(np.concatenate(owners), kind="stable")
        return np.concatenate(indexes, axis=1)[:, order], np.concatenate(attrs)[order]
