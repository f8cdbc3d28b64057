"""The projector contract: ``forward(tokens, mask) -> (tokens, mask)`` and ``num_tokens(n_in) -> M``.

A projector maps ``[B, N, D_in]`` encoder tokens (with a ``[B, N]`` bool mask) to ``[B, M, D_out]``
backbone-space tokens (with a ``[B, M]`` mask). For an item with ``n`` real input tokens, exactly
``num_tokens(n)`` output tokens are real, and they come first in the row. Placeholder expansion in the
processor uses the same ``num_tokens``, so the counts cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProjectorConfig:
    """Base for projector configs; token-preserving unless a subclass says otherwise."""

    def num_tokens(self, n_in: int) -> int:
        return n_in


class Projector(nn.Module):
    """Base class: subclasses set ``config_class`` and implement ``forward``."""

    config_class: type[ProjectorConfig] = ProjectorConfig

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config = config
        self.in_dim = in_dim
        self.out_dim = out_dim

    def num_tokens(self, n_in: int) -> int:
        """Number of output tokens for an item with ``n_in`` real input tokens."""
        return self.config.num_tokens(n_in)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def check_projector_input(tokens: torch.Tensor, mask: torch.Tensor, in_dim: int) -> None:
    """Raise a clear error when ``tokens``/``mask`` do not have the shapes a projector expects."""
    if tokens.dim() != 3 or tokens.shape[-1] != in_dim:
        raise ValueError(f"projector expects tokens [B, N, {in_dim}], got {tuple(tokens.shape)}")
    if mask.shape != tokens.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"projector expects a bool mask {tuple(tokens.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
