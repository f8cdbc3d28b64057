"""``Predictor``: an encoder and an MLP head predicting properties of each item — one or more real values
(a yield, a solubility), the probabilities of binary labels (Tox21's twelve assays), or a class.

The head starts with a LayerNorm, so features of any scale (summed molecule embeddings, GNN vectors) reach its
first layer standardised. A regression head learns standardised targets (zero mean, unit variance on the training
set), which keeps its learning rate independent of the targets' units; ``target_mean`` and ``target_std`` are
buffers saved with the weights, so ``forward`` and ``predict`` answer in data units. Missing labels (NaN) are
masked out of every loss, so multi-label sets with gaps train on what they have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.encoder_model import EncoderModel
from zoo.models.heads import mlp_head
from zoo.processing import ProcessorSet


class Predictor(EncoderModel):
    """``forward(**inputs) -> [B, outputs]`` (values in data units, or probabilities); ``predict(items)`` gives
    them as lists; ``head_output`` is the raw head output the loss is computed on. ``encode``/``embed`` still give
    the encoder's features."""

    def __init__(self, spec: Any, encoder: nn.Module, processor: ProcessorSet) -> None:
        super().__init__(spec, encoder, processor)
        self.head = mlp_head(encoder.hidden_size, spec.hidden_sizes, spec.num_outputs, spec.dropout, nn.GELU,
                             normalise_input=True)
        if spec.head == "regression":
            self.register_buffer("target_mean", torch.zeros(spec.num_outputs))
            self.register_buffer("target_std", torch.ones(spec.num_outputs))

    def head_output(self, **inputs: Any) -> torch.Tensor:
        """The head's raw output ``[B, outputs]``: logits, or regression values in training-set standard
        deviations from the mean."""
        return self.head(self.run_encoder(self.encoder, inputs).pooled)

    def forward(self, **inputs: Any) -> torch.Tensor:  # type: ignore[override]  (properties, not features)
        return self.from_head_output(self.head_output(**inputs))

    def from_head_output(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw head output -> values in data units (regression) or probabilities."""
        if self.spec.head == "regression":
            return raw * self.target_std + self.target_mean
        return torch.sigmoid(raw) if self.spec.head == "binary" else torch.softmax(raw, dim=-1)

    def head_loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the present labels (NaN = missing): MSE on standardised targets, binary cross-entropy,
        or cross-entropy over the classes (``labels`` ``[B, 1]`` class indices)."""
        raw = raw.float()
        if self.spec.head == "multiclass":
            present = ~torch.isnan(labels[:, 0])
            return F.cross_entropy(raw[present], labels[present, 0].long())
        present = ~torch.isnan(labels)
        target = torch.nan_to_num(labels)
        if self.spec.head == "regression":
            losses = (raw - (target - self.target_mean) / self.target_std).pow(2)
        else:
            losses = F.binary_cross_entropy_with_logits(raw, target, reduction="none")
        return (losses * present).sum() / present.sum().clamp(min=1)

    def set_target_scale(self, labels: torch.Tensor) -> None:
        """A regression head standardises with the mean and standard deviation of each target's training labels
        ``[N, targets]`` (NaN = missing); other heads have nothing to set."""
        if self.spec.head != "regression":
            return
        labels = labels.float().reshape(len(labels), -1)
        for t, name in enumerate(self.spec.targets):
            values = labels[:, t][~torch.isnan(labels[:, t])]
            std = values.std() if len(values) >= 2 else torch.tensor(float("nan"))
            if not torch.isfinite(std) or std == 0:
                raise ValueError(f"target {name!r}: at least two finite, varying training labels are needed to "
                                 f"standardise it; got {len(values)} with std {std.item()}")
            self.target_mean[t] = values.mean().item()
            self.target_std[t] = std.item()

    def prior(self) -> list[float]:
        """The uninformative answer given for an item that cannot be featurized: the training mean, probability
        0.5, or uniform class probabilities; it keeps the item in every metric's denominator."""
        if self.spec.head == "regression":
            return self.target_mean.float().tolist()
        if self.spec.head == "binary":
            return [0.5] * self.spec.num_outputs
        return [1.0 / self.spec.num_outputs] * self.spec.num_outputs

    @torch.no_grad()
    def predict(self, items: Sequence[Any]) -> list[list[float]]:
        """One list per item: a value per target, a probability per binary target, or a probability per class.
        An invalid item raises an error naming it (batch callers isolate items themselves)."""
        return self(**self.processor(self.modality, list(items)).inputs).float().tolist()
