"""What every zoo model shares: its spec, its processor, its device, and ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


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

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (spec + processor config), model.safetensors and a README.md card, atomically."""
        from zoo.io import save_pretrained

        return save_pretrained(self, directory)
