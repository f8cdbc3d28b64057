"""Flamingo's Perceiver resampler: a fixed set of learned latents reads a variable number of encoder tokens.

Follows lucidrains/flamingo-pytorch ``PerceiverResampler``: ``depth`` blocks of pre-norm attention, where
the latents attend to ``concat(inputs, latents)`` (so they also exchange information among themselves),
then a pre-norm GELU feed-forward, both residual; a final ``LayerNorm``. It runs at the encoder width.
Flamingo feeds the result to gated cross-attention; here a ``Linear`` maps it to the backbone width, as
LLaVA-style models do. Padded inputs are masked out of the keys. Flamingo's learned per-frame time
embeddings are left out: one item is one medium here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from projectors.attention import masked_attention
from projectors.base import Projector, ProjectorConfig, check_projector_input


@dataclass(frozen=True)
class PerceiverConfig(ProjectorConfig):
    """Flamingo / OpenFlamingo defaults: 64 latents, 6 blocks, 8 heads of 64, 4x feed-forward."""

    num_latents: int = 64
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4

    def __post_init__(self) -> None:
        for name in ("num_latents", "depth", "heads", "dim_head", "ff_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"perceiver field {name!r} must be >= 1, got {getattr(self, name)}")

    def num_tokens(self, n_in: int) -> int:
        return self.num_latents


class PerceiverAttention(nn.Module):
    """Latents (queries) attend to the normed inputs and themselves; bias-free projections as in Flamingo."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, media_mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.norm_latents(latents)
        context = torch.cat([self.norm_media(media), latents], dim=1)
        context_mask = torch.cat([media_mask, media_mask.new_ones(latents.shape[:2])], dim=1)
        key, value = self.to_kv(context).chunk(2, dim=-1)
        return self.to_out(masked_attention(self.to_q(latents), key, value, context_mask, self.heads))


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """Pre-norm, bias-free GELU MLP with a ``mult``-times wider hidden layer."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, mult * dim, bias=False),
        nn.GELU(),
        nn.Linear(mult * dim, dim, bias=False),
    )


class PerceiverResampler(Projector):
    """``[B, N, D_in]`` with any ``N`` -> ``[B, num_latents, D_out]``, every output token real."""

    config_class = PerceiverConfig

    def __init__(self, config: PerceiverConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        self.latents = nn.Parameter(torch.randn(config.num_latents, in_dim))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(in_dim, config.heads, config.dim_head),
                    feed_forward(in_dim, config.ff_mult),
                ]
            )
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        latents = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for attention, ff in self.layers:
            latents = attention(tokens, mask, latents) + latents
            latents = ff(latents) + latents
        out = self.proj(self.norm(latents))
        return out, mask.new_ones(out.shape[:2])
