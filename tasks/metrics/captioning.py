"""Caption metrics on word tokens: corpus BLEU-2/4, ROUGE-1/2/L F-measure, and exact-match METEOR.

Tokenisation (:func:`word_tokenize`): lowercase, then every maximal run of ``[a-z0-9]`` is a token and
everything else separates tokens. This is exactly ``rouge_score``'s tokenizer without stemming; MolT5
tokenises captions with the SciBERT word-piece tokenizer instead, so BLEU values are not comparable
to its tables digit for digit. Each prediction is compared with its own reference(s): give one string
or a list of strings per sample.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from tasks.metrics._validation import check_not_empty, check_same_length
from tasks.metrics.bleu import corpus_bleu

_WORD_RE = re.compile(r"[a-z0-9]+")

METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.9, 3.0, 0.5


def word_tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and return its ``[a-z0-9]+`` runs (punctuation and other characters split)."""
    return _WORD_RE.findall(text.lower())


def _reference_lists(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> list[list[str]]:
    check_same_length("predictions", predictions, "references", references)
    check_not_empty("predictions", predictions)
    out = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"sample {i} has no reference caption")
        out.append(refs)
    return out


def caption_bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-2 and BLEU-4 on word tokens (nltk ``corpus_bleu`` semantics, no smoothing)."""
    refs = _reference_lists(predictions, references)
    hyp_tokens = [word_tokenize(p) for p in predictions]
    ref_tokens = [[word_tokenize(r) for r in rs] for rs in refs]
    return {
        "bleu2": corpus_bleu(ref_tokens, hyp_tokens, max_order=2),
        "bleu4": corpus_bleu(ref_tokens, hyp_tokens, max_order=4),
    }


def _f_measure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_n(prediction: list[str], reference: list[str], n: int) -> float:
    pred = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    overlap = sum((pred & ref).values())
    return _f_measure(overlap / max(sum(pred.values()), 1), overlap / max(sum(ref.values()), 1))


def _longest_common_subsequence(first: list[str], second: list[str]) -> int:
    previous = [0] * (len(second) + 1)
    for a in first:
        current = [0]
        for j, b in enumerate(second, 1):
            current.append(previous[j - 1] + 1 if a == b else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _rouge_l(prediction: list[str], reference: list[str]) -> float:
    if not prediction or not reference:
        return 0.0
    lcs = _longest_common_subsequence(prediction, reference)
    return _f_measure(lcs / len(prediction), lcs / len(reference))


def rouge_f_no_stemming(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measure, as ``rouge_score`` with ``use_stemmer=False``.

    Per sample and per ROUGE type, the best-scoring reference counts (``rouge_score``'s
    ``score_multi``); scores are then averaged over samples. ROUGE-L is sentence-level LCS, not the
    summary-level ROUGE-Lsum.
    """
    refs = _reference_lists(predictions, references)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, sample_refs in zip(predictions, refs, strict=True):
        pred = word_tokenize(prediction)
        ref_tokens = [word_tokenize(r) for r in sample_refs]
        totals["rouge1"] += max(_rouge_n(pred, r, 1) for r in ref_tokens)
        totals["rouge2"] += max(_rouge_n(pred, r, 2) for r in ref_tokens)
        totals["rougeL"] += max(_rouge_l(pred, r) for r in ref_tokens)
    return {key: value / len(predictions) for key, value in totals.items()}


def _exact_alignment(hypothesis: list[str], reference: list[str]) -> list[tuple[int, int]]:
    """nltk's exact-match stage: hypothesis words from last to first, each takes the last unused equal
    reference word; pairs are returned sorted by hypothesis position."""
    free = list(range(len(reference)))
    pairs = []
    for i in reversed(range(len(hypothesis))):
        for slot in reversed(range(len(free))):
            if reference[free[slot]] == hypothesis[i]:
                pairs.append((i, free.pop(slot)))
                break
    return sorted(pairs)


def _meteor_exact_single(hypothesis: list[str], reference: list[str]) -> float:
    matches = _exact_alignment(hypothesis, reference)
    if not matches:
        return 0.0
    precision = len(matches) / len(hypothesis)
    recall = len(matches) / len(reference)
    f_mean = precision * recall / (METEOR_ALPHA * precision + (1 - METEOR_ALPHA) * recall)
    chunks = 1 + sum(
        1
        for (h0, r0), (h1, r1) in zip(matches, matches[1:], strict=False)
        if not (h1 == h0 + 1 and r1 == r0 + 1)
    )
    penalty = METEOR_GAMMA * (chunks / len(matches)) ** METEOR_BETA
    return (1 - penalty) * f_mean


def meteor_exact(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Mean sentence METEOR using exact word matches only (alpha=0.9, beta=3, gamma=0.5, nltk's defaults).

    This is nltk's ``meteor_score`` with its stem and WordNet-synonym stages removed (WordNet cannot be
    installed here). It is not official METEOR, which also matches stems, synonyms and paraphrases and
    searches for the alignment with the fewest chunks; do not compare it with published METEOR numbers.
    Per sample the best reference counts.
    """
    refs = _reference_lists(predictions, references)
    total = 0.0
    for prediction, sample_refs in zip(predictions, refs, strict=True):
        hyp = word_tokenize(prediction)
        total += max(_meteor_exact_single(hyp, word_tokenize(r)) for r in sample_refs)
    return total / len(predictions)


def caption_metrics(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> dict[str, float]:
    """BLEU-2/4, ROUGE-1/2/L F (no stemming) and exact-match METEOR for generated captions."""
    rouge = rouge_f_no_stemming(predictions, references)
    return {
        **caption_bleu(predictions, references),
        **{f"{key}_f_no_stemming": value for key, value in rouge.items()},
        "meteor_exact": meteor_exact(predictions, references),
    }
