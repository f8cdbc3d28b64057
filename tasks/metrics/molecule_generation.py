"""Text -> molecule generation metrics in the MolT5 style, on predicted vs reference SMILES.

What each key measures (and where it differs from MolT5's evaluation scripts):

- ``smiles_char_bleu4``: corpus BLEU-4 over SMILES characters (MolT5 ``mol_translation_metrics.py``).
- ``canonical_exact_match``: canonical SMILES equal, components order-insensitive, stereo kept.
  MolT5 compares raw strings; comparing canonical forms does not penalise a different atom order.
- ``mean_levenshtein``: edit distance between the raw SMILES strings, as MolT5.
- ``validity``: fraction of predictions RDKit parses.
- ``{maccs,rdk,morgan2_2048}_tanimoto``: mean Tanimoto over ALL samples, an invalid prediction scoring 0.
  MolT5 averages over valid predictions only; that number is ``..._tanimoto_valid_only`` (NaN if none).
  MolT5's Morgan similarity uses unfolded count fingerprints; ours are radius-2 bit vectors of 2048 bits.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.metrics._validation import check_not_empty, check_same_length
from tasks.metrics.bleu import corpus_bleu
from tasks.metrics.edit_distance import levenshtein_distance
from tasks.metrics.smiles import FINGERPRINTS, canonicalize_smiles, parse_smiles, tanimoto_similarity


def smiles_char_bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 treating every SMILES character as a token (one reference per sample)."""
    check_same_length("predictions", predictions, "references", references)
    return corpus_bleu([[list(r)] for r in references], [list(p) for p in predictions], max_order=4)


def molecule_generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """All text -> molecule metrics above, plus ``num_invalid`` (invalid predictions are never dropped)."""
    check_same_length("predictions", predictions, "references", references)
    check_not_empty("predictions", predictions)
    for i, ref in enumerate(references):
        if parse_smiles(ref) is None:
            raise ValueError(f"reference {i} ({ref!r}) is not a valid SMILES; fix or drop that sample")
    n = len(predictions)
    valid = [parse_smiles(p) is not None for p in predictions]
    exact = sum(
        ok and canonicalize_smiles(p) == canonicalize_smiles(r)
        for ok, p, r in zip(valid, predictions, references, strict=True)
    )
    out = {
        "smiles_char_bleu4": smiles_char_bleu4(predictions, references),
        "canonical_exact_match": exact / n,
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
