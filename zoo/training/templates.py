"""Fit a template model's head: each mapped reaction's input (product, or reactants for forward) -> the class
index of its own template in the library, and with a general library also that of its radius-0 template, the
two sharing the target (``general_weight`` to the general one). Inputs are featurized once and kept sparse (a Morgan count
fingerprint has a few dozen non-zeros), so a 40k-reaction training set fits in memory at any fingerprint size.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.base import InvalidInputError
from zoo.io import atomic_write
from zoo.spec import SpecError


@dataclass
class TemplateFit:
    """What a fit used and skipped: ``skipped`` tallies reactions left out by reason (none is dropped silently)."""

    examples: int
    epochs: int
    final_loss: float
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class SparseRows:
    """Feature rows as (column indices, values) pairs, densified one batch at a time."""

    width: int
    rows: list[tuple[np.ndarray, np.ndarray]]

    def dense(self, picks: Sequence[int]) -> torch.Tensor:
        batch = np.zeros((len(picks), self.width), dtype=np.float32)
        for i, pick in enumerate(picks):
            columns, values = self.rows[pick]
            batch[i, columns] = values
        return torch.from_numpy(batch)


Target = tuple[tuple[int, float], ...]  # (class index, weight) pairs summing to 1


def labelled_inputs(
    model: Any,
    records: Sequence[Any],
    templates: Sequence[str | None],
    general_templates: Sequence[str | None] | None = None,
    general_weight: float = 0.5,
) -> tuple[list[str], list[Target], Counter]:
    """The model's inputs and targets for ``records`` (with their extracted ``templates`` and, for a model with
    a general library, their ``general_templates``), and the reasons for every record left out: no template,
    or no template the libraries hold. A record whose template is in one library only puts all weight on it."""
    if (general_templates is None) != (model.general_library is None):
        raise ValueError("give the rows' general templates exactly when the model has a general library")
    if general_templates is not None and len(general_templates) != len(records):
        raise ValueError(f"{len(records)} records but {len(general_templates)} general templates")
    general = general_templates if general_templates is not None else [None] * len(records)
    offset = len(model.library)
    inputs, targets, skipped = [], [], Counter()
    for record, template, general_template in zip(records, templates, general, strict=True):
        labels = []
        if template is not None and (label := model.library.index(template)) is not None:
            labels.append([label, 1.0 - general_weight])
        if general_template is not None and (label := model.general_library.index(general_template)) is not None:
            labels.append([offset + label, general_weight])
        if template is None and general_template is None:
            skipped["no template"] += 1
        elif not labels:
            skipped["template not in the library"] += 1
        else:
            total = sum(weight for _, weight in labels)
            inputs.append(record.product if model.spec.direction == "retro" else record.reactants)
            targets.append(tuple((label, weight / total) for label, weight in labels))
    return inputs, targets, skipped


def featurize(model: Any, inputs: Sequence[str], skipped: Counter, progress: bool = True) -> tuple[SparseRows, list[int]]:
    """Sparse fingerprints of ``inputs`` and the positions that featurized; an invalid input is tallied."""
    processor = model.processor.processors[model.modality]
    rows, kept = [], []
    for position, item in enumerate(tqdm(inputs, desc="featurizing", unit="mol", disable=not progress)):
        try:
            dense = processor.fingerprint(item, position)
        except InvalidInputError:
            skipped["invalid input molecule"] += 1
            continue
        columns = np.flatnonzero(dense)
        rows.append((columns, dense[columns]))
        kept.append(position)
    return SparseRows(model.encoder.hidden_size, rows), kept


def fit_template_head(
    model: Any,
    records: Sequence[Any],
    templates: Sequence[str | None],
    *,
    general_templates: Sequence[str | None] | None = None,
    general_weight: float = 0.5,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> TemplateFit:
    """Train ``model`` (a :class:`~zoo.models.template_model.TemplateModel` with a ``fingerprint`` encoder and
    its libraries attached) with cross-entropy over the libraries (soft targets when a row has a template in
    both), Adam, ``epochs`` passes in a seeded order. Returns what it used and what it skipped, by reason."""
    if not 0.0 <= general_weight < 1.0:
        raise ValueError(f"general_weight must be in [0, 1), got {general_weight}")
    inputs, labels, skipped = labelled_inputs(model, records, templates, general_templates, general_weight)
    features, kept = featurize(model, inputs, skipped, progress)
    if not kept:
        raise ValueError(f"no reaction could be used for training ({dict(skipped)}); check the data and the library")
    width = max(len(labels[k]) for k in kept)
    classes = torch.tensor([[c for c, _ in labels[k]] + [0] * (width - len(labels[k])) for k in kept])
    weights = torch.tensor([[w for _, w in labels[k]] + [0.0] * (width - len(labels[k])) for k in kept])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(kept) / batch_size)
    model.train()
    loss = torch.tensor(math.nan)
    with tqdm(total=steps, desc="training template head", unit="step", disable=not progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(kept), generator=generator)
            for start in range(0, len(kept), batch_size):
                picks = order[start : start + batch_size].tolist()
                log_probabilities = model(fingerprints=features.dense(picks).to(model.device)).log_softmax(-1)
                picked = log_probabilities.gather(-1, classes[picks].to(model.device))
                loss = -(picked * weights[picks].to(model.device)).sum(-1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return TemplateFit(len(kept), epochs, float(loss.item()), dict(skipped))


RECIPE_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "workers", "min_count", "progress", "general_weight")


def train_from_recipe(
    model: Any, data: Path, settings: dict[str, Any], output_dir: Path, validation: Path | None = None
) -> Any:
    """A card recipe's ``stage: template-head``: the template library of the mapped reactions in ``data``
    (cached in modalzoo's cache, keyed by the file's sha256 and the extraction settings) with each template's
    reaction classes, and the radius-0 library too when the spec has general templates, attached to ``model``
    and its head fitted; with ``analogue_neighbours``, the analogue index of ``data`` and its reranker fitted
    on the mapped reactions in ``validation``. ``fit.json`` in ``output_dir`` says what was used and skipped."""
    from tasks.data.templates import read_mapped_reactions

    unknown = sorted(set(settings) - set(RECIPE_SETTINGS))
    if unknown:
        raise SpecError(f"template-head recipe: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(RECIPE_SETTINGS)}")
    progress = bool(settings.get("progress", True))
    records = list(read_mapped_reactions(data))
    library, rows = _library(data, records, 1, model.spec.num_templates, "num_templates", settings)
    general, general_rows = None, None
    if model.spec.num_general_templates:
        general, general_rows = _library(data, records, 0, model.spec.num_general_templates, "num_general_templates",
                                         settings)
    model.attach_library(library, general)
    fit = fit_template_head(
        model, records, rows, general_templates=general_rows, progress=progress,
        **{k: settings[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed", "general_weight") if k in settings},
    )
    summary = {**dataclasses.asdict(fit), "library": len(library), "extraction": library.stats.reasons}
    if general is not None:
        summary.update(general_library=len(general), general_extraction=general.stats.reasons)
    if model.spec.analogue_neighbours:
        if validation is None:
            raise SpecError("a template model with analogue_neighbours fits its reranker on held-out reactions; give "
                            "the recipe validation_data (mapped reactions that are not in its training data)")
        index, left_out = build_analogue_index(model, records, rows, general_rows, progress=progress)
        model.attach_analogues(index)
        summary["analogues"] = {"reactions": len(records) - sum(left_out.values()), "left_out": dict(left_out),
                                **fit_analogue_reranker(model, list(read_mapped_reactions(validation)), progress=progress)}
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(output_dir / "fit.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return model


def _library(
    data: Path, records: Sequence[Any], radius: int, size: int, field_name: str, settings: dict[str, Any]
) -> tuple[Any, list[str | None]]:
    """The cached radius-``radius`` library of ``data`` (templates seen ``min_count``+ times, with their
    reaction classes) and each row's own template; its size must be the spec's ``field_name``."""
    from tasks.data.templates import templated_rows
    from zoo.weights.sources import cache_dir

    library, rows = templated_rows(data, cache_dir() / "templates", workers=int(settings.get("workers", 1)),
                                   progress=bool(settings.get("progress", True)), radius=radius)
    min_count = int(settings.get("min_count", 1))
    library = library.with_min_count(min_count)
    if len(library) != size:
        raise SpecError(
            f"{data} gives {len(library)} radius-{radius} templates seen at least {min_count} time(s), but the "
            f"card's spec.{field_name} is {size}; set {field_name} to {len(library)}"
        )
    return library.with_classes(rows, [record.reaction_class for record in records]), rows


def build_analogue_index(
    model: Any,
    records: Sequence[Any],
    templates: Sequence[str | None],
    general_templates: Sequence[str | None] | None,
    progress: bool = True,
) -> tuple[Any, Counter]:
    """The analogue index of the training ``records`` (each product's and reactant set's fingerprint bits and
    the output indices of its templates) and the reasons for every record left out of it."""
    from zoo.models.analogues import NO_TEMPLATE, AnalogueIndex

    processor = model.processor.processors[model.modality]
    general = general_templates if general_templates is not None else [None] * len(records)
    products, reactants, pairs, left_out = [], [], [], Counter()
    rows = zip(records, templates, general, strict=True)
    for position, (record, template, general_template) in enumerate(tqdm(rows, total=len(records), desc="indexing analogues",
                                                                         unit="rxn", disable=not progress)):
        if record.error is not None:
            left_out["unreadable row"] += 1
            continue
        try:
            product = np.flatnonzero(processor.fingerprint(record.product, position))
            reactant_set = np.flatnonzero(processor.fingerprint(record.reactants, position))
        except InvalidInputError:
            left_out["invalid molecule"] += 1
            continue
        narrow = model.library.index(template) if template is not None else None
        broad = model.general_library.index(general_template) if general_template is not None else None
        products.append(product)
        reactants.append(reactant_set)
        pairs.append((NO_TEMPLATE if narrow is None else narrow,
                      NO_TEMPLATE if broad is None else len(model.library) + broad))
    return AnalogueIndex.build(products, reactants, pairs, model.encoder.hidden_size), left_out


def fit_analogue_reranker(
    model: Any, held_out: Sequence[Any], progress: bool = True, batch_size: int = 64
) -> dict[str, Any]:
    """Fit the reranker of ``model``'s analogue index on ``held_out`` mapped reactions (their products'
    outcomes and recorded reactants) and attach the fitted weights; returns what it used and its top-1 before
    and after, on those same reactions."""
    from tasks.data.manifest import Row
    from tasks.metrics.smiles import canonicalize_smiles
    from zoo.evaluation.batching import build_isolating, chunks
    from zoo.models.analogues import FEATURES, fit_reranker, reranker_logits

    usable = [r for r in held_out if r.error is None]
    lists, failed = [], Counter()
    with tqdm(total=len(usable), desc="fitting the analogue reranker", unit="product", disable=not progress) as bar:
        for batch in chunks([Row(i, {"record": r}) for i, r in enumerate(usable)], batch_size):
            found, good, failures = build_isolating(batch, lambda rows: model.outcomes([r.fields["record"].product for r in rows]))
            if failures:
                failed["invalid product"] += len(failures)
            for row, evidence in zip(good, found or [], strict=True):
                answer = canonicalize_smiles(row.fields["record"].reactants)
                smiles = [e.smiles for e in evidence]
                lists.append((model.candidate_features(row.fields["record"].product, evidence) if evidence
                              else torch.zeros(0, len(FEATURES)), smiles.index(answer) if answer in smiles else -1))
            bar.update(len(batch))
    reranker = fit_reranker(lists)
    model.attach_analogues(model.analogues.with_reranker(reranker))
    top1_before = sum(y == 0 for _, y in lists) / max(len(lists), 1)
    top1_after = sum(y >= 0 and int(reranker_logits(reranker, x).argmax()) == y for x, y in lists) / max(len(lists), 1)
    return {"held_out": len(usable), "failed": dict(failed), "answer_among_outcomes": sum(y >= 0 for _, y in lists),
            "linear_weights": dict(zip(FEATURES, (round(w, 4) for w in reranker["weights"].tolist()), strict=True)),
            "held_out_top1_before": round(top1_before, 4), "held_out_top1_after": round(top1_after, 4)}

