"""SMILES -> RDKit ``Mol`` with quiet logs and errors that say which input failed and why.

Text is screened first (:func:`screen_smiles`): empty text, text over the length limit, and characters no
SMILES has are refused before RDKit sees them. RDKit reports problems by printing to stderr and returning
``None``; here the printing is blocked and the reason (syntax error, valence, kekulization) is recovered and
raised as :class:`InvalidMoleculeError`.
"""

from __future__ import annotations

from rdkit import Chem, rdBase

from encoders.base import InvalidInputError
from encoders.smiles_text import MAX_SMILES_LENGTH, quote_smiles, smiles_text_problem

_MAX_LOG_PARTS = 4  # an error message names the first few problems RDKit logs, and how many more


class InvalidMoleculeError(InvalidInputError):
    """A SMILES string or RDKit ``Mol`` that cannot be turned into a molecular graph."""


def parse_smiles(smiles: str, max_length: int | None = MAX_SMILES_LENGTH) -> Chem.Mol:
    """Screen, parse and sanitize ``smiles`` with RDKit, raising :class:`InvalidMoleculeError` with the
    reason; text over ``max_length`` characters (None: no limit) is refused unread."""
    if not isinstance(smiles, str):
        raise TypeError(f"expected a SMILES string, got {type(smiles).__name__}: {smiles!r}")
    problem = screen_smiles(smiles, max_length)
    if problem is not None:
        raise InvalidMoleculeError(problem)
    with rdBase.BlockLogs():
        return parse_smiles_unblocked(smiles)


def screen_smiles(smiles: str, max_length: int | None) -> str | None:
    """The :class:`InvalidMoleculeError` message for text RDKit must not be given (empty, over ``max_length``
    characters, or holding whitespace, control or non-ASCII characters), or None; linear time."""
    if not smiles:
        return "SMILES '' is empty; give at least one atom, e.g. 'C'"
    problem = smiles_text_problem(smiles, max_length)
    return None if problem is None else f"cannot read SMILES {quote_smiles(smiles)}: {problem}"


def parse_smiles_unblocked(smiles: str) -> Chem.Mol:
    """:func:`parse_smiles` for text that passed :func:`screen_smiles`, inside ``rdBase.BlockLogs()`` (a
    batch screens its text and blocks logs once)."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        hint = "; for a reaction SMILES use reaction_to_graphs" if ">" in smiles.replace("->", "") else ""
        raise InvalidMoleculeError(
            f"SMILES {quote_smiles(smiles)} is not a valid molecule: {rdkit_reason(smiles)}{hint}"
        )
    if mol.GetNumAtoms() == 0:
        raise InvalidMoleculeError(
            f"SMILES {quote_smiles(smiles)} has no atoms; give at least one atom, e.g. 'C'"
        )
    return mol


def parse_hydrogen_free(smiles: str) -> Chem.Mol | None:
    """What ``Chem.MolFromSmiles(smiles)`` returns for text without hydrogen atoms, in about 85% of its time.

    The parser ends by removing hydrogen atoms (sanitizing the molecule on the way) and assigning
    stereochemistry with ``flagPossible=True``, which ranks atoms only to mark every possible stereocentre
    with a property no feature scheme reads; that marking is the 15%. With no hydrogen atom to remove,
    sanitizing and assigning stereochemistry without it gives the same atoms, bonds, chiral tags and bond
    directions (checked on all 164,858 distinct SMILES in ../shared). Returns None when RDKit rejects the
    text, and callers then ask the parser itself (:func:`parse_smiles_unblocked`) for the verdict and the
    reason. Only for RDKit's legacy stereo perception (its default), and inside ``rdBase.BlockLogs()``.
    """
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
    except Chem.MolSanitizeException:
        return None
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol


def rdkit_reason(smiles: str) -> str:
    """Why RDKit rejects ``smiles``: its own log lines when they can be captured, else the failing stage."""
    capture = getattr(rdBase, "CaptureErrorLog", None)  # absent from older RDKit releases
    with rdBase.BlockLogs():
        if capture is not None:
            with capture() as log:
                Chem.MolFromSmiles(smiles)
            reason = _clean_log(log.messages, smiles)
            if reason:
                return reason
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            return "syntax error (check brackets, ring-bond digits and element symbols)"
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:  # any sanitization failure is the reason we report
            return f"sanitization failed: {exc}"
    return "RDKit rejected it without giving a reason"


def _clean_log(messages: str, smiles: str) -> str:
    """RDKit log text as one line of at most :data:`_MAX_LOG_PARTS` parts: timestamps, repeated lines, the
    ``~~^`` markers and every echo of the input removed. Time linear in the log, which RDKit itself can make
    quadratic in the input (an echo per unclosed branch); the length limit bounds that."""
    parts: dict[str, None] = {}
    for raw in messages.splitlines():
        line = raw.split("] ", 1)[1] if raw.startswith("[") and "] " in raw else raw
        line = line.removeprefix("SMILES Parse Error: ").strip().rstrip(":")
        line = line.removesuffix(f" while parsing: {smiles}").removesuffix(f" for input: '{smiles}'")
        if not line or line.startswith("Failed parsing SMILES") or line in smiles or set(line) <= {"~", "^"}:
            continue
        parts[line] = None
    kept = list(parts)[:_MAX_LOG_PARTS]
    more = len(parts) - len(kept)
    return "; ".join(kept) + (f" (and {more:,} more)" if more else "")
