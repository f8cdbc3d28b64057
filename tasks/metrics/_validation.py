"""Input checks shared by the metric functions, so every metric fails the same clear way on bad input."""

from __future__ import annotations

from collections.abc import Sized

import torch


def check_same_length(first_name: str, first: Sized, second_name: str, second: Sized) -> None:
    """Raise naming both lengths when two per-sample sequences differ in length."""
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} has {len(first)} items but {second_name} has {len(second)}; "
            "pass one entry per sample in both"
        )


def check_not_empty(name: str, items: Sized) -> None:
    """Raise when a metric is asked to average over nothing."""
    if len(items) == 0:
        raise ValueError(f"{name} is empty; a metric needs at least one sample")


def _row_list(rows: torch.Tensor, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return shown + more


def check_embeddings(name: str, embeddings: torch.Tensor) -> None:
    """Require a floating ``[N, D]`` tensor with only finite values, naming the rows that are not."""
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, D], got {type(embeddings).__name__}")
    if embeddings.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {embeddings.dtype}")
    bad = (~torch.isfinite(embeddings)).any(dim=1).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{name} has NaN or infinite values in rows {_row_list(bad)}; "
            "fix or drop those samples before computing metrics"
        )


def check_finite_values(name: str, values: torch.Tensor) -> None:
    """Raise naming the rows (first dimension) that hold NaN or infinite values."""
    bad = ~torch.isfinite(values)
    if bad.dim() > 1:
        bad = bad.flatten(1).any(dim=1)
    rows = bad.nonzero().flatten()
    if len(rows):
        raise ValueError(
            f"{name} has NaN or infinite values in rows {_row_list(rows)}; "
            "fix or drop those samples before computing metrics"
        )
