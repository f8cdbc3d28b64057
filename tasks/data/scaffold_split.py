"""Deterministic Bemis-Murcko scaffold split (DeepChem's ``ScaffoldSplitter`` protocol).

Molecules are grouped by their Murcko scaffold SMILES (``MurckoScaffoldSmiles``, chirality ignored;
acyclic molecules share the empty scaffold). Scaffold sets are ordered largest first, ties broken by
the larger first index first (DeepChem sorts by ``(len(set), set[0])`` in reverse). Sets are then
assigned greedily: to train while train stays within ``train * N``, else to valid while train + valid
stays within ``(train + valid) * N``, else to test. No randomness, so the split is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold
from rdkit.rdBase import BlockLogs


@dataclass(frozen=True)
class ScaffoldSplit:
    """Row indices of each part, each list sorted ascending."""

    train: list[int]
    valid: list[int]
    test: list[int]


def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES of a molecule (chirality ignored); raises on invalid SMILES."""
    with BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        raise ValueError(f"{smiles!r} is not a valid SMILES")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(
    smiles: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> ScaffoldSplit:
    """Split molecule indices into train/valid/test so that no scaffold is in two parts."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups: dict[str, list[int]] = {}
    for index, smi in enumerate(smiles):
        try:
            scaffold = murcko_scaffold(smi)
        except ValueError as err:
            raise ValueError(f"molecule {index}: {err}; fix or drop it before splitting") from err
        groups.setdefault(scaffold, []).append(index)
    ordered = sorted(groups.values(), key=lambda rows: (len(rows), rows[0]), reverse=True)
    n = len(smiles)
    train_cutoff = fractions[0] * n
    valid_cutoff = (fractions[0] + fractions[1]) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for rows in ordered:
        if len(train) + len(rows) <= train_cutoff:
            train += rows
        elif len(train) + len(valid) + len(rows) <= valid_cutoff:
            valid += rows
        else:
            test += rows
    return ScaffoldSplit(train=sorted(train), valid=sorted(valid), test=sorted(test))
