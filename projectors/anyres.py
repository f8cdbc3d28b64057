"""LLaVA-NeXT's projector: the ``mlp`` projector, plus a learned newline vector at each row end of the image.

It takes the ``hf-vision-anyres`` encoder's tokens (``encoders/image/hf_vision_anyres.py``): the tower's features
with one more channel that is 1.0 at a row-end slot. Features are projected by an ``mlp`` (``mlp.layers.0`` /
``.2``, LLaVA's ``mlp2x_gelu`` at depth 2); a slot becomes ``newline``, one vector in the language model's space
(transformers' ``image_newline``). Token-preserving: one output token per input token, the mask unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from projectors.base import Projector, check_projector_input
from projectors.simple import MLPConfig, MLPProjector


class AnyresMLPProjector(Projector):
    """``mlp`` over the features (``in_dim - 1`` wide), ``newline`` where the last input channel marks a row
    end."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig, in_dim: int, out_dim: int) -> None:
        if in_dim < 2:
            raise ValueError(f"anyres-mlp takes features plus a row-end channel (in_dim >= 2), got in_dim {in_dim}; "
                             "feed it from the hf-vision-anyres encoder")
        super().__init__(config, in_dim, out_dim)
        self.mlp = MLPProjector(config, in_dim - 1, out_dim)
        self.newline = nn.Parameter(torch.randn(out_dim) / math.sqrt(out_dim))  # as LLaVA-NeXT initialises it

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        projected, _ = self.mlp(tokens[..., :-1], mask)
        row_end = tokens[..., -1:] > 0.5
        return torch.where(row_end, self.newline.to(projected.dtype), projected), mask
