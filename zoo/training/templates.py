"""Fit a template model's head: each mapped reaction's input (product, or reactants for forward) -> the class
index of its own template in the library. Inputs are featurized once and kept sparse (a Morgan count
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


def labelled_inputs(model: Any, records: Sequence[Any], templates: Sequence[str | None]) -> tuple[list[str], list[int], Counter]:
    """The model's inputs and template labels for ``records`` (with their extracted ``templates``), and the
    reasons for every record left out: no template, or a template the library does not hold."""
    inputs, labels, skipped = [], [], Counter()
    for record, template in zip(records, templates, strict=True):
        label = model.library.index(template) if template is not None else None
        if template is None:
            skipped["no template"] += 1
        elif label is None:
            skipped["template not in the library"] += 1
        else:
            inputs.append(record.product if model.spec.direction == "retro" else record.reactants)
            labels.append(label)
    return inputs, labels, skipped


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
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> TemplateFit:
    """Train ``model`` (a :class:`~zoo.models.template_model.TemplateModel` with a ``fingerprint`` encoder and
    its library attached) with cross-entropy over the library, Adam, ``epochs`` passes in a seeded order.
    Returns what it used and what it skipped, by reason."""
    inputs, labels, skipped = labelled_inputs(model, records, templates)
    features, kept = featurize(model, inputs, skipped, progress)
    targets = torch.tensor([labels[k] for k in kept])
    if not kept:
        raise ValueError(f"no reaction could be used for training ({dict(skipped)}); check the data and the library")
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
                logits = model(fingerprints=features.dense(picks).to(model.device))
                loss = torch.nn.functional.cross_entropy(logits, targets[picks].to(model.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return TemplateFit(len(kept), epochs, float(loss.item()), dict(skipped))


RECIPE_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "workers", "min_count", "progress")


def train_from_recipe(model: Any, data: Path, settings: dict[str, Any], output_dir: Path) -> Any:
    """A card recipe's ``stage: template-head``: the template library of the mapped reactions in ``data``
    (cached in modalzoo's cache, keyed by the file's sha256) with each template's reaction classes, attached
    to ``model`` and its head fitted;
    ``fit.json`` in ``output_dir`` says what was used and skipped."""
    from tasks.data.templates import read_mapped_reactions, templated_rows
    from zoo.spec import SpecError
    from zoo.weights.sources import cache_dir

    unknown = sorted(set(settings) - set(RECIPE_SETTINGS))
    if unknown:
        raise SpecError(f"template-head recipe: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(RECIPE_SETTINGS)}")
    progress = bool(settings.get("progress", True))
    library, rows = templated_rows(data, cache_dir() / "templates", workers=int(settings.get("workers", 1)),
                                   progress=progress)
    min_count = int(settings.get("min_count", 1))
    library = library.with_min_count(min_count)
    if len(library) != model.spec.num_templates:
        raise SpecError(
            f"{data} gives {len(library)} templates seen at least {min_count} time(s), but the card's "
            f"spec.num_templates is {model.spec.num_templates}; set num_templates to {len(library)}"
        )
    records = list(read_mapped_reactions(data))
    library = library.with_classes(rows, [record.reaction_class for record in records])
    model.attach_library(library)
    fit = fit_template_head(
        model, records, rows, progress=progress,
        **{k: settings[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed") if k in settings},
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {**dataclasses.asdict(fit), "library": len(library), "extraction": library.stats.reasons}
    atomic_write(output_dir / "fit.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return model
