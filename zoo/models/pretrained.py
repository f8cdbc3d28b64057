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
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (spec + processor config), model.safetensors and a README.md card, atomically."""
        from zoo.io import save_pretrained

        return save_pretrained(self, directory)
