"""What a feature scheme is: a named, versioned recipe from an RDKit ``Mol`` to integer feature arrays.

Schemes return numpy arrays rather than tensors so worker processes can ship them cheaply; the caller
wraps them as tensors without copying. Every scheme orders edges the same way (see :func:`edges_from_bonds`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
from rdkit import Chem


class GraphArrays(NamedTuple):
    """One molecule's graph: ``x`` [N, F] atom features, ``edge_index`` [2, E], ``edge_attr`` [E, Fe] (int64)."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray


class FeatureScheme(ABC):
    """A molecule featurization recipe. Bump ``version`` whenever any produced value changes.

    ``atom_feature_dims`` / ``bond_feature_dims`` give, per column, how many distinct values the scheme can
    produce (every value lies in ``[0, dim)``), which is what an embedding table for that column needs.
    """

    name: str
    version: str
    atom_feature_dims: tuple[int, ...]
    bond_feature_dims: tuple[int, ...]

    @abstractmethod
    def arrays(self, mol: Chem.Mol, smiles: str | None = None) -> GraphArrays:
        """Featurize ``mol``; ``smiles`` is the text it was parsed from (None for a user-given Mol)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


def edges_from_bonds(
    begin: list[int], end: list[int], bond_rows: list[tuple[int, ...]], width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every bond, sorted by (source, target) like ``torch_geometric.utils.from_smiles``.

    The sorted order does not depend on the order RDKit stores bonds in, so a SMILES string and the same
    molecule given as a ``Mol`` (or featurized by the fast path) give identical tensors.
    """
    if not begin:
        return np.empty((2, 0), dtype=np.int64), np.empty((0, width), dtype=np.int64)
    src = np.array(begin + end, dtype=np.int64)
    dst = np.array(end + begin, dtype=np.int64)
    order = np.lexsort((dst, src))
    attr = np.array(bond_rows + bond_rows, dtype=np.int64).reshape(-1, width)
    return np.stack((src[order], dst[order])), np.ascontiguousarray(attr[order])
