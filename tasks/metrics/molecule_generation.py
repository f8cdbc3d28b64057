"""Text -> molecule generation metrics on predicted vs reference SMILES, in two profiles.

``profile="strict"`` (the default) scores what a model should be held to; ``profile="molt5"`` reproduces
MolT5's own evaluation scripts (github.com/blender-nlp/MolT5, ``evaluation/mol_translation_metrics.py`` and
``evaluation/fingerprint_metrics.py``) so that numbers can be set beside its tables. The strict keys:

- ``smiles_char_bleu4``: corpus BLEU-4 over SMILES characters of the raw strings (nltk ``corpus_bleu``
  semantics, no smoothing). Same as MolT5's BLEU.
- ``mean_levenshtein``: mean edit distance between the raw SMILES strings. Same as MolT5's Levenshtein.
- ``canonical_exact_match``: RDKit canonical SMILES equal, ``.``-components order-insensitive, stereo kept.
  MolT5 compares standard InChI (``Chem.MolToInchi``) instead, which (a) merges mobile-H tautomers
  (2-hydroxypyridine ``Oc1ccccn1`` = 2-pyridone ``O=c1cccc[nH]1``, an imidic acid = its amide), (b) disconnects
  metals (``[Na]Cl`` = ``[Na+].[Cl-]``), and (c) is the empty string for anything InChI cannot encode (an
  empty molecule, a ``*`` atom), so MolT5 counts an empty prediction as an exact match of such a reference.
  Strict counts neither: a tautomer or another bonding of the metal is another SMILES than the one asked for.
- ``validity``: fraction of predictions RDKit parses, where an empty or whitespace-only prediction is
  invalid. RDKit parses ``''`` to an empty molecule, and MolT5 counts that as valid; strict does not,
  because an empty output is no molecule. ``num_invalid`` counts the invalid ones.
- ``{maccs,rdk,morgan2_2048}_tanimoto``: mean Tanimoto over ALL samples, an invalid prediction scoring 0,
  so a model cannot raise its similarity by emitting garbage for the hard cases. MolT5 averages over the
  predictions that parse (an empty prediction among them, scoring 0); ``..._tanimoto_valid_only`` is that
  average over the strictly valid ones (NaN if none). MolT5's Morgan similarity uses unfolded radius-2 count
  fingerprints (a repeated environment counts more than once, and no two environments share a bit); ours
  are radius-2 bit vectors folded to 2048 bits.

The ``molt5`` profile returns only keys prefixed ``molt5_`` (:data:`MOLT5_KEYS`), so its numbers cannot be
mistaken for the strict ones: ``molt5_bleu`` and ``molt5_levenshtein`` (as above), ``molt5_exact_match``
(standard InChI of prediction and reference equal; a prediction that does not parse never matches),
``molt5_validity`` and ``molt5_num_invalid`` (RDKit parses the raw prediction; ``''`` parses),
``molt5_{maccs,rdk,morgan}_fts`` (Tanimoto of MACCS keys, ``Chem.RDKFingerprint`` and radius-2 Morgan count
fingerprints, averaged over the predictions that parse; NaN if none). Two inputs MolT5's files cannot hold
are scored as invalid predictions: ``None`` (a failed generation) and text over
:data:`~tasks.metrics.smiles.MAX_PARSE_LENGTH` characters or with non-ASCII characters (which RDKit would
reject or parse for minutes).

In both profiles every reference must parse (a reference that does not is an error naming it); in
``molt5`` a reference is parsed as MolT5 parses it, so ``''`` is accepted there.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem
from rdkit.rdBase import BlockLogs

from tasks.metrics._validation import check_not_empty, check_same_length
from tasks.metrics.bleu import corpus_bleu
from tasks.metrics.edit_distance import levenshtein_distance
from tasks.metrics.smiles import (
    FINGERPRINTS,
    MAX_PARSE_LENGTH,
    canonicalize_smiles,
    mol_tanimoto,
    parse_smiles,
    tanimoto_similarity,
)

PROFILES: tuple[str, ...] = ("strict", "molt5")
# MolT5's similarity names -> our fingerprint names (tasks.metrics.smiles).
_MOLT5_FINGERPRINTS = {"maccs": "maccs", "rdk": "rdk", "morgan": "morgan2_count"}
MOLT5_KEYS: tuple[str, ...] = (
    "molt5_bleu",
    "molt5_exact_match",
    "molt5_levenshtein",
    "molt5_validity",
    "molt5_num_invalid",
    *(f"molt5_{name}_fts" for name in _MOLT5_FINGERPRINTS),
)


def check_profile(profile: object) -> str:
    """``profile`` if it is one of :data:`PROFILES`, else a ``ValueError`` naming the allowed ones."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(
            f"unknown molecule_generation profile {profile!r}; allowed profiles: "
            "'strict' (the default: canonical SMILES, 2048-bit Morgan, empty prediction invalid) or "
            "'molt5' (MolT5's evaluation: InChI, Morgan counts, empty prediction valid)"
        )
    return profile


def smiles_char_bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 treating every SMILES character as a token (one reference per sample)."""
    check_same_length("predictions", predictions, "references", references)
    return corpus_bleu([[list(r)] for r in references], [list(p) for p in predictions], max_order=4)


def _molt5_parse(smiles: str | None) -> Chem.Mol | None:
    """RDKit's reading of the raw string, as MolT5 (``''`` is an empty molecule); ``None`` if it fails."""
    if not isinstance(smiles, str) or len(smiles) > MAX_PARSE_LENGTH or not smiles.isascii():
        return None
    with BlockLogs():
        return Chem.MolFromSmiles(smiles)


def _inchi(mol: Chem.Mol) -> str:
    with BlockLogs():  # InChI warnings (and "Empty structure") are expected for model output
        return Chem.MolToInchi(mol)


def _check_references(references: Sequence[str], profile: str) -> list[Chem.Mol]:
    parse = _molt5_parse if profile == "molt5" else parse_smiles
    mols = []
    for i, ref in enumerate(references):
        mol = parse(ref)
        if mol is None:
            raise ValueError(f"reference {i} ({ref!r}) is not a valid SMILES; fix or drop that sample")
        mols.append(mol)
    return mols


def molecule_exact_matches(
    predictions: Sequence[str | None], references: Sequence[str], *, profile: str = "strict"
) -> list[float]:
    """Per sample 1.0 if the prediction is the reference molecule, else 0.0: canonical SMILES equal
    (``strict``) or standard InChI equal (``molt5``); a prediction that is invalid in that profile is 0."""
    check_profile(profile)
    check_same_length("predictions", predictions, "references", references)
    if profile == "strict":
        out = []
        for p, r in zip(predictions, references, strict=True):
            canonical = None if p is None else canonicalize_smiles(p)
            out.append(float(canonical is not None and canonical == canonicalize_smiles(r)))
        return out
    ref_mols = _check_references(references, profile)
    out = []
    for p, ref in zip(predictions, ref_mols, strict=True):
        mol = _molt5_parse(p)
        out.append(float(mol is not None and _inchi(mol) == _inchi(ref)))
    return out


def _molt5_metrics(predictions: Sequence[str | None], references: Sequence[str]) -> dict[str, float]:
    ref_mols = _check_references(references, "molt5")
    texts = ["" if p is None else p for p in predictions]
    n = len(texts)
    pairs = [(mol, ref) for p, ref in zip(predictions, ref_mols, strict=True) if (mol := _molt5_parse(p)) is not None]
    out = {
        "molt5_bleu": smiles_char_bleu4(texts, references),
        "molt5_exact_match": sum(_inchi(mol) == _inchi(ref) for mol, ref in pairs) / n,
        "molt5_levenshtein": sum(levenshtein_distance(p, r) for p, r in zip(texts, references, strict=True)) / n,
        "molt5_validity": len(pairs) / n,
        "molt5_num_invalid": float(n - len(pairs)),
    }
    for name, fingerprint in _MOLT5_FINGERPRINTS.items():
        sims = [mol_tanimoto(ref, mol, fingerprint) for mol, ref in pairs]
        out[f"molt5_{name}_fts"] = sum(sims) / len(sims) if sims else float("nan")
    return out


def molecule_generation_metrics(
    predictions: Sequence[str | None], references: Sequence[str], *, profile: str = "strict"
) -> dict[str, float]:
    """All text -> molecule metrics of ``profile`` (see the module docstring for both profiles' keys).

    ``strict`` also returns ``num_invalid``; invalid predictions are never dropped from a denominator. A
    ``None`` prediction (a failed generation) is an invalid one, and the empty string for BLEU and Levenshtein.
    """
    check_profile(profile)
    check_same_length("predictions", predictions, "references", references)
    check_not_empty("predictions", predictions)
    if profile == "molt5":
        return _molt5_metrics(predictions, references)
    predictions = ["" if p is None else p for p in predictions]
    _check_references(references, profile)
    n = len(predictions)
    valid = [parse_smiles(p) is not None for p in predictions]
    out = {
        "smiles_char_bleu4": smiles_char_bleu4(predictions, references),
        "canonical_exact_match": sum(molecule_exact_matches(predictions, references)) / n,
        "mean_levenshtein": sum(
            levenshtein_distance(p, r) for p, r in zip(predictions, references, strict=True)
        )
        / n,
        "validity": sum(valid) / n,
        "num_invalid": float(n - sum(valid)),
    }
    for name in FINGERPRINTS:
        sims = [
            tanimoto_similarity(p, r, name) if ok else None
            for ok, p, r in zip(valid, predictions, references, strict=True)
        ]
        scored = [s for s in sims if s is not None]
        out[f"{name}_tanimoto"] = sum(scored) / n
        out[f"{name}_tanimoto_valid_only"] = sum(scored) / len(scored) if scored else float("nan")
    return out
