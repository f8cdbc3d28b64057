"""Qwen2-Audio's projector: average-pool encoder frames over time, then one linear layer.

Qwen2-Audio pools Whisper frames with ``nn.AvgPool1d(2, stride=2)`` (50 Hz -> 25 Hz) and maps them with a
single ``Linear`` (its ``multi_modal_projector``). ``AvgPool1d`` floors, dropping an odd last frame; here
the last window is kept when partial and averaged over its real frames only, so
``num_tokens(n) = ceil(n / pool)``: the same as Qwen2-Audio for every ``n`` that ``pool`` divides, one token
more otherwise, and never zero tokens for a short item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from projectors.base import Projector, ProjectorConfig, check_projector_input
from projectors.masking import left_align, prefix_mask


@dataclass(frozen=True)
class AvgPoolConfig(ProjectorConfig):
    """``pool`` consecutive real tokens (kernel = stride) average into one; Qwen2-Audio uses 2."""

    pool: int = 2

    def __post_init__(self) -> None:
        if self.pool < 1:
            raise ValueError(f"avgpool-linear field 'pool' must be >= 1, got {self.pool}")

    def num_tokens(self, n_in: int) -> int:
        return math.ceil(n_in / self.pool)


class AvgPoolLinearProjector(Projector):
    """Masked average pool over time (kernel = stride = ``pool``), then ``Linear(in_dim, out_dim)``."""

    config_class = AvgPoolConfig

    def __init__(self, config: AvgPoolConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        pool = self.config.pool
        tokens, lengths = left_align(tokens, mask)
        batch, n, dim = tokens.shape
        windows = math.ceil(n / pool)
        real = prefix_mask(lengths, windows * pool)
        padded = tokens.new_zeros(batch, windows * pool, dim)
        padded[:, :n] = tokens
        padded = torch.where(real.unsqueeze(-1), padded, torch.zeros_like(padded))
        counts = real.view(batch, windows, pool).sum(-1)
        pooled = padded.view(batch, windows, pool, dim).sum(2) / counts.clamp(min=1).unsqueeze(-1)
        return self.proj(pooled), counts > 0
