"""``DualEncoder``: modality towers and a text tower projected into one normalised space (CLIP-style).

Logits are temperature-scaled cosine similarities. CLIP has one temperature, ``logit_scale``; a spec with
``logit_scales: per-direction`` also has ``text_logit_scale`` for the text -> item logits, as transformers'
``ClapModel`` scales ``logits_per_audio`` by ``logit_scale_a`` and ``logits_per_text`` by ``logit_scale_t``.

The head on each tower's pooled output is the spec's ``projection`` (a row of :data:`HEADS`, configured by
``projection_config``): ``linear``, ``none``, an ``mlp``, or SAIL's ``star-mlp`` (Zhang et al. 2024), the light
head SAIL trains on frozen unimodal towers. The loss is the spec's ``contrastive_loss`` (a row of
:data:`CONTRASTIVE_LOSSES`): CLIP's symmetric InfoNCE (``softmax``) or SigLIP's pairwise ``sigmoid`` loss (Zhai
et al. 2023), which adds a learned ``logit_bias`` to every logit; that bias is a parameter of the model, saved
and loaded like ``logit_scale``, and scores pairs at inference too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from projectors.star import StarMLPConfig, StarMLPProjector
from zoo.models.embedding import EmbedResult, as_item_list, embed_in_batches
from zoo.models.pretrained import PretrainedMixin
from zoo.processing import ProcessorSet, move_to
from zoo.spec import SpecError, make_config

_MLP_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class NoHeadConfig:
    """``linear`` and ``none`` take no settings."""


@dataclass(frozen=True)
class MLPHeadConfig:
    """``Linear -> act`` for each hidden width, then ``Linear`` to ``embed_dim``."""

    hidden_sizes: list[int] = field(default_factory=lambda: [1024])
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"mlp head 'hidden_sizes' must list one or more widths >= 1, got {self.hidden_sizes}")
        if self.activation not in _MLP_ACTIVATIONS:
            raise ValueError(f"mlp head 'activation' is {self.activation!r}; allowed: {', '.join(_MLP_ACTIVATIONS)}")


class PooledStarHead(nn.Module):
    """SAIL's star-MLP (:class:`projectors.star.StarMLPProjector`) on pooled vectors ``[B, width]``."""

    def __init__(self, config: StarMLPConfig, width: int, embed_dim: int) -> None:
        super().__init__()
        self.star = StarMLPProjector(config, width, embed_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.star.project(pooled)


def _linear_head(config: NoHeadConfig, width: int, embed_dim: int, tower: str) -> nn.Module:
    return nn.Linear(width, embed_dim, bias=False)


def _identity_head(config: NoHeadConfig, width: int, embed_dim: int, tower: str) -> nn.Module:
    if width != embed_dim:
        raise ValueError(
            f"projection 'none' needs the {tower} tower's pooled width ({width}) to equal embed_dim ({embed_dim})"
        )
    return nn.Identity()


def _mlp_head(config: MLPHeadConfig, width: int, embed_dim: int, tower: str) -> nn.Module:
    layers: list[nn.Module] = []
    for hidden in config.hidden_sizes:
        layers += [nn.Linear(width, int(hidden)), _MLP_ACTIVATIONS[config.activation]()]
        width = int(hidden)
    return nn.Sequential(*layers, nn.Linear(width, embed_dim))


def _star_head(config: StarMLPConfig, width: int, embed_dim: int, tower: str) -> nn.Module:
    return PooledStarHead(config, width, embed_dim)


@dataclass(frozen=True)
class HeadKind:
    """A projection head: the dataclass its ``projection_config`` must fit, and its builder
    ``(config, pooled width, embed_dim, tower name) -> module``."""

    config_class: type
    build: Callable[[Any, int, int, str], nn.Module]


HEADS: dict[str, HeadKind] = {
    "linear": HeadKind(NoHeadConfig, _linear_head),
    "none": HeadKind(NoHeadConfig, _identity_head),
    "mlp": HeadKind(MLPHeadConfig, _mlp_head),
    "star-mlp": HeadKind(StarMLPConfig, _star_head),
}


def softmax_contrastive_loss(per_item: torch.Tensor, per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: pair ``i`` is the positive of row ``i`` in both directions."""
    target = torch.arange(len(per_item), device=per_item.device)
    return (F.cross_entropy(per_item, target) + F.cross_entropy(per_text, target)) / 2


def sigmoid_contrastive_loss(per_item: torch.Tensor, per_text: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss: every (item, text) pair is a binary problem, label +1 on the diagonal and -1 off it;
    ``-sum log sigmoid(label * logit)`` over all ``n^2`` pairs divided by the batch size ``n``. The logits
    already hold the bias; ``per_text`` is their transpose and adds nothing."""
    labels = 2 * torch.eye(len(per_item), device=per_item.device, dtype=per_item.dtype) - 1
    return -F.logsigmoid(labels * per_item).sum() / len(per_item)


@dataclass(frozen=True)
class ContrastiveLoss:
    """A contrastive loss, its default initial ``logit_scale``, and its initial ``logit_bias`` (None: the loss
    has no bias)."""

    compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    init_logit_scale: float
    init_logit_bias: float | None


CONTRASTIVE_LOSSES: dict[str, ContrastiveLoss] = {
    "softmax": ContrastiveLoss(softmax_contrastive_loss, math.log(1 / 0.07), None),  # CLIP: temperature 0.07
    "sigmoid": ContrastiveLoss(sigmoid_contrastive_loss, math.log(10.0), -10.0),  # SigLIP: t' = log 10, b = -10
}


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
        self.loss_kind = CONTRASTIVE_LOSSES[spec.contrastive_loss]
        self.logit_scale = nn.Parameter(torch.tensor(self._initial_logit_scale(spec, text_tower, "logit_scale_init")))
        text_scale = self._initial_logit_scale(spec, text_tower, "text_logit_scale_init")
        self.register_parameter(
            "text_logit_scale", nn.Parameter(torch.tensor(text_scale)) if spec.logit_scales == "per-direction" else None
        )
        bias = spec.init_logit_bias if spec.init_logit_bias is not None else self.loss_kind.init_logit_bias
        self.register_parameter("logit_bias", None if bias is None else nn.Parameter(torch.tensor(float(bias))))
        self.processor = processor

    def _initial_logit_scale(self, spec: Any, text_tower: nn.Module, attribute: str) -> float:
        """The spec's value; else the text tower's own ``attribute`` (an open_clip or CLAP checkpoint's); else
        the loss's default (CLIP's log(1/0.07), SigLIP's log 10)."""
        if spec.init_logit_scale is not None:
            return float(spec.init_logit_scale)
        return float(getattr(text_tower, attribute, self.loss_kind.init_logit_scale))

    def _projection(self, tower: nn.Module, name: str) -> nn.Module:
        """The spec's head (a row of :data:`HEADS`) from the tower's pooled width to ``embed_dim``."""
        kind = HEADS[self.spec.projection]
        config = make_config(kind.config_class, self.spec.projection_config, f"spec.projection_config ({self.spec.projection})")
        try:
            return kind.build(config, getattr(tower, "pooled_size", tower.hidden_size), self.spec.embed_dim, name)
        except ValueError as err:
            raise SpecError(str(err)) from err

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
        embeddings: cosine similarities times ``exp(logit_scale)`` and ``exp(text_logit_scale)``, plus
        ``logit_bias`` under a sigmoid loss (SigLIP's pair scores). With one shared scale the second is the first
        transposed. For CLAP these are ``ClapModel``'s ``logits_per_audio`` and ``logits_per_text``. Rankings
        (zero-shot classes, retrieval) depend on neither scale nor the bias."""
        per_item = self.logit_scale.exp() * items @ texts.T
        if self.logit_bias is not None:
            per_item = per_item + self.logit_bias
        if self.text_logit_scale is None:
            return per_item, per_item.T
        return per_item, self.text_logit_scale.exp() * texts @ items.T

    def contrastive_loss(self, items: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The spec's contrastive loss over normalised embeddings of matching pairs (row ``i`` with row ``i``)."""
        return self.loss_kind.compute(*self.logits(items, texts))

    def forward(
        self, modality: str, inputs: Mapping[str, Any], text_inputs: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The spec's contrastive loss over a batch of matching (item, text) pairs; ``logits`` are per item."""
        items, texts = self.embed_processed(modality, inputs), self.embed_processed("text", text_inputs)
        return {"loss": self.contrastive_loss(items, texts), "logits": self.logits(items, texts)[0]}
