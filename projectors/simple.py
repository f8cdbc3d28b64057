"""Token-preserving projectors: identity, linear, and LLaVA-1.5's ``mlp{N}x_gelu``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from projectors.base import Projector, ProjectorConfig, check_projector_input


@dataclass(frozen=True)
class IdentityConfig(ProjectorConfig):
    """No parameters: the encoder width must already equal the backbone width."""


class IdentityProjector(Projector):
    """Passes tokens through; useful when encoder and backbone share a width."""

    config_class = IdentityConfig

    def __init__(self, config: IdentityConfig, in_dim: int, out_dim: int) -> None:
        if in_dim != out_dim:
            raise ValueError(f"identity projector needs in_dim == out_dim, got {in_dim} and {out_dim}")
        super().__init__(config, in_dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        return tokens, mask


@dataclass(frozen=True)
class LinearConfig(ProjectorConfig):
    bias: bool = True


class LinearProjector(Projector):
    """One linear layer (LLaVA-1's projector)."""

    config_class = LinearConfig

    def __init__(self, config: LinearConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        self.proj = nn.Linear(in_dim, out_dim, bias=config.bias)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        return self.proj(tokens), mask


_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
_LLAVA_MLP = re.compile(r"^mlp(\d+)x_(gelu|relu|silu)$")


@dataclass(frozen=True)
class MLPConfig(ProjectorConfig):
    """``depth`` linear layers with ``activation`` between them; depth 2 + gelu is LLaVA-1.5's mlp2x_gelu."""

    depth: int = 2
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"mlp projector depth must be >= 1, got {self.depth}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {', '.join(_ACTIVATIONS)}")

    @classmethod
    def from_llava_name(cls, name: str) -> MLPConfig:
        """Parse LLaVA's ``mm_projector_type`` string, e.g. ``mlp2x_gelu``."""
        match = _LLAVA_MLP.match(name)
        if not match:
            raise ValueError(f"{name!r} is not a LLaVA mlp projector name like 'mlp2x_gelu'")
        return cls(depth=int(match.group(1)), activation=match.group(2))


class MLPProjector(Projector):
    """Linear -> act -> Linear ... with layer names ``layers.0``, ``layers.2`` as in LLaVA's mm_projector."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(config.depth - 1):
            layers += [_ACTIVATIONS[config.activation](), nn.Linear(out_dim, out_dim)]
        self.layers = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        return self.layers(tokens), mask
