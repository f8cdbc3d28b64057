"""Training data: task rows -> examples (bad rows kept aside, with their reason) -> a seeded batch plan -> batches.

A ``MultimodalLM`` example is the task's prompt (formatted exactly as the evaluation runners do) with the
row's reference as the answer (after the prompt for a causal LM, the decoder's labels for an encoder–decoder);
a ``DualEncoder`` example is an (item, caption) pair; a ``Predictor`` example is an item and its labels (NaN
where missing). A task with a ``split`` trains on its train part only. Every row is processed
once up front, so a row that cannot be used (unreadable, a missing field, an item the processor rejects) is
reported before training starts instead of failing a batch later; the same pass measures each example's
length for length grouping and packing, and its answer tokens for the loss normalisation.

The batch plan is one stream: the seeded permutation of epoch 0, then of epoch 1, ... Batches are cut from
the stream, so every batch is full and no example is dropped (the last batch may take a few examples of the
next epoch's order), and the data order is a pure function of (seed, examples, batch settings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.config import TaskConfig
from tasks.data.manifest import Row, read_rows
from tasks.data.splits import rows_in_split
from zoo.evaluation.batching import build_isolating, chunks
from zoo.evaluation.fields import item_checker
from zoo.processing import IGNORE_INDEX
from zoo.training.config import TrainingError
from zoo.training.stages import is_dual_encoder, is_predictor, is_seq2seq_lm

MEGABATCH_FACTOR = 50  # length grouping sorts within windows of 50 batches (as transformers' LengthGroupedSampler)


@dataclass(frozen=True)
class Example:
    """One usable row: its position in the data file, the model inputs, and its measured sizes."""

    index: int
    source: str
    prompt: str | None
    target: str
    items: dict[str, list[Any]] = field(default_factory=dict)
    length: int = 1
    label_tokens: int = 0
    labels: tuple[float, ...] = ()


@dataclass
class TrainingData:
    """The examples, and every row that could not be used (``index``, ``source``, ``stage``, ``error``)."""

    examples: list[Example]
    failed_rows: list[dict[str, Any]]
    num_rows: int


def target_of(task: TaskConfig, row: Row) -> str:
    """The answer to train on: the reference column (its first element if a list), or for a multiple-choice
    task the right option."""
    if task.kind == "multiple-choice":
        return str(row.fields[task.column("options")][int(row.fields[task.column("answer")])])
    column = task.column("reference")
    if column not in row.fields:
        raise KeyError(f"row has no {column!r} field (the task's reference column)")
    value = row.fields[column]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"row's {column!r} list is empty")
        value = value[0]
    return str(value)


def _example(model: Any, task: TaskConfig, row: Row, check: Callable[[Any], Any]) -> Example:
    """One row as a training example; its item must pass the task's ``item_checks`` (``check``), as in evaluation."""
    from zoo.evaluation.fields import scored_reference
    from zoo.evaluation.runners import _prompt

    if is_predictor(model):
        labels = tuple(scored_reference(task, row))
        return Example(row.index, row.source, None, "", {model.modality: [check(row.fields[task.column("item")])]},
                       labels=labels)
    items = {task.modality: [check(row.fields[task.column("item")])]} if task.modality else {}
    if is_dual_encoder(model):
        return Example(row.index, row.source, None, target_of(task, row), items)
    return Example(row.index, row.source, _prompt(task, model, row), target_of(task, row), items)


def build_examples(model: Any, task: TaskConfig, path: str | Path) -> TrainingData:
    """Read ``path`` with the task's reader and turn each row into an example or a reported failure."""
    if is_dual_encoder(model) and not task.modality:
        raise TrainingError(f"task {task.name!r} has no modality; a DualEncoder trains on (item, caption) pairs")
    if is_predictor(model) != (task.kind == "property"):
        raise TrainingError(f"task {task.name!r} is of kind {task.kind!r}; a model with a property head trains on a "
                            "task of kind 'property', and only such a model does")
    rows = read_rows(task.reader, path, task.column("item"), task.modality)
    split = task.split_spec
    if split is not None:
        rows = rows_in_split(rows, dataclasses.replace(split, part="train"), task.column("item"))
    if not rows:
        raise TrainingError(f"{path} has no rows for task {task.name!r}")
    failed: list[dict[str, Any]] = []
    candidates: list[Example] = []
    check = item_checker(task)
    for row in rows:
        if not row.ok:
            failed.append({"index": row.index, "source": row.source, "stage": "read", "error": row.error})
            continue
        try:
            candidates.append(_example(model, task, row, check))
        except (KeyError, ValueError, IndexError, TypeError) as err:
            failed.append({"index": row.index, "source": row.source, "stage": "fields", "error": f"{type(err).__name__}: {err}"})
    examples: list[Example] = []
    for chunk in chunks(candidates, 32):
        measured, _, errors = build_isolating(chunk, lambda c: _measure(model, c))
        examples.extend(measured or [])
        failed.extend(
            {"index": e.index, "source": e.source, "stage": "input", "error": errors[e.index]}
            for e in chunk if e.index in errors
        )
    return TrainingData(examples, sorted(failed, key=lambda f: f["index"]), len(rows))


def _measure(model: Any, examples: Sequence[Example]) -> list[Example]:
    """Process ``examples`` as the collator will (raising on a bad item) and record their sizes."""
    from dataclasses import replace

    if is_predictor(model):
        model.processor(model.modality, [e.items[model.modality][0] for e in examples])
        return list(examples)
    if is_dual_encoder(model):
        modality = next(iter(examples[0].items))
        model.processor(modality, [e.items[modality][0] for e in examples])
        model.processor("text", [e.target for e in examples])
        return list(examples)
    batch = model.processor(
        [e.prompt for e in examples], _items(examples), targets=[e.target for e in examples], padding_side="right"
    )
    lengths = batch["attention_mask"].sum(1).tolist()
    answers = (model.label_targets(batch["labels"]) != IGNORE_INDEX).sum(1).tolist()
    return [replace(e, length=int(n), label_tokens=int(a)) for e, n, a in zip(examples, lengths, answers, strict=True)]


def _items(examples: Sequence[Example]) -> dict[str, list[list[Any]]] | None:
    modalities = sorted({m for e in examples for m in e.items})
    return {m: [e.items.get(m, []) for e in examples] for m in modalities} or None


def batch_plan(lengths: Sequence[int], batch_size: int, num_batches: int, seed: int, grouped: bool) -> list[list[int]]:
    """``num_batches`` batches of example positions, cut from the stream of per-epoch permutations.

    Epoch ``e``'s permutation comes from ``numpy.random.default_rng([seed, e])``. ``grouped`` sorts each
    window of ``MEGABATCH_FACTOR`` batches by length (longest first), so batches hold similar lengths.
    """
    stream: list[int] = []
    epoch = 0
    while len(stream) < num_batches * batch_size:
        order = np.random.default_rng([seed, epoch]).permutation(len(lengths)).tolist()
        if grouped:
            window = MEGABATCH_FACTOR * batch_size
            order = [i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lambda i: -lengths[i])]
        stream.extend(order)
        epoch += 1
    return [stream[b * batch_size : (b + 1) * batch_size] for b in range(num_batches)]


def plan_sha256(plan: Sequence[Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps(plan, separators=(",", ":")).encode()).hexdigest()


class ExampleDataset:
    """A map-style dataset over the examples (the batch plan picks them)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, position: int) -> Example:
        return self.examples[position]


class PlanSampler:
    """A batch sampler that yields the plan's batches in order; accelerate splits each across processes."""

    drop_last = False

    def __init__(self, plan: Sequence[Sequence[int]], batch_size: int) -> None:
        self.plan = [list(b) for b in plan]
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.plan)

    def __len__(self) -> int:
        return len(self.plan)


class LMCollator:
    """Examples -> one ``MultimodalLM`` training batch, right padded or packed.

    A packed batch is one row: the examples concatenated with no padding, position ids restarting at 0 for
    each, and ``cu_seq_lens`` marking where each starts, which the packed attention
    (:mod:`zoo.training.packing`) keeps inside each example. Items stay in placeholder order, so the model's
    feature scatter is unchanged.
    """

    def __init__(self, processor: Any, packed: bool) -> None:
        self.processor = processor
        self.packed = packed

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        from zoo.models.multimodal_lm import position_ids_from_mask

        batch = self._process(examples)
        if self.packed:
            return self.pack(batch)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "position_ids": position_ids_from_mask(batch["attention_mask"]),
            "labels": batch["labels"],
            "modality_inputs": batch["modality_inputs"],
        }

    def _process(self, examples: Sequence[Example]) -> Any:
        return self.processor(
            [e.prompt for e in examples], _items(examples), targets=[e.target for e in examples], padding_side="right"
        )

    @staticmethod
    def pack(batch: Any) -> dict[str, Any]:
        """A right-padded processor batch as one packed row."""
        from zoo.training.packing import cu_seq_lens

        lengths = batch["attention_mask"].sum(1).tolist()
        real = batch["attention_mask"].bool()
        modality_inputs = {
            modality: {**inputs, "items_per_sample": inputs["items_per_sample"].sum().reshape(1)}
            for modality, inputs in batch["modality_inputs"].items()
        }
        return {
            "input_ids": batch["input_ids"][real][None],
            "attention_mask": None,
            "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
            "labels": batch["labels"][real][None],
            "modality_inputs": modality_inputs,
            "cu_seq_lens": cu_seq_lens(lengths),
        }


class Seq2SeqCollator(LMCollator):
    """Examples -> one ``MultimodalSeq2SeqLM`` training batch: the prompts (right padded) for the encoder, the
    answers as the decoder's labels. Never packed: the encoder would attend across the packed examples."""

    def __init__(self, processor: Any) -> None:
        super().__init__(processor, packed=False)

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        batch = self._process(examples)
        return {key: batch[key] for key in ("input_ids", "attention_mask", "labels", "modality_inputs")}


class PairCollator:
    """Examples -> ``DualEncoder`` inputs: the items of one modality and their captions."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        modality = next(iter(examples[0].items))
        return {
            "modality": modality,
            "inputs": self.processor(modality, [e.items[modality][0] for e in examples]).inputs,
            "text_inputs": self.processor("text", [e.target for e in examples]).inputs,
        }


class PropertyCollator:
    """Examples -> ``Predictor`` inputs: the processed items and their labels ``[B, targets]`` (NaN = missing)."""

    def __init__(self, processor: Any, modality: str) -> None:
        self.processor, self.modality = processor, modality

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        return {
            "inputs": self.processor(self.modality, [e.items[self.modality][0] for e in examples]).inputs,
            "labels": torch.tensor([e.labels for e in examples], dtype=torch.float32),
        }


class CachedPropertyCollator:
    """Examples -> ``Predictor`` inputs from the frozen encoder's cached pooled features."""

    def __init__(self, pooled: torch.Tensor, positions: dict[int, int]) -> None:
        self.pooled, self.positions = pooled, positions

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        rows = torch.tensor([self.positions[e.index] for e in examples])
        return {"pooled": self.pooled[rows], "labels": torch.tensor([e.labels for e in examples], dtype=torch.float32)}


def make_collator(model: Any, config: Any) -> Any:
    """The collator that turns a plan's examples into the model's training batch."""
    if is_predictor(model):
        return PropertyCollator(model.processor, model.modality)
    if is_dual_encoder(model):
        return PairCollator(model.processor)
    if is_seq2seq_lm(model):
        return Seq2SeqCollator(model.processor)
    return LMCollator(model.processor, packed=config.batching == "packed")


class CachedPairCollator:
    """Examples -> ``DualEncoder`` inputs from cached pooled tower outputs (frozen towers are run once)."""

    def __init__(self, modality: str, pooled: torch.Tensor, text_pooled: torch.Tensor, positions: dict[int, int]) -> None:
        self.modality, self.pooled, self.text_pooled, self.positions = modality, pooled, text_pooled, positions

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        rows = torch.tensor([self.positions[e.index] for e in examples])
        return {"modality": self.modality, "pooled": self.pooled[rows], "text_pooled": self.text_pooled[rows]}


def frozen_tower_features(
    model: Any, examples: Sequence[Example], batch_size: int, progress: bool
) -> CachedPairCollator | CachedPropertyCollator | None:
    """For a ``DualEncoder`` whose towers are all frozen (``align``) or a ``Predictor`` whose encoder is frozen
    (``head``), run the encoders once over the examples and return a collator serving the pooled outputs
    (SAIL-style: the heads then train in seconds per epoch); None when an encoder trains. The encoders are in
    eval mode, so the features equal those of the uncached path up to float rounding from different padding."""
    if not (is_dual_encoder(model) or is_predictor(model)):
        return None
    towers = [model.encoder] if is_predictor(model) else [*model.towers.values(), model.text_tower]
    if any(p.requires_grad for tower in towers for p in tower.parameters()):
        return None
    from tqdm.auto import tqdm

    modality = model.modality if is_predictor(model) else next(iter(examples[0].items))
    pooled, text_pooled = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(examples), batch_size), desc="caching frozen encoder features",
                          disable=not progress):
            chunk = examples[start : start + batch_size]
            inputs = model.processor(modality, [e.items[modality][0] for e in chunk]).inputs
            if is_predictor(model):
                pooled.append(model.run_encoder(model.encoder, inputs).pooled.float().cpu())
                continue
            text_inputs = model.processor("text", [e.target for e in chunk]).inputs
            pooled.append(model.run_encoder(model.towers[modality], inputs).pooled.float().cpu())
            text_pooled.append(model.run_encoder(model.text_tower, text_inputs).pooled.float().cpu())
    positions = {e.index: i for i, e in enumerate(examples)}
    if is_predictor(model):
        return CachedPropertyCollator(torch.cat(pooled), positions)
    return CachedPairCollator(modality, torch.cat(pooled), torch.cat(text_pooled), positions)
