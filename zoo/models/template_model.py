"""``TemplateModel``: a molecule encoder and an MLP head scoring every template of a reaction-template library.

Prediction applies the most likely templates to each input (rdchiral in the retro direction, RDKit in the
forward one), canonicalises each outcome, merges duplicates by summing their probabilities and returns a
ranked top-k list of distinct molecule sets. The template library is an asset saved beside the weights
(``templates.json``) and sha256-checked like them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.models.encoder_model import EncoderModel
from zoo.models.heads import mlp_head
from zoo.processing import ProcessorSet

TEMPLATES_ASSET = "templates.json"


@dataclass(frozen=True)
class Candidate:
    """One predicted molecule set with the summed probability of the templates that gave it."""

    smiles: str
    score: float


class TemplateModel(EncoderModel):
    """An encoder model with a template head: ``forward(**inputs) -> logits [B, num_templates]``,
    ``predict(items, top_k)`` -> ranked candidates (``encode``/``embed`` still give the encoder's features)."""

    def __init__(self, spec: Any, encoder: nn.Module, processor: ProcessorSet) -> None:
        super().__init__(spec, encoder, processor)
        self.head = mlp_head(encoder.hidden_size, spec.hidden_sizes, spec.num_templates, spec.dropout, nn.ELU)
        self.library: Any = None

    def forward(self, **inputs: Any) -> torch.Tensor:  # type: ignore[override]  (logits, not features)
        return self.head(self.run_encoder(self.encoder, inputs).pooled)

    def assets(self) -> dict[str, bytes]:
        """Files saved beside the weights: the template library."""
        return {TEMPLATES_ASSET: self.library.to_json().encode()} if self.library is not None else {}

    def load_asset(self, name: str, data: bytes) -> None:
        """Attach a verified asset; the library must have exactly one template per output of the head."""
        from tasks.data.templates import TemplateLibrary

        if name != TEMPLATES_ASSET:
            raise ValueError(f"a template model has no asset {name!r}; it takes {TEMPLATES_ASSET}")
        self.attach_library(TemplateLibrary.from_json(data.decode("utf-8")))

    def attach_library(self, library: Any) -> None:
        """Use ``library`` (a :class:`tasks.data.templates.TemplateLibrary`) for the head's classes."""
        if len(library) != self.spec.num_templates:
            raise ValueError(
                f"the template library has {len(library)} templates but the head scores {self.spec.num_templates}; "
                "build the model from a spec whose num_templates is the library's size"
            )
        self.library = library

    def _library(self) -> Any:
        if self.library is None:
            raise ValueError("this template model has no template library; load it with zoo.load, or attach one "
                             "with model.attach_library(library)")
        return self.library

    @torch.no_grad()
    def predict(
        self, items: Sequence[str], top_k: int = 10, reaction_classes: Sequence[int] | None = None
    ) -> list[list[Candidate]]:
        """The ``top_k`` distinct outcomes for each item (product SMILES for retro, reactants for forward),
        best first. With ``reaction_classes`` (one per item), only templates seen with the item's class in
        training are scored. An invalid item raises an error naming it; batch callers isolate items themselves."""
        library = self._library()
        inputs = self.processor(self.modality, list(items)).inputs
        logits = self(**inputs)
        if reaction_classes is not None:
            if len(reaction_classes) != len(items):
                raise ValueError(f"{len(items)} items but {len(reaction_classes)} reaction classes; give one per item")
            allowed = torch.tensor([library.allows(c) for c in reaction_classes], device=logits.device)
            logits = logits.masked_fill(~allowed, float("-inf"))
        probabilities = logits.softmax(-1)
        scores, indices = probabilities.topk(min(self.spec.templates_per_item, len(library)), dim=-1)
        usable = logits.gather(-1, indices).isfinite().tolist()  # a template masked out by the class is never applied
        return [
            self._rank(item, [library.templates[i] for i, ok in zip(row_indices.tolist(), row_ok, strict=True) if ok],
                       [p for p, ok in zip(row_scores.tolist(), row_ok, strict=True) if ok], top_k)
            for item, row_scores, row_indices, row_ok in zip(items, scores, indices, usable, strict=True)
        ]

    def _rank(self, item: str, templates: list[str], scores: list[float], top_k: int) -> list[Candidate]:
        """Apply templates in order of probability, sum the probability of each distinct outcome, keep top_k."""
        from tasks.data.templates import apply_forward, apply_retro, forward_template

        totals: dict[str, float] = {}
        for template, score in zip(templates, scores, strict=True):
            if self.spec.direction == "retro":
                outcomes = apply_retro(template, item)
            else:
                outcomes = apply_forward(forward_template(template), item)
            for outcome in outcomes:
                totals[outcome] = totals.get(outcome, 0.0) + score / len(outcomes)
        ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))
        return [Candidate(smiles, score) for smiles, score in ranked[:top_k]]
