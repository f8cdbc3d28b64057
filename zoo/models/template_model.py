"""``TemplateModel``: a molecule encoder and an MLP head scoring every template of a reaction-template library.

Prediction applies the most likely templates to each input (rdchiral in the retro direction, RDKit in the
forward one), canonicalises each outcome, merges duplicates by summing their probabilities and returns a
ranked top-k list of distinct molecule sets. The template library is an asset saved beside the weights
(``templates.json``) and sha256-checked like them; so is the optional library of general (radius-0)
templates (``templates-general.json``), whose scores follow the first library's in the head's output, and
the optional analogue index (``analogues.safetensors``, see :mod:`zoo.models.analogues`) that reranks a retro
model's outcomes by how the most similar training products were made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rdkit.Chem import rdMolDescriptors
from torch import nn

from encoders.molecule.parsing import parse_smiles
from zoo.models.analogues import ANALOGUES_ASSET, AnalogueIndex, CandidateEvidence, MoleculeShape
from zoo.models.encoder_model import EncoderModel
from zoo.models.heads import mlp_head
from zoo.processing import ProcessorSet

TEMPLATES_ASSET = "templates.json"
GENERAL_TEMPLATES_ASSET = "templates-general.json"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One predicted molecule set and its score: the summed probability of the templates that gave it, or, for a
    model with analogue reranking, the reranker's probability among its item's outcomes."""

    smiles: str
    score: float


class TemplateModel(EncoderModel):
    """An encoder model with a template head: ``forward(**inputs) -> logits [B, num_templates +
    num_general_templates]``, ``predict(items, top_k)`` -> ranked candidates (``encode``/``embed`` still give
    the encoder's features)."""

    def __init__(self, spec: Any, encoder: nn.Module, processor: ProcessorSet) -> None:
        super().__init__(spec, encoder, processor)
        outputs = spec.num_templates + spec.num_general_templates
        self.head = mlp_head(encoder.hidden_size, spec.hidden_sizes, outputs, spec.dropout, nn.ELU)
        self.library: Any = None
        self.general_library: Any = None
        self.analogues: Any = None
        # processes that apply templates at prediction (1: this one); every core this process may use by default
        self.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def forward(self, **inputs: Any) -> torch.Tensor:  # type: ignore[override]  (logits, not features)
        return self.head(self.run_encoder(self.encoder, inputs).pooled)

    def assets(self) -> dict[str, bytes]:
        """Files saved beside the weights: the template libraries and the analogue index."""
        libraries = {TEMPLATES_ASSET: self.library, GENERAL_TEMPLATES_ASSET: self.general_library}
        files = {name: library.to_json().encode() for name, library in libraries.items() if library is not None}
        return files | ({ANALOGUES_ASSET: self.analogues.to_bytes()} if self.analogues is not None else {})

    def load_asset(self, name: str, data: bytes) -> None:
        """Attach a verified asset; each library must have exactly as many templates as the spec says."""
        from tasks.data.templates import TemplateLibrary

        wanted = [TEMPLATES_ASSET] + ([GENERAL_TEMPLATES_ASSET] if self.spec.num_general_templates else [])
        wanted += [ANALOGUES_ASSET] if self.spec.analogue_neighbours else []
        if name not in wanted:
            raise ValueError(f"this template model has no asset {name!r}; it takes {' and '.join(wanted)}")
        if name == ANALOGUES_ASSET:
            self.attach_analogues(AnalogueIndex.from_bytes(data))
            return
        library = TemplateLibrary.from_json(data.decode("utf-8"))
        if name == TEMPLATES_ASSET:
            self.attach_library(library, self.general_library)
        else:
            self._check_size(library, self.spec.num_general_templates, "general template library", "num_general_templates")
            self.general_library = library

    def attach_library(self, library: Any, general: Any = None) -> None:
        """Use ``library`` (a :class:`tasks.data.templates.TemplateLibrary`) for the head's classes, and
        ``general`` (radius-0 templates) for the classes after them when the spec has general templates."""
        self._check_size(library, self.spec.num_templates, "template library", "num_templates")
        if general is not None:
            self._check_size(general, self.spec.num_general_templates, "general template library", "num_general_templates")
        self.library, self.general_library = library, general

    def attach_analogues(self, analogues: AnalogueIndex) -> None:
        """Rerank retro outcomes with ``analogues`` (its template ids must index this model's outputs)."""
        if self.spec.direction != "retro" or not self.spec.analogue_neighbours:
            raise ValueError("analogue reranking needs a retro template model whose spec sets analogue_neighbours")
        outputs = self.spec.num_templates + self.spec.num_general_templates
        if analogues.templates.size and int(analogues.templates.max()) >= outputs:
            raise ValueError(f"the analogue index names template {int(analogues.templates.max())}, but the head scores "
                             f"{outputs}; it belongs to another model")
        if analogues.width != self.encoder.hidden_size:
            raise ValueError(f"the analogue index holds {analogues.width}-bit fingerprints, the encoder makes "
                             f"{self.encoder.hidden_size}; it belongs to another model")
        self.analogues = analogues

    @staticmethod
    def _check_size(library: Any, size: int, what: str, field_name: str) -> None:
        if len(library) != size:
            raise ValueError(
                f"the {what} has {len(library)} templates but the head scores {size}; "
                f"build the model from a spec whose {field_name} is the library's size"
            )

    def _templates(self) -> tuple[str, ...]:
        """Every template the head scores, in output order."""
        if self.spec.analogue_neighbours and self.analogues is None:
            raise ValueError("this template model reranks with an analogue index but has none; load it with zoo.load, "
                             "or attach one with model.attach_analogues(index)")
        if self.library is None or (self.spec.num_general_templates and self.general_library is None):
            raise ValueError("this template model has no template library (or lacks its general one); load it with "
                             "zoo.load, or attach them with model.attach_library(library, general)")
        return self.library.templates + (self.general_library.templates if self.general_library is not None else ())

    def _allowed(self, reaction_class: int) -> list[bool]:
        """Per output, whether that template may serve a product of ``reaction_class``."""
        allowed = self.library.allows(reaction_class)
        return allowed + (self.general_library.allows(reaction_class) if self.general_library is not None else [])

    @torch.no_grad()
    def predict(
        self, items: Sequence[str], top_k: int = 10, reaction_classes: Sequence[int] | None = None
    ) -> list[list[Candidate]]:
        """The ``top_k`` distinct outcomes for each item (product SMILES for retro, reactants for forward),
        best first. With ``reaction_classes`` (one per item), only templates seen with the item's class in
        training are scored. An invalid item raises an error naming it; batch callers isolate items themselves."""
        predictions = []
        for item, evidence in zip(items, self.outcomes(items, reaction_classes), strict=True):
            if self.analogues is None:
                predictions.append([Candidate(e.smiles, e.score) for e in evidence[:top_k]])
            else:
                predictions.append(self._rerank(item, evidence, top_k))
        return predictions

    @torch.no_grad()
    def outcomes(
        self, items: Sequence[str], reaction_classes: Sequence[int] | None = None
    ) -> list[list[CandidateEvidence]]:
        """For each item, every distinct outcome of its ``templates_per_item`` most likely templates with the
        evidence for it, ordered by the template model's score (before any reranking)."""
        from tasks.data.template_application import apply_templates

        templates = self._templates()
        inputs = self.processor(self.modality, list(items)).inputs
        logits = self(**inputs)
        if reaction_classes is not None:
            if len(reaction_classes) != len(items):
                raise ValueError(f"{len(items)} items but {len(reaction_classes)} reaction classes; give one per item")
            allowed = torch.tensor([self._allowed(c) for c in reaction_classes], device=logits.device)
            logits = logits.masked_fill(~allowed, float("-inf"))
        probabilities = logits.softmax(-1)
        scores, indices = probabilities.topk(min(self.spec.templates_per_item, len(templates)), dim=-1)
        usable = logits.gather(-1, indices).isfinite().tolist()  # a template masked out by the class is never applied
        chosen = [[(i, p) for i, p, ok in zip(row_indices, row_scores, row_ok, strict=True) if ok]
                  for row_scores, row_indices, row_ok in zip(scores.tolist(), indices.tolist(), usable, strict=True)]
        jobs = [(item, [templates[i] for i, _ in item_chosen]) for item, item_chosen in zip(items, chosen, strict=True)]
        applied = apply_templates(self.spec.direction, jobs, self.workers)
        return [self._evidence(item, item_chosen, outcomes)
                for item, item_chosen, outcomes in zip(items, chosen, applied, strict=True)]

    def _evidence(
        self, item: str, chosen: list[tuple[int, float]], applied: list[list[str] | None]
    ) -> list[CandidateEvidence]:
        """Each distinct outcome of the chosen (output index, probability) templates with its summed probability
        (split evenly over the outcomes of one template), best first."""
        totals: dict[str, list[Any]] = {}
        for (index, score), outcomes in zip(chosen, applied, strict=True):
            if outcomes is None:  # rdchiral could not build this template's outcome: as if it did not match
                logger.debug("template %d gives %r no outcome (rdchiral error)", index, item)
                continue
            for outcome in outcomes:
                entry = totals.setdefault(outcome, [0.0, 0.0, set()])
                entry[0] += score / len(outcomes)
                entry[1] += score / len(outcomes) if index >= self.spec.num_templates else 0.0
                entry[2].add(index)
        ranked = sorted(totals.items(), key=lambda pair: (-pair[1][0], pair[0]))
        return [CandidateEvidence(smiles, total, general, frozenset(used), self.shape(smiles) if self.analogues else None)
                for smiles, (total, general, used) in ranked]

    def shape(self, smiles: str) -> MoleculeShape:
        """What the analogue reranker reads of a molecule (set): the encoder's fingerprint bits (binarised),
        heavy atoms and rings, from one parse."""
        mol = parse_smiles(smiles)
        bits = np.flatnonzero(self.processor.processors[self.modality].fingerprint(mol))
        return MoleculeShape(bits, mol.GetNumHeavyAtoms(), rdMolDescriptors.CalcNumRings(mol))

    def candidate_features(self, item: str, evidence: list[CandidateEvidence]) -> torch.Tensor:
        """The analogue reranker's features of one product's outcomes (best first by the model's score)."""
        return self.analogues.features(self.shape(item), evidence, self.spec.analogue_neighbours)

    def _rerank(self, item: str, evidence: list[CandidateEvidence], top_k: int) -> list[Candidate]:
        if not evidence:
            return []
        probabilities = self.analogues.rerank(self.candidate_features(item, evidence)).tolist()
        ranked = sorted(zip(evidence, probabilities, strict=True), key=lambda pair: (-pair[1], pair[0].smiles))
        return [Candidate(e.smiles, p) for e, p in ranked[:top_k]]
