"""``Regressor``: an encoder and an MLP head predicting one real value per item (e.g. a reaction's yield).

The head starts with a LayerNorm, so features of any scale (summed molecule embeddings, fingerprints) reach
its first layer standardised. It learns standardised targets (zero mean, unit variance on the training set),
which keeps its learning rate independent of the target's units; ``target_mean`` and ``target_std`` are
buffers saved with the weights, so ``forward`` and ``predict`` answer in data units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.models.encoder_model import EncoderModel
from zoo.models.heads import mlp_head
from zoo.processing import ProcessorSet


class Regressor(EncoderModel):
    """``forward(**inputs) -> [B]`` values in data units; ``predict(items) -> list[float]``
    (``encode``/``embed`` still give the encoder's features)."""

    def __init__(self, spec: Any, encoder: nn.Module, processor: ProcessorSet) -> None:
        super().__init__(spec, encoder, processor)
        self.head = mlp_head(encoder.hidden_size, spec.hidden_sizes, 1, spec.dropout, nn.GELU, normalise_input=True)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def standardised(self, **inputs: Any) -> torch.Tensor:
        """The head's raw output ``[B]``: the prediction in training-set standard deviations from the mean."""
        return self.head(self.run_encoder(self.encoder, inputs).pooled).squeeze(-1)

    def forward(self, **inputs: Any) -> torch.Tensor:  # type: ignore[override]  (values, not features)
        return self.standardised(**inputs) * self.target_std + self.target_mean

    def set_target_scale(self, targets: torch.Tensor) -> None:
        """Standardise with the mean and standard deviation of the training ``targets``."""
        if targets.numel() < 2:
            raise ValueError("the target scale needs at least two training targets")
        std = targets.float().std()
        if not torch.isfinite(std) or std == 0:
            raise ValueError(f"training targets must vary and be finite to standardise them; their std is {std.item()}")
        self.target_mean.fill_(targets.float().mean().item())
        self.target_std.fill_(std.item())

    @torch.no_grad()
    def predict(self, items: Sequence[Any]) -> list[float]:
        """One predicted value per item; an invalid item raises an error naming it (batch callers isolate
        items themselves)."""
        return self(**self.processor(self.modality, list(items)).inputs).float().tolist()
