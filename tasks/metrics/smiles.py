"""SMILES helpers shared by the molecule metrics: parsing, order-insensitive canonical form, and
fingerprint Tanimoto similarity (MACCS keys, RDKit topological, Morgan radius 2 as 2048 bits or as unfolded
counts).

An empty or unparsable SMILES is invalid: it canonicalises to ``None`` and has no fingerprint. So is text
that is not ASCII (RDKit cannot receive a lone surrogate) or longer than ``MAX_PARSE_LENGTH`` (RDKit's parse
time grows with the square of the length on some hostile text), so one bad row cannot abort or stall a metric.
RDKit's parse warnings are silenced here because invalid model output is expected and counted.
"""

from __future__ import annotations

from collections.abc import Callable

from rdkit import Chem, DataStructs
from rdkit.Chem import MACCSkeys, rdFingerprintGenerator
from rdkit.rdBase import BlockLogs

FINGERPRINTS: tuple[str, ...] = ("maccs", "rdk", "morgan2_2048")
MAX_PARSE_LENGTH = 4_000  # the featurizer's default limit (encoders.smiles_text.MAX_SMILES_LENGTH)


def parse_smiles(smiles: str) -> Chem.Mol | None:
    """RDKit molecule for ``smiles``, or ``None`` when it is empty or does not parse."""
    if not isinstance(smiles, str) or not smiles.strip() or len(smiles) > MAX_PARSE_LENGTH or not smiles.isascii():
        return None
    with BlockLogs():
        return Chem.MolFromSmiles(smiles.strip())


def canonicalize_smiles(smiles: str, *, remove_stereo: bool = False) -> str | None:
    """Canonical SMILES whose ``.``-separated components are sorted, so component order never matters.

    Each component is canonicalised on its own, then the components are sorted (duplicates kept).
    With ``remove_stereo`` stereochemistry is removed (``Chem.RemoveStereochemistry``) first.
    Returns ``None`` for invalid SMILES.
    """
    mol = parse_smiles(smiles)
    if mol is None:
        return None
    if remove_stereo:
        Chem.RemoveStereochemistry(mol)
    return ".".join(sorted(Chem.MolToSmiles(fragment) for fragment in Chem.GetMolFrags(mol, asMols=True)))


_MORGAN2_2048 = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
# The sparse count fingerprint ignores fpSize: its elements are the unfolded environment ids with their
# counts, the same non-zero elements as the deprecated ``AllChem.GetMorganFingerprint(mol, 2)`` that MolT5 uses.
_MORGAN2 = rdFingerprintGenerator.GetMorganGenerator(radius=2)
_FINGERPRINTERS: dict[str, Callable[[Chem.Mol], object]] = {
    "maccs": MACCSkeys.GenMACCSKeys,
    "rdk": Chem.RDKFingerprint,
    "morgan2_2048": _MORGAN2_2048.GetFingerprint,
    "morgan2_count": _MORGAN2.GetSparseCountFingerprint,
}


def mol_tanimoto(first: Chem.Mol, second: Chem.Mol, fingerprint: str) -> float:
    """Tanimoto similarity of two parsed molecules' fingerprints (see :func:`tanimoto_similarity`).

    For ``"morgan2_count"`` it is the count Tanimoto ``sum(min) / (sum(a) + sum(b) - sum(min))``; a pair with
    no environments at all (two empty molecules) scores 0, as RDKit does.
    """
    if fingerprint not in _FINGERPRINTERS:
        raise ValueError(f"unknown fingerprint {fingerprint!r}; use one of {', '.join(_FINGERPRINTERS)}")
    make = _FINGERPRINTERS[fingerprint]
    return DataStructs.TanimotoSimilarity(make(first), make(second))


def tanimoto_similarity(first: str, second: str, fingerprint: str) -> float | None:
    """Tanimoto similarity of two molecules' fingerprints, or ``None`` if either SMILES is invalid.

    ``fingerprint`` is ``"maccs"`` (166 MACCS keys), ``"rdk"`` (``Chem.RDKFingerprint`` defaults),
    ``"morgan2_2048"`` (Morgan, radius 2, folded to 2048 bits) or ``"morgan2_count"`` (Morgan, radius 2,
    unfolded environment counts, as MolT5's evaluation).
    """
    if fingerprint not in _FINGERPRINTERS:
        raise ValueError(f"unknown fingerprint {fingerprint!r}; use one of {', '.join(_FINGERPRINTERS)}")
    mol_a, mol_b = parse_smiles(first), parse_smiles(second)
    if mol_a is None or mol_b is None:
        return None
    return mol_tanimoto(mol_a, mol_b, fingerprint)
