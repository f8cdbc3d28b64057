"""Reaction prediction (retrosynthesis or forward): top-k exact match over ranked predictions, and validity.

A prediction matches when its canonical SMILES equals the target's, components compared as a sorted
multiset (so ``A.B`` matches ``B.A``). Two named variants: ``stereo_aware`` compares canonical SMILES
as they are; ``stereo_agnostic`` removes stereochemistry from both sides first. Invalid predictions
(empty or unparsable) never match and are counted, never dropped. Ranked lists are used as given, and a list
shorter than k simply has fewer chances; :func:`distinct_molecules` is the de-duplication that ``zoo eval``
applies to a model's list first, so that each of its k places holds a different molecule set. Fingerprint similarity, SMILES
BLEU and Levenshtein distance of top-1 predictions are in :mod:`tasks.metrics.molecule_generation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.metrics._validation import check_not_empty, check_same_length
from tasks.metrics.smiles import canonicalize_smiles, parse_smiles

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


@dataclass(frozen=True)
class TopKExactMatch:
    """``accuracy[k]`` is the fraction of samples with a match among their first k predictions."""

    accuracy: dict[int, float]
    num_samples: int
    invalid_top1: int
    invalid_within_max_k: int
    stereo: str


def _topk_exact_match(
    predictions: Sequence[Sequence[str]], targets: Sequence[str], ks: Sequence[int], remove_stereo: bool
) -> TopKExactMatch:
    check_same_length("predictions", predictions, "targets", targets)
    check_not_empty("targets", targets)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    max_k = max(ks)
    cache: dict[str, str | None] = {}

    def canonical(smiles: str) -> str | None:
        if smiles not in cache:
            cache[smiles] = canonicalize_smiles(smiles, remove_stereo=remove_stereo)
        return cache[smiles]

    hits = {k: 0 for k in ks}
    invalid_top1 = invalid_total = 0
    for i, (ranked, target) in enumerate(zip(predictions, targets, strict=True)):
        if isinstance(ranked, str):
            raise TypeError(
                f"sample {i}: predictions must be a ranked list of SMILES per sample, not a string"
            )
        wanted = canonical(target)
        if wanted is None:
            raise ValueError(f"target {i} ({target!r}) is not a valid SMILES; fix or drop that sample")
        candidates = [canonical(p) for p in list(ranked)[:max_k]]
        invalid_top1 += not candidates or candidates[0] is None
        invalid_total += sum(c is None for c in candidates)
        first_hit = next((rank for rank, c in enumerate(candidates, 1) if c == wanted), None)
        for k in ks:
            hits[k] += first_hit is not None and first_hit <= k
    n = len(targets)
    return TopKExactMatch(
        accuracy={k: hits[k] / n for k in ks},
        num_samples=n,
        invalid_top1=invalid_top1,
        invalid_within_max_k=invalid_total,
        stereo="agnostic" if remove_stereo else "aware",
    )


def distinct_molecules(ranked: Sequence[str]) -> list[str]:
    """``ranked`` with each molecule set kept at its best rank only: two SMILES of the same canonical
    (stereo-aware) form are one answer. Unparsable strings stay (they are wrong answers, counted as invalid);
    only exact repeats of one are dropped."""
    seen: set[str] = set()
    kept = []
    for smiles in ranked:
        key = canonicalize_smiles(smiles) or f"unparsable:{smiles}"
        if key not in seen:
            seen.add(key)
            kept.append(smiles)
    return kept


def topk_exact_match_stereo_aware(
    predictions: Sequence[Sequence[str]], targets: Sequence[str], ks: Sequence[int] = DEFAULT_KS
) -> TopKExactMatch:
    """Top-k exact match comparing canonical SMILES with stereochemistry (``@``, ``/``, ``\\``) kept."""
    return _topk_exact_match(predictions, targets, ks, remove_stereo=False)


def topk_exact_match_stereo_agnostic(
    predictions: Sequence[Sequence[str]], targets: Sequence[str], ks: Sequence[int] = DEFAULT_KS
) -> TopKExactMatch:
    """Top-k exact match after ``Chem.RemoveStereochemistry`` on prediction and target."""
    return _topk_exact_match(predictions, targets, ks, remove_stereo=True)


def top1_validity(predictions: Sequence[Sequence[str]]) -> float:
    """Fraction of samples whose first-ranked prediction parses with RDKit (an empty list is invalid)."""
    check_not_empty("predictions", predictions)
    valid = 0
    for i, ranked in enumerate(predictions):
        if isinstance(ranked, str):
            raise TypeError(
                f"sample {i}: predictions must be a ranked list of SMILES per sample, not a string"
            )
        valid += bool(ranked) and parse_smiles(ranked[0]) is not None
    return valid / len(predictions)
