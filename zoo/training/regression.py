"""Train a one-target regression :class:`~zoo.models.predictor.Predictor`: the head on frozen features, then
everything together.

This is linear-probe-then-fine-tune (Kumar et al., ICLR 2022): the head first learns on features computed once
(cheap, many epochs), so that fine-tuning starts from a head that already fits and does not wreck the
pretrained encoder with the gradients of a random one. Targets are standardised with the training set's mean
and standard deviation. Every training row that cannot be used is reported with its ``file:line`` and reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tasks.data.manifest import Row
from tasks.data.text import finite_number
from zoo.evaluation.batching import build_isolating, chunks
from zoo.io import atomic_write
from zoo.processing import move_to


@dataclass(frozen=True)
class RegressionSettings:
    """How a regressor trains. ``head_epochs`` on frozen features, then ``finetune_epochs`` of the whole model
    (0 keeps the encoder frozen). Learning rates are per part; in fine-tuning the head's is ``head_lr`` x
    ``finetune_head_lr_scale``."""

    head_epochs: int = 150
    finetune_epochs: int = 0
    batch_size: int = 64
    finetune_batch_size: int = 128
    head_lr: float = 1e-3
    encoder_lr: float = 1e-5
    finetune_head_lr_scale: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head_epochs < 0 or self.finetune_epochs < 0 or self.head_epochs + self.finetune_epochs == 0:
            raise ValueError("head_epochs and finetune_epochs must be >= 0, and at least one of them positive")
        if self.batch_size < 1 or self.finetune_batch_size < 1:
            raise ValueError("batch sizes must be at least 1")


@dataclass(frozen=True)
class RegressionFit:
    """What training used: rows, the target scale, the last epoch's mean loss per phase, rows it could not use."""

    rows_used: int
    target_mean: float
    target_std: float
    head_loss: float | None
    finetune_loss: float | None
    failed_rows: dict[str, str]


def labelled_rows(rows: Sequence[Row], item_column: str, target_column: str) -> tuple[list[Row], dict[str, str]]:
    """The rows with an item and a finite numeric target, and ``{file:line: reason}`` for every other row."""
    good, failed = [], {}
    for row in rows:
        if not row.ok:
            failed[row.source] = row.error or "unreadable row"
            continue
        item, target = row.fields.get(item_column), row.fields.get(target_column)
        value = finite_number(target)
        if not isinstance(item, str) or not item.strip():
            failed[row.source] = f"{item_column!r} must be a non-empty string, got {item!r:.40}"
        elif value is None:
            failed[row.source] = f"{target_column!r} must be a finite number, got {target!r:.40}"
        else:
            good.append(Row(row.index, {"item": item, "target": value}, source=row.source))
    return good, failed


def _batches(model: Any, rows: Sequence[Row], batch_size: int, failed: dict[str, str]) -> list[tuple[dict[str, Any], list[Row]]]:
    """Processed inputs for ``rows`` in order, each bad item moved to ``failed`` (so training never stops on one)."""
    batches = []
    for chunk in chunks(list(rows), batch_size):
        batch, good, bad = build_isolating(chunk, lambda rs: model.processor(model.modality, [r.fields["item"] for r in rs]).inputs)
        sources = {r.index: r.source for r in chunk}
        failed.update({sources[i]: message for i, message in bad.items()})
        if batch is not None:
            batches.append((dict(batch), good))
    return batches


@torch.no_grad()
def _frozen_features(model: Any, batches: list[tuple[dict[str, Any], list[Row]]], progress: bool) -> torch.Tensor:
    model.eval()
    pooled = [
        model.run_encoder(model.encoder, inputs).pooled.float()
        for inputs, _ in tqdm(batches, desc="features for the head", unit="batch", disable=not progress)
    ]
    return torch.cat(pooled)


def _head_phase(model: Any, features: torch.Tensor, targets: torch.Tensor, settings: RegressionSettings,
                generator: torch.Generator, progress: bool) -> float:
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=settings.head_lr, weight_decay=settings.weight_decay)
    model.train()
    loss_sum, steps = 0.0, 0
    for _ in tqdm(range(settings.head_epochs), desc="training the head (frozen encoder)", unit="epoch", disable=not progress):
        loss_sum, steps = 0.0, 0
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            picks = order[start : start + settings.batch_size]
            loss = torch.nn.functional.mse_loss(model.head(features[picks]).squeeze(-1), targets[picks])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
    return loss_sum / max(steps, 1)


def _finetune_phase(model: Any, rows: list[Row], settings: RegressionSettings, generator: torch.Generator,
                    failed: dict[str, str], progress: bool) -> float:
    optimizer = torch.optim.AdamW(
        [
            {"params": model.head.parameters(), "lr": settings.head_lr * settings.finetune_head_lr_scale},
            {"params": model.encoder.parameters(), "lr": settings.encoder_lr},
        ],
        weight_decay=settings.weight_decay,
    )
    model.train()
    loss_sum, steps = 0.0, 0
    with tqdm(total=settings.finetune_epochs, desc="fine-tuning encoder and head", unit="epoch", disable=not progress) as bar:
        for _ in range(settings.finetune_epochs):
            loss_sum, steps = 0.0, 0
            shuffled = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            for inputs, good in _batches(model, shuffled, settings.finetune_batch_size, failed):
                targets = torch.tensor([r.fields["target"] for r in good], device=model.device)
                standardised = (targets - model.target_mean) / model.target_std
                loss = torch.nn.functional.mse_loss(model.head_output(**move_to(inputs, model.device)).squeeze(-1), standardised)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum, steps = loss_sum + loss.item(), steps + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(steps, 1):.4f}")
    return loss_sum / max(steps, 1)


def fit_regressor(model: Any, rows: Sequence[Row], settings: RegressionSettings, progress: bool = True) -> RegressionFit:
    """Train ``model`` on ``rows`` (fields ``item`` and ``target``, as :func:`labelled_rows` gives them):
    standardise the targets, fit the head on frozen features, then fine-tune everything. Seeded: the same
    rows and settings give the same weights."""
    failed: dict[str, str] = {}
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout
    batches = _batches(model, rows, settings.batch_size, failed)
    used = [row for _, good in batches for row in good]
    if len(used) < 2:
        raise ValueError(f"only {len(used)} training row(s) could be used; failed rows: {dict(list(failed.items())[:5])}")
    targets = torch.tensor([r.fields["target"] for r in used])
    model.set_target_scale(targets)
    standardised = ((targets - model.target_mean.cpu()) / model.target_std.cpu()).to(model.device)
    head_loss = finetune_loss = None
    if settings.head_epochs:
        features = _frozen_features(model, batches, progress)
        head_loss = _head_phase(model, features, standardised, settings, generator, progress)
    if settings.finetune_epochs:
        finetune_loss = _finetune_phase(model, used, settings, generator, failed, progress)
    model.eval()
    return RegressionFit(len(used), model.target_mean.item(), model.target_std.item(), head_loss, finetune_loss, failed)


RECIPE_KEYS = ("item_column", "target_column", "train_range", "progress")


def train_from_recipe(model: Any, task: Any, data: Path, settings: dict[str, Any], output_dir: Path) -> Any:
    """A card recipe's ``stage: regression``: train on the ``train_range`` rows of ``data`` (which must not
    overlap the task's scored ``row_range``); ``fit.json`` in ``output_dir`` records the fit and every row
    that could not be used."""
    from tasks.config import check_row_range, rows_in_range
    from tasks.data.manifest import read_rows
    from zoo.spec import SpecError

    allowed = (*RECIPE_KEYS, *(f.name for f in dataclasses.fields(RegressionSettings)))
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise SpecError(f"regression recipe: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    train_range = check_row_range(settings.get("train_range", [0.0, 1.0]), "regression recipe train_range")
    if task.row_range is not None:
        test = check_row_range(task.row_range, f"task {task.name} row_range")
        if train_range[0] < test[1] and test[0] < train_range[1]:
            raise SpecError(f"recipe train_range {list(train_range)} overlaps the rows task {task.name} scores ({list(test)})")
    item_column = settings.get("item_column", task.column("item"))
    rows = rows_in_range(read_rows(task.reader, data, item_column), train_range)
    good, failed = labelled_rows(rows, item_column, settings.get("target_column", task.column("reference")))
    fit_settings = RegressionSettings(**{k: settings[k] for k in settings if k not in RECIPE_KEYS})
    fit = fit_regressor(model, good, fit_settings, progress=bool(settings.get("progress", True)))
    summary = {**dataclasses.asdict(fit), "failed_rows": {**failed, **fit.failed_rows}, "rows_read": len(rows),
               "settings": dataclasses.asdict(fit_settings)}
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(output_dir / "fit.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    if summary["failed_rows"]:
        print(f"{len(summary['failed_rows'])} training row(s) could not be used; see {output_dir / 'fit.json'}")
    return model
