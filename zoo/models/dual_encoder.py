"""``DualEncoder``: modality towers and a text tower projected into one normalised space (CLIP-style).

Logits are temperature-scaled cosine similarities. CLIP has one temperature, ``logit_scale``; a spec with
``logit_scales: per-direction`` also has ``text_logit_scale`` for the text -> item logits, as transformers'
``ClapModel`` scales ``logits_per_audio`` by ``logit_scale_a`` and ``logits_per_text`` by ``logit_scale_t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.embedding import EmbedResult, as_item_list, embed_in_batches
from zoo.models.pretrained import PretrainedMixin
from zoo.processing import ProcessorSet, move_to


class DualEncoder(PretrainedMixin, nn.Module):
    """``embed(modality, items)``, ``embed_text(texts)``, ``similarity(a, b)``, ``logits(items, texts)``;
    contrastive loss in ``forward``."""

    def __init__(
        self,
        spec: Any,
        towers: Mapping[str, nn.Module],
        text_tower: nn.Module,
        processor: ProcessorSet,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.towers = nn.ModuleDict(towers)
        self.text_tower = text_tower
        self.projections = nn.ModuleDict({m: self._projection(t, m) for m, t in towers.items()})
        self.text_projection = self._projection(text_tower, "text")
        self.logit_scale = nn.Parameter(torch.tensor(self._initial_logit_scale(spec, text_tower, "logit_scale_init")))
        text_scale = self._initial_logit_scale(spec, text_tower, "text_logit_scale_init")
        self.register_parameter(
            "text_logit_scale", nn.Parameter(torch.tensor(text_scale)) if spec.logit_scales == "per-direction" else None
        )
        self.processor = processor

    @staticmethod
    def _initial_logit_scale(spec: Any, text_tower: nn.Module, attribute: str) -> float:
        """The spec's value; else the text tower's own ``attribute`` (an open_clip or CLAP checkpoint's); else
        CLIP's log(1/0.07)."""
        if spec.init_logit_scale is not None:
            return float(spec.init_logit_scale)
        return float(getattr(text_tower, attribute, 2.6592600))

    def _projection(self, tower: nn.Module, name: str) -> nn.Module:
        width = getattr(tower, "pooled_size", tower.hidden_size)
        if self.spec.projection == "linear":
            return nn.Linear(width, self.spec.embed_dim, bias=False)
        if width != self.spec.embed_dim:
            raise ValueError(
                f"projection 'none' needs the {name} tower's pooled width ({width}) to equal embed_dim "
                f"({self.spec.embed_dim})"
            )
        return nn.Identity()

    def _tower_and_projection(self, modality: str) -> tuple[nn.Module, nn.Module]:
        if modality == "text":
            return self.text_tower, self.text_projection
        if modality not in self.towers:
            raise KeyError(f"no {modality!r} tower; this model has: {', '.join([*self.towers, 'text'])}")
        return self.towers[modality], self.projections[modality]

    def embed_processed(self, modality: str, inputs: Mapping[str, Any]) -> torch.Tensor:
        """L2-normalised embeddings ``[B, embed_dim]`` from already processed inputs."""
        tower, _ = self._tower_and_projection(modality)
        return self.embed_pooled(modality, self.run_encoder(tower, inputs).pooled)

    def embed_pooled(self, modality: str, pooled: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings from a tower's pooled output (training on cached frozen-tower features, which
        are float32 whatever the model's dtype)."""
        _, projection = self._tower_and_projection(modality)
        return F.normalize(projection(move_to(pooled, self.device, self.dtype)), dim=-1)

    def embed(
        self, modality: str, items: Sequence[Any], batch_size: int = 64, on_error: str = "raise"
    ) -> torch.Tensor | EmbedResult:
        """L2-normalised embeddings ``[len(items), embed_dim]`` of raw items of ``modality``, in input order,
        ``batch_size`` items per forward pass under ``torch.inference_mode`` (no grad is kept; called outside
        inference mode the result is an ordinary tensor on the model's device in its dtype). Training goes
        through ``forward`` / :meth:`embed_processed`, which keep autograd.

        Each item is processed on its own terms: one that cannot be processed is left out of its batch, so
        the other items' embeddings are those they get without it. ``on_error="raise"`` (default): after every
        item has been tried, one :class:`zoo.models.embedding.ItemsFailedError` names each failed item's index
        and reason. ``on_error="report"``: return an :class:`zoo.models.embedding.EmbedResult` with the
        embeddings of the items that worked, their indices and ``{index: error}`` for the rest.
        """
        self._tower_and_projection(modality)  # unknown modality: name the towers before processing anything
        return embed_in_batches(
            as_item_list(items, "embed"),
            lambda values: self.processor(modality, values),
            lambda batch: self.embed_processed(modality, batch.inputs),
            self.spec.embed_dim,
            self.dtype,
            self.device,
            batch_size,
            on_error,
        )

    def embed_text(
        self, texts: Sequence[str], batch_size: int = 64, on_error: str = "raise"
    ) -> torch.Tensor | EmbedResult:
        """:meth:`embed` of ``"text"`` items: same batching, inference mode and error reporting."""
        return self.embed("text", texts, batch_size=batch_size, on_error=on_error)

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``[len(a), len(b)]`` of normalised embeddings (small sets only; retrieval over
        large galleries streams top-k in ``tasks.metrics``)."""
        return a @ b.T

    def logits(self, items: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits_per_item [len(items), len(texts)], logits_per_text [len(texts), len(items)])`` from normalised
        embeddings: cosine similarities times ``exp(logit_scale)`` and ``exp(text_logit_scale)``. With one shared
        scale the second is the first transposed. For CLAP these are ``ClapModel``'s ``logits_per_audio`` and
        ``logits_per_text``. Rankings (zero-shot classes, retrieval) depend on neither scale."""
        per_item = self.logit_scale.exp() * items @ texts.T
        if self.text_logit_scale is None:
            return per_item, per_item.T
        return per_item, self.text_logit_scale.exp() * texts @ items.T

    def forward(
        self, modality: str, inputs: Mapping[str, Any], text_inputs: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE loss over a batch of matching (item, text) pairs; ``logits`` are per item."""
        per_item, per_text = self.logits(self.embed_processed(modality, inputs), self.embed_processed("text", text_inputs))
        target = torch.arange(len(per_item), device=per_item.device)
        loss = (F.cross_entropy(per_item, target) + F.cross_entropy(per_text, target)) / 2
        return {"loss": loss, "logits": per_item}
