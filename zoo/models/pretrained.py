"""What every zoo model shares: its spec, its processor, its device, and ``save_pretrained``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.processing import move_to


class PretrainedMixin:
    """Mixed into ``nn.Module`` models; ``card_meta`` (name, description, license) feeds the saved card."""

    spec: Any
    processor: Any
    card_meta: dict[str, Any]

    @property
    def device(self) -> torch.device:
        """Where the weights are (CPU for a model with none, e.g. a bare fingerprint encoder)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        first = next(self.parameters(), None)
        return first.dtype if first is not None else torch.get_default_dtype()

    def run_encoder(self, encoder: torch.nn.Module, inputs: Mapping[str, Any]) -> Any:
        """``encoder(**inputs)`` with the inputs on the encoder's device and their floating-point tensors in its
        dtype (the model's, for an encoder without weights such as a fingerprint), so processor output (float32)
        feeds a bf16 or fp16 model; ids and masks stay integer. Every model calls its encoders through here."""
        weights = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        device, dtype = (weights.device, weights.dtype) if weights is not None else (self.device, self.dtype)
        return encoder(**move_to(dict(inputs), device, dtype))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (spec + processor config), model.safetensors and a README.md card, atomically."""
        from zoo.io import save_pretrained

        return save_pretrained(self, directory)
