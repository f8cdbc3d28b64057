"""``EncoderModel``: one modality encoder on its own, for features, probes and as a named pretrained part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput
from zoo.models.pretrained import PretrainedMixin
from zoo.processing import ProcessorSet


class EncoderModel(PretrainedMixin, nn.Module):
    """``encode(items) -> EncoderOutput`` and ``embed(items) -> pooled [B, D]``; weights under ``encoder.``."""

    def __init__(self, spec: Any, encoder: nn.Module, processor: ProcessorSet) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.processor = processor
        self.modality = encoder.modality
        self.hidden_size = encoder.hidden_size

    def forward(self, **inputs: Any) -> EncoderOutput:
        return self.run_encoder(self.encoder, inputs)

    def encode(self, items: Sequence[Any]) -> EncoderOutput:
        """Per-item tokens, mask and pooled vector of raw items."""
        return self.run_encoder(self.encoder, self.processor(self.modality, items).inputs)

    def embed(self, items: Sequence[Any]) -> torch.Tensor:
        """Pooled vectors ``[B, hidden_size]`` of raw items."""
        return self.encode(items).pooled
