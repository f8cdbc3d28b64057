"""Corpus-level BLEU over token sequences, matching ``nltk.translate.bleu_score.corpus_bleu`` with its
default smoothing (``SmoothingFunction().method0``, i.e. none) and uniform n-gram weights.

Clipped n-gram matches and hypothesis n-gram counts are summed over the corpus before dividing; the
brevity penalty uses the corpus hypothesis length and, per sample, the reference length closest to
the hypothesis length (shorter wins a tie). As in nltk: if no unigram matches the score is 0; an order
with zero matches contributes ``log(sys.float_info.min)``, which makes the score vanishingly small
(about 1e-77 for BLEU-4) rather than exactly 0.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence

from tasks.metrics._validation import check_not_empty, check_same_length


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(
    references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]], max_order: int = 4
) -> float:
    """BLEU-``max_order`` of ``hypotheses`` (token lists) against ``references`` (per sample, a list
    of reference token lists), weights ``1 / max_order`` each."""
    check_same_length("references", references, "hypotheses", hypotheses)
    check_not_empty("hypotheses", hypotheses)
    if max_order < 1:
        raise ValueError(f"max_order must be a positive integer, got {max_order}")
    matches = [0] * (max_order + 1)
    totals = [0] * (max_order + 1)
    hypothesis_length = reference_length = 0
    for i, (refs, hyp) in enumerate(zip(references, hypotheses, strict=True)):
        if isinstance(hyp, str) or not refs or any(isinstance(r, str) for r in refs):
            raise TypeError(
                f"sample {i}: pass token lists, hypotheses[i] = [tokens] and references[i] = [[tokens], ...]"
            )
        for n in range(1, max_order + 1):
            counts = _ngrams(hyp, n)
            best_reference: Counter[tuple[str, ...]] = Counter()
            for ref in refs:
                best_reference |= _ngrams(ref, n)
            matches[n] += sum(min(c, best_reference[g]) for g, c in counts.items())
            totals[n] += max(1, sum(counts.values()))
        hypothesis_length += len(hyp)
        reference_length += min((len(r) for r in refs), key=lambda length: (abs(length - len(hyp)), length))
    if matches[1] == 0:
        return 0.0
    if hypothesis_length > reference_length:
        brevity_penalty = 1.0
    else:
        brevity_penalty = math.exp(1 - reference_length / hypothesis_length)
    log_precisions = [
        math.log(matches[n] / totals[n]) if matches[n] else math.log(sys.float_info.min)
        for n in range(1, max_order + 1)
    ]
    return brevity_penalty * math.exp(math.fsum(log_precisions) / max_order)
