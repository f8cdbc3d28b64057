"""Linear probes on frozen features: multi-task logistic regression with missing labels, L2 chosen on the
validation split, ROC-AUC on the test split — the standard check that pretrained encoders carry signal.

Molecules that cannot be featurized are not dropped: they are placed in the test split with an
uninformative score (0.5), so they count against the result, and they are listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class ProbeResult:
    """Test ROC-AUC (mean over tasks with both classes), the chosen L2, and what could not be used."""

    test_roc_auc: float
    valid_roc_auc: float
    l2: float
    per_task: dict[int, float]
    split_sizes: tuple[int, int, int]
    failed: dict[int, str] = field(default_factory=dict)


def embed_items(model: Any, items: Sequence[Any], batch_size: int = 256) -> tuple[torch.Tensor, dict[int, str]]:
    """Pooled embeddings ``[N, D]`` (zeros where an item failed) and ``{index: error}`` for the failures."""
    from zoo.evaluation.batching import embed_isolating
    from zoo.processing import move_to

    model.eval()
    embedded, failed = embed_isolating(
        list(enumerate(items)),
        lambda values: model.processor(model.modality, values),
        lambda batch: model(**move_to(dict(batch.inputs), model.device)).pooled,
        batch_size,
    )
    vectors = torch.zeros(len(items), model.hidden_size)
    for index, vector in embedded.items():
        vectors[index] = vector
    return vectors, failed


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``[D, T]`` and bias ``[T]`` of independent logistic regressions; NaN labels are ignored."""
    present = ~torch.isnan(y)
    target = torch.nan_to_num(y)
    weight = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    x64 = x.double()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x64 @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.double(), reduction="none")
        loss = (loss * present).sum() / present.sum().clamp(min=1) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    return [(t - mean) / std for t in (train, *others)]


def linear_probe(
    features: torch.Tensor,
    labels: np.ndarray,
    splits: tuple[Sequence[int], Sequence[int], Sequence[int]],
    failed: dict[int, str] | None = None,
    l2_grid: Sequence[float] = L2_GRID,
) -> ProbeResult:
    """Fit on ``splits[0]``, pick L2 by mean validation ROC-AUC, report test ROC-AUC; failed rows score 0.5."""
    from tasks.metrics import multitask_roc_auc

    failed = failed or {}
    train, valid, test = (list(s) for s in splits)
    usable_train = [i for i in train if i not in failed]
    usable_valid = [i for i in valid if i not in failed]
    y = torch.tensor(labels, dtype=torch.float64)
    x_train, x_valid, x_all = _standardise(features[usable_train], features[usable_valid], features)

    def scores(weight: torch.Tensor, bias: torch.Tensor, rows: list[int]) -> np.ndarray:
        out = torch.sigmoid(x_all[rows].double() @ weight + bias).numpy()
        out[[k for k, i in enumerate(rows) if i in failed]] = 0.5
        return out

    best = None
    for l2 in l2_grid:
        weight, bias = fit_logistic(x_train, y[usable_train], l2)
        valid_auc = multitask_roc_auc(labels[usable_valid], scores(weight, bias, usable_valid)).mean
        if best is None or valid_auc > best[0]:
            best = (valid_auc, l2, weight, bias)
    valid_auc, l2, weight, bias = best
    test_result = multitask_roc_auc(labels[test], scores(weight, bias, test))
    return ProbeResult(test_result.mean, valid_auc, l2, test_result.per_task, (len(train), len(valid), len(test)), failed)


def scaffold_splits_keeping_failures(smiles: Sequence[str], failed: dict[int, str]) -> tuple[list[int], list[int], list[int]]:
    """Bemis–Murcko 80/10/10 split of the valid molecules; molecules that failed go to the test split."""
    from tasks.data.scaffold_split import scaffold_split

    valid = [i for i in range(len(smiles)) if i not in failed]
    split = scaffold_split([smiles[i] for i in valid])
    remap = lambda part: [valid[k] for k in part]  # noqa: E731
    return remap(split.train), remap(split.valid), sorted(remap(split.test) + list(failed))
