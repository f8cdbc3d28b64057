"""SAIL's "star" alignment head (Zhang et al., CVPR 2025, "Assessing and Learning Alignment of Unimodal
Vision and Language Models"): a light gated MLP that maps frozen unimodal features into a shared space.

Following SAIL's ``AlignmentLayer`` with ``linear_type="star"``: ``LayerNorm`` on the input, two parallel
expansions ``f1, f2: D_in -> width_factor * D_in``, each clamped to ``[-clamp, clamp]`` (SAIL: 1e3, which
keeps half precision finite), the star operation ``act(f1(x)) * f2(x)`` (SAIL: ReLU6), and ``g`` back down to
``D_out``. One block, no residual, Xavier-uniform weights and zero biases, as in SAIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from projectors.base import Projector, ProjectorConfig, check_projector_input

_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "none": nn.Identity}


@dataclass(frozen=True)
class StarMLPConfig(ProjectorConfig):
    """SAIL's defaults: 8x expansion, ReLU6 on the first branch, clamp at 1e3, input LayerNorm."""

    width_factor: int = 8
    activation: str = "relu6"
    clamp: float = 1000.0
    input_norm: bool = True

    def __post_init__(self) -> None:
        if self.width_factor < 1:
            raise ValueError(f"star-mlp field 'width_factor' must be >= 1, got {self.width_factor}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"star-mlp field 'activation' is {self.activation!r}; allowed: {', '.join(_ACTIVATIONS)}"
            )
        if not self.clamp > 0:
            raise ValueError(f"star-mlp field 'clamp' must be > 0, got {self.clamp}")


class StarMLPProjector(Projector):
    """Token-preserving: each token (or a pooled vector, via :meth:`project`) goes through the star head."""

    config_class = StarMLPConfig

    def __init__(self, config: StarMLPConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        hidden = config.width_factor * in_dim
        self.norm = nn.LayerNorm(in_dim) if config.input_norm else nn.Identity()
        self.f1 = nn.Linear(in_dim, hidden)
        self.f2 = nn.Linear(in_dim, hidden)
        self.act = _ACTIVATIONS[config.activation]()
        self.g = nn.Linear(hidden, out_dim)
        for linear in (self.f1, self.f2, self.g):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Map any ``[..., in_dim]`` tensor (tokens or pooled vectors) to ``[..., out_dim]``."""
        x = self.norm(x)
        limit = self.config.clamp
        x1 = self.f1(x).clamp(-limit, limit)
        x2 = self.f2(x).clamp(-limit, limit)
        return self.g(self.act(x1) * x2)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        return self.project(tokens), mask
