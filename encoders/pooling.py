"""One vector per item from its token features: the first (CLS) token, or the mean of the real tokens."""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")


def check_pooling(pooling: str) -> None:
    """Raise naming the allowed values when ``pooling`` is not one of :data:`POOLINGS`."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def pool_tokens(tokens: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """``[B, N, D]`` tokens with a ``[B, N]`` bool mask to ``[B, D]``: the first token, or the masked mean."""
    if pooling == "cls":
        return tokens[:, 0]
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
