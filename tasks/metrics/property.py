"""Molecular property and reaction-yield metrics: ROC-AUC and average precision per task with missing labels,
R², RMSE and MAE, and :func:`property_metrics` that a property task reports.

ROC-AUC follows MoleculeNet practice for multi-task sets (Tox21, SIDER, ...): each task is scored on
the molecules that have a label for it (NaN = missing), tasks whose labels in the split are all one
class are skipped and listed, and the mean is over the scored tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.metrics._validation import check_not_empty, check_same_length


def _as_matrix(name: str, values: np.ndarray | Sequence) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be [samples] or [samples, tasks], got shape {array.shape}")
    return array


def _bad_rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask.any(axis=1) if mask.ndim == 2 else mask)
    return ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def _binary_pair(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Flat float arrays of 0/1 ``labels`` and finite ``scores`` of one length; anything else is a ValueError."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    check_same_length("labels", y, "scores", s)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1 (drop missing labels first)")
    if not np.isfinite(s).all():
        raise ValueError(f"scores have NaN or infinite values in rows {_bad_rows(~np.isfinite(s))}")
    return y, s


def roc_auc(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve for binary ``labels`` (0/1) and real ``scores``; tied scores count half.

    Computed as the Mann-Whitney statistic with average ranks, equal to scikit-learn's ``roc_auc_score``.
    """
    y, s = _binary_pair(labels, scores)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both classes among the labels")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = average_rank[inverse][y == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


@dataclass(frozen=True)
class MultiTaskRocAuc:
    """Mean ROC-AUC over the scored tasks, each task's value, and the tasks skipped (one class only)."""

    mean: float
    per_task: dict[int, float]
    skipped_tasks: list[int]


def multitask_roc_auc(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence) -> MultiTaskRocAuc:
    """ROC-AUC of each task (column) over its non-NaN labels, averaged over tasks with both classes."""
    y, s = _as_matrix("labels", labels), _as_matrix("scores", scores)
    if y.shape != s.shape:
        raise ValueError(f"labels have shape {y.shape} but scores have shape {s.shape}; they must match")
    check_not_empty("labels", y)
    per_task: dict[int, float] = {}
    skipped = []
    for task in range(y.shape[1]):
        present = ~np.isnan(y[:, task])
        if np.isnan(s[present, task]).any():
            raise ValueError(
                f"task {task}: scores are NaN for labelled rows {_bad_rows(present & np.isnan(s[:, task]))}"
            )
        classes = np.unique(y[present, task])
        if len(classes) < 2:
            skipped.append(task)
            continue
        per_task[task] = roc_auc(y[present, task], s[present, task])
    if not per_task:
        raise ValueError(
            f"no task has both classes in this split (skipped tasks {skipped}); use a larger split"
        )
    return MultiTaskRocAuc(
        mean=float(np.mean(list(per_task.values()))), per_task=per_task, skipped_tasks=skipped
    )


def _regression_pair(
    predictions: np.ndarray | Sequence[float], targets: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    check_same_length("predictions", p, "targets", t)
    check_not_empty("targets", t)
    if p.shape != t.shape:
        raise ValueError(f"predictions have shape {p.shape} but targets have shape {t.shape}")
    for name, array in (("predictions", p), ("targets", t)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} have NaN or infinite values in rows {_bad_rows(~np.isfinite(array))}")
    return p, t


def rmse(predictions: np.ndarray | Sequence[float], targets: np.ndarray | Sequence[float]) -> float:
    """Root mean squared error over all entries."""
    p, t = _regression_pair(predictions, targets)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(predictions: np.ndarray | Sequence[float], targets: np.ndarray | Sequence[float]) -> float:
    """Mean absolute error over all entries."""
    p, t = _regression_pair(predictions, targets)
    return float(np.mean(np.abs(p - t)))


def r_squared(predictions: np.ndarray | Sequence[float], targets: np.ndarray | Sequence[float]) -> float:
    """Coefficient of determination of one target, ``1 - SS_res / SS_tot`` (scikit-learn's ``r2_score``).

    As in scikit-learn: one sample gives NaN (R² is undefined), and constant targets, which have no variance to
    explain, give 1.0 for exact predictions and 0.0 otherwise."""
    p, t = _regression_pair(predictions, targets)
    if p.ndim != 1:
        raise ValueError(f"r_squared scores one target: pass [samples] arrays, got shape {p.shape}")
    if len(p) < 2:
        return math.nan
    residual = float(np.sum((t - p) ** 2))
    total = float(np.sum((t - t.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def average_precision(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Area under the precision-recall curve as scikit-learn's ``average_precision_score`` computes it:
    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first (no interpolation)."""
    y, s = _binary_pair(labels, scores)
    positives = y.sum()
    if positives == 0:
        raise ValueError("average precision needs at least one positive label")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    true_positives = np.cumsum(y)[last_of_threshold]
    predicted = last_of_threshold + 1.0
    precision, recall = true_positives / predicted, true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _per_task(labels: np.ndarray, scores: np.ndarray, metric: Any) -> tuple[dict[int, float], list[int]]:
    """``metric`` of each task over its labelled rows; tasks whose labels are all one class are skipped."""
    per_task, skipped = {}, []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task])
        if np.isnan(scores[present, task]).any():
            raise ValueError(f"task {task}: scores are NaN for labelled rows {_bad_rows(present & np.isnan(scores[:, task]))}")
        if len(np.unique(labels[present, task])) < 2:
            skipped.append(task)
            continue
        per_task[task] = metric(labels[present, task], scores[present, task])
    return per_task, skipped


def property_metrics(predictions: np.ndarray | Sequence, labels: np.ndarray | Sequence, target_type: str) -> dict[str, float]:
    """Summary metrics of property predictions ``[samples, outputs]`` against labels ``[samples, targets]``
    (NaN = missing label, ignored), averaged over targets.

    - ``binary`` (probabilities): ``roc_auc`` and ``pr_auc`` (average precision), each the mean over the targets
      with both classes in the split (MoleculeNet practice; ``tasks_scored`` says how many), and ``accuracy`` at
      threshold 0.5 over all present labels.
    - ``regression`` (values): ``rmse``, ``mae`` and ``r2``, each the mean over targets of the value on that
      target's labelled rows.
    - ``multiclass`` (class probabilities; one label, the class index): ``accuracy`` and ``mean_per_class_recall``.
    """
    p, y = _as_matrix("predictions", predictions), _as_matrix("labels", labels)
    check_not_empty("labels", y)
    if target_type == "multiclass":
        if y.shape[1] != 1 or len(p) != len(y):
            raise ValueError(f"multiclass: labels must be [samples] class indices and predictions [samples, classes]; "
                             f"got {y.shape} and {p.shape}")
        present = ~np.isnan(y[:, 0])
        truth, chosen = y[present, 0].astype(int), p[present].argmax(axis=1)
        recalls = [float(np.mean(chosen[truth == c] == c)) for c in np.unique(truth)]
        return {"accuracy": float(np.mean(chosen == truth)), "mean_per_class_recall": float(np.mean(recalls))}
    if p.shape != y.shape:
        raise ValueError(f"predictions have shape {p.shape} but labels have shape {y.shape}; they must match")
    if target_type == "binary":
        auc, skipped = _per_task(y, p, roc_auc)
        if not auc:
            raise ValueError(f"no target has both classes in this split (targets {skipped}); use a larger split")
        ap, _ = _per_task(y, p, average_precision)
        present = ~np.isnan(y)
        return {"roc_auc": float(np.mean(list(auc.values()))), "pr_auc": float(np.mean(list(ap.values()))),
                "accuracy": float(np.mean((p[present] >= 0.5) == (y[present] == 1.0))), "tasks_scored": float(len(auc))}
    if target_type == "regression":
        columns = [(p[~np.isnan(y[:, t]), t], y[~np.isnan(y[:, t]), t]) for t in range(y.shape[1])]
        columns = [(pt, yt) for pt, yt in columns if len(yt)]
        return {"rmse": float(np.mean([rmse(pt, yt) for pt, yt in columns])),
                "mae": float(np.mean([mae(pt, yt) for pt, yt in columns])),
                "r2": float(np.mean([r_squared(pt, yt) for pt, yt in columns]))}
    raise ValueError(f"target_type must be binary, regression or multiclass, got {target_type!r}")
