"""Zero-shot classification from embeddings: prompt-template ensembles and accuracy metrics.

Class scores are whatever the caller computes (typically ``normalize(images) @ class_embeddings.T``);
ties between classes are broken towards the lower class index, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tasks.metrics._validation import (
    check_embeddings,
    check_finite_values,
    check_not_empty,
    check_same_length,
)
from tasks.metrics.topk import topk_lower_index_wins


def ensemble_class_embeddings(template_embeddings: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """One embedding per class from its prompt-template embeddings, ``[C, D]`` and unit-norm.

    For each class: L2-normalise each template's embedding, average them, renormalise (the CLIP
    prompt-ensembling recipe). Accepts ``[C, T, D]`` or a list of ``[T_c, D]`` (templates may differ
    in number per class).
    """
    per_class = list(template_embeddings) if not isinstance(template_embeddings, torch.Tensor) else None
    if per_class is None:
        if template_embeddings.dim() != 3:
            raise ValueError(
                f"template_embeddings must be [classes, templates, dim], got {tuple(template_embeddings.shape)}"
            )
        per_class = list(template_embeddings)
    check_not_empty("template_embeddings", per_class)
    rows = []
    for c, templates in enumerate(per_class):
        if templates.dim() != 2 or len(templates) == 0:
            raise ValueError(f"class {c} needs a [templates, dim] tensor with at least one template")
        check_embeddings(f"templates of class {c}", templates)
        if templates.shape[1] != per_class[0].shape[1]:
            raise ValueError(
                f"class {c} has dimension {templates.shape[1]}, class 0 has {per_class[0].shape[1]}"
            )
        if (templates.norm(dim=1) == 0).any():
            raise ValueError(f"class {c} has an all-zero template embedding, which has no direction")
        rows.append(F.normalize(F.normalize(templates, dim=1).mean(dim=0), dim=0))
    return torch.stack(rows)


def _check_scores_labels(scores: torch.Tensor, labels: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be [samples, classes], got {tuple(scores.shape)}")
    check_same_length("scores", scores, "labels", labels)
    check_not_empty("labels", labels)
    check_finite_values("scores", scores)
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError("labels must be a 1-D integer tensor of class indices")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{scores.shape[1] - 1}")


def accuracy_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest-scoring classes (acc@k)."""
    _check_scores_labels(scores, labels)
    _, top = topk_lower_index_wins(scores, k)
    return (top == labels.to(top.device)[:, None]).any(dim=1).float().mean().item()


def mean_per_class_recall(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 recall of each class, averaged over the classes present in ``labels``.

    Classes with no samples are skipped (recall is undefined for them), as in scikit-learn's
    ``balanced_accuracy_score`` which CLIP_benchmark uses for this metric.
    """
    _check_scores_labels(scores, labels)
    _, top = topk_lower_index_wins(scores, 1)
    predicted = top[:, 0].cpu()
    labels = labels.cpu()
    recalls = [(predicted[labels == c] == c).float().mean() for c in labels.unique()]
    return torch.stack(recalls).mean().item()
