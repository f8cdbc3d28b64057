"""``EncoderModel``: one modality encoder on its own, for features, probes and as a named pretrained part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput
from zoo.models.embedding import (
    EmbedResult,
    as_item_list,
    embed_in_batches,
    outside_inference,
    process_isolating,
)
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
        """Per-item tokens ``[B, N, D]``, mask ``[B, N]`` and pooled vectors ``[B, D]`` of raw items.

        The items go through the encoder as ONE batch (tokens are padded to the longest item of that batch, so
        splitting it would give outputs of different widths; for many items use :meth:`embed`, which batches).
        The encoder runs under ``torch.inference_mode`` and the outputs never require grad; called outside
        inference mode they are ordinary tensors. An item that cannot be processed raises
        :class:`zoo.models.embedding.ItemsFailedError` (an ``InvalidInputError``) naming every such item by
        its index and reason; nothing is encoded then.
        """
        batch = process_isolating(as_item_list(items, "encode"), lambda values: self.processor(self.modality, values))
        with torch.inference_mode():
            output = self.run_encoder(self.encoder, batch.inputs)
        return outside_inference(output)

    def embed(self, items: Sequence[Any], batch_size: int = 64, on_error: str = "raise") -> torch.Tensor | EmbedResult:
        """Pooled vectors ``[len(items), D]`` of raw items (D: the encoder's pooled width), in input order,
        ``batch_size`` items per forward pass under ``torch.inference_mode`` (no grad is kept; called outside
        inference mode the result is an ordinary tensor on the model's device in its dtype).

        Each item is processed on its own terms: one that cannot be processed (an invalid SMILES, an unreadable
        image, a wrong type) is left out of its batch, so the other items' vectors are those they get without
        it. ``on_error="raise"`` (default): after every item has been tried, one
        :class:`zoo.models.embedding.ItemsFailedError` names each failed item's index and reason.
        ``on_error="report"``: return an :class:`zoo.models.embedding.EmbedResult` with the vectors of the
        items that worked, their indices and ``{index: error}`` for the rest.
        """
        return embed_in_batches(
            as_item_list(items, "embed"),
            lambda values: self.processor(self.modality, values),
            lambda batch: self.run_encoder(self.encoder, batch.inputs).pooled,
            getattr(self.encoder, "pooled_size", self.hidden_size),
            self.dtype,
            self.device,
            batch_size,
            on_error,
        )
