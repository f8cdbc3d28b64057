"""Multiple-choice scoring by option log-likelihood (e.g. MoleculeQA: a question, four options, an aspect).

The model scores every option; the prediction is the option with the highest score, the lower option
index winning ties. The score is the summed log-likelihood of the option's tokens, or, when token counts
are given, the mean log-likelihood per token (length normalisation, so long options are not penalised).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.metrics._validation import check_not_empty, check_same_length


def choose_options(
    option_log_likelihoods: Sequence[Sequence[float]],
    option_token_counts: Sequence[Sequence[int]] | None = None,
) -> list[int]:
    """Index of the best option per question: argmax of summed log-likelihood, or of log-likelihood per
    token when ``option_token_counts`` is given (same shape)."""
    check_not_empty("option_log_likelihoods", option_log_likelihoods)
    if option_token_counts is not None:
        check_same_length(
            "option_log_likelihoods", option_log_likelihoods, "option_token_counts", option_token_counts
        )
    chosen = []
    for q, scores in enumerate(option_log_likelihoods):
        scores = [float(s) for s in scores]
        if not scores:
            raise ValueError(f"question {q} has no options")
        if any(math.isnan(s) for s in scores):
            raise ValueError(f"question {q} has a NaN log-likelihood in {scores}; rescore that question")
        if option_token_counts is not None:
            counts = option_token_counts[q]
            check_same_length(f"question {q} log-likelihoods", scores, f"question {q} token counts", counts)
            if any(c <= 0 for c in counts):
                raise ValueError(f"question {q} has a non-positive token count in {list(counts)}")
            scores = [s / c for s, c in zip(scores, counts, strict=True)]
        chosen.append(max(range(len(scores)), key=lambda i, s=scores: (s[i], -i)))
    return chosen


@dataclass(frozen=True)
class MultipleChoiceResult:
    """Accuracy overall and per aspect, the chosen option per question, and how options were scored."""

    accuracy: float
    per_aspect: dict[str, float]
    predictions: list[int]
    scoring: str


def multiple_choice_accuracy(
    option_log_likelihoods: Sequence[Sequence[float]],
    answers: Sequence[int],
    *,
    aspects: Sequence[str] | None = None,
    option_token_counts: Sequence[Sequence[int]] | None = None,
) -> MultipleChoiceResult:
    """Fraction of questions whose best-scoring option is the answer, overall and per aspect label."""
    check_same_length("option_log_likelihoods", option_log_likelihoods, "answers", answers)
    if aspects is not None:
        check_same_length("option_log_likelihoods", option_log_likelihoods, "aspects", aspects)
    predictions = choose_options(option_log_likelihoods, option_token_counts)
    for q, (answer, options) in enumerate(zip(answers, option_log_likelihoods, strict=True)):
        if not 0 <= answer < len(options):
            raise ValueError(f"question {q} has answer {answer} but only {len(options)} options")
    correct = [p == a for p, a in zip(predictions, answers, strict=True)]
    by_aspect: dict[str, list[bool]] = defaultdict(list)
    for aspect, ok in zip(aspects or [], correct, strict=False):
        by_aspect[aspect].append(ok)
    return MultipleChoiceResult(
        accuracy=sum(correct) / len(correct),
        per_aspect={aspect: sum(oks) / len(oks) for aspect, oks in sorted(by_aspect.items())},
        predictions=predictions,
        scoring="sum_log_likelihood" if option_token_counts is None else "mean_log_likelihood_per_token",
    )
