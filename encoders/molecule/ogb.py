"""The ``ogb`` scheme: the 9 atom and 3 bond categorical features of ``ogb.utils.features``.

Same value lists and order as OGB's ``atom_to_feature_vector`` / ``bond_to_feature_vector``, including the
"misc" last index for values outside a list, so embeddings trained on OGB molecule datasets line up:

* atom ``x`` [N, 9]: atomic number - 1 (1..118; anything else, e.g. the dummy ``*``, -> misc 118),
  chirality (UNSPECIFIED, CW, CCW, OTHER, misc), total degree (0..10, misc), formal charge (-5..5, misc),
  total H count (0..8, misc), radical electrons (0..4, misc), hybridization (SP, SP2, SP3, SP3D, SP3D2,
  misc), is aromatic, is in ring.
* bond ``edge_attr`` [E, 3]: type (SINGLE, DOUBLE, TRIPLE, AROMATIC, misc), stereo (NONE, Z, E, CIS, TRANS,
  ANY), is conjugated. OGB's stereo list has no misc slot and crashes on the atropisomer values RDKit added
  later (STEREOATROPCW/CCW); here they, and any future value, take the last index (ANY = 5).

Edges follow the shared order of :func:`~encoders.molecule.scheme_base.edges_from_bonds` (OGB keeps RDKit
bond order); only edge order differs from OGB's ``smiles2graph``.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from encoders.molecule.scheme_base import FeatureScheme, GraphArrays, bonds_of, edges_from_bonds

_CT, _HT, _BT, _BS = Chem.ChiralType, Chem.HybridizationType, Chem.BondType, Chem.BondStereo
_CHIRALITY = {_CT.CHI_UNSPECIFIED: 0, _CT.CHI_TETRAHEDRAL_CW: 1, _CT.CHI_TETRAHEDRAL_CCW: 2, _CT.CHI_OTHER: 3}
_HYBRIDIZATION = {_HT.SP: 0, _HT.SP2: 1, _HT.SP3: 2, _HT.SP3D: 3, _HT.SP3D2: 4}
_BOND_TYPE = {_BT.SINGLE: 0, _BT.DOUBLE: 1, _BT.TRIPLE: 2, _BT.AROMATIC: 3}
_STEREO = {
    _BS.STEREONONE: 0,
    _BS.STEREOZ: 1,
    _BS.STEREOE: 2,
    _BS.STEREOCIS: 3,
    _BS.STEREOTRANS: 4,
    _BS.STEREOANY: 5,
}


def _in_range(value: int, low: int, high: int) -> int:
    """Index of ``value`` in ``range(low, high + 1)``, or the misc index just past it."""
    return value - low if low <= value <= high else high - low + 1


class OGBScheme(FeatureScheme):
    """OGB's ``smiles2graph`` features (see module docstring)."""

    name = "ogb"
    version = "1.0"
    atom_feature_dims = (119, 5, 12, 12, 10, 6, 6, 2, 2)
    bond_feature_dims = (5, 6, 2)

    def arrays(self, mol: Chem.Mol, smiles: str | None = None) -> GraphArrays:
        """Featurize ``mol`` by visiting each atom and bond (``smiles`` is not needed)."""
        rows = [
            (
                _in_range(atom.GetAtomicNum(), 1, 118),
                _CHIRALITY.get(atom.GetChiralTag(), 4),
                _in_range(atom.GetTotalDegree(), 0, 10),
                _in_range(atom.GetFormalCharge(), -5, 5),
                _in_range(atom.GetTotalNumHs(), 0, 8),
                _in_range(atom.GetNumRadicalElectrons(), 0, 4),
                _HYBRIDIZATION.get(atom.GetHybridization(), 5),
                int(atom.GetIsAromatic()),
                int(atom.IsInRing()),
            )
            for atom in mol.GetAtoms()
        ]
        x = np.array(rows, dtype=np.int64).reshape(-1, 9)
        begin, end, bond_rows = [], [], []
        for bond in bonds_of(mol):
            begin.append(bond.GetBeginAtomIdx())
            end.append(bond.GetEndAtomIdx())
            bond_rows.append(
                (
                    _BOND_TYPE.get(bond.GetBondType(), 4),
                    _STEREO.get(bond.GetStereo(), 5),
                    int(bond.GetIsConjugated()),
                )
            )
        return GraphArrays(x, *edges_from_bonds(begin, end, bond_rows, 3))
