"""Deterministic top-k and ranks on a score matrix: higher score first, and on equal scores the lower
column index wins, so results never depend on the sorting kernel or the device."""

from __future__ import annotations

import torch


def topk_lower_index_wins(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row of ``scores`` ``[R, M]`` as ``(values, indices)``, each ``[R, k]``.

    Ordered by score descending, then column index ascending. ``torch.topk`` alone may pick any of
    several tied columns, so rows whose k-th value is tied beyond the k-th slot are re-selected.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [R, M], got {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be between 1 and the number of columns ({scores.shape[1]}), got {k}")
    values, indices = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    kth = values[:, -1:]
    tied_beyond_k = (scores >= kth).sum(dim=1) > k
    if tied_beyond_k.any():
        rows = tied_beyond_k.nonzero().flatten()
        sub, threshold = scores[rows], kth[rows]
        above = sub > threshold
        free_slots = k - above.sum(dim=1, keepdim=True)
        at = sub == threshold
        chosen = above | (at & (at.cumsum(dim=1) <= free_slots))
        indices[rows] = chosen.nonzero()[:, 1].view(len(rows), k)
    indices, _ = indices.sort(dim=1)
    values = scores.gather(1, indices)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), indices.gather(1, order)


def ranks_lower_index_wins(scores: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """1-based rank of column ``columns[r]`` within row ``r`` of ``scores`` ``[R, M]``, shape ``[R]``.

    The rank counts the columns that beat it (higher score, or equal score and lower index), plus one,
    so it is consistent with :func:`topk_lower_index_wins`. The index comparison is only done for rows
    where some other column ties with the target, which keeps the common case to two passes.
    """
    target = scores.gather(1, columns[:, None])
    higher = (scores > target).sum(dim=1)
    tied = (scores >= target).sum(dim=1) - higher > 1
    ranks = higher + 1
    if tied.any():
        rows = tied.nonzero().flatten()
        sub, cols = scores[rows], columns[rows]
        position = torch.arange(scores.shape[1], device=scores.device)
        ranks[rows] += ((sub == target[rows]) & (position[None, :] < cols[:, None])).sum(dim=1)
    return ranks
