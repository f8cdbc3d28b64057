"""Token-layout helpers shared by projectors that group real tokens by position (pooling, windows)."""

from __future__ import annotations

import torch


def left_align(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's real tokens to the front, keeping their order; returns ``(tokens, lengths [B])``.

    Grouping by position (pool windows, Q-Former windows) must see the real tokens contiguously, whatever
    the encoder's mask layout; the padded tail keeps its (arbitrary) values and must stay masked.
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    aligned = torch.gather(tokens, 1, order.unsqueeze(-1).expand_as(tokens))
    return aligned, mask.sum(1)


def prefix_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, size]`` bool mask whose row ``b`` is True on its first ``lengths[b]`` positions."""
    return torch.arange(size, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def require_nonempty(mask: torch.Tensor, projector: str) -> None:
    """Raise when an item has no real tokens: attention over an all-masked row has no defined output."""
    empty = (~mask.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{projector} projector got {len(empty)} item(s) with no real tokens (first: row {empty[0]} of the "
            "mask is all False); every item needs at least one encoder token — drop empty items before encoding"
        )
