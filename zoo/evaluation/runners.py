"""The four ways a task asks a model: generate, score options, retrieve, classify zero-shot.

Each runner takes the model, the task, the readable rows and a batch size, and returns an ``Outcome``:
one prediction per row (``None`` for a failed row), the failures with their stage, and for the
embedding tasks the finished metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from tasks.config import TaskConfig
from tasks.data.manifest import Row
from zoo.evaluation.batching import build_isolating, chunks, embed_isolating


@dataclass
class Outcome:
    predictions: dict[int, Any] = field(default_factory=dict)
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # row index -> (stage, message)
    metrics: dict[str, float] | None = None
    per_row: dict[int, float] | None = None
    rate_keys: tuple[str, ...] = ()  # metrics that are means over rows: unreadable rows extend them as misses


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="row", disable=not enabled, leave=False)


def _prompt(task: TaskConfig, model: Any, row: Row) -> str:
    placeholder = model.processor.placeholders.get(task.modality, "") if task.modality else ""
    return task.prompt_template.format_map({**row.fields, "placeholder": placeholder})


def _items(task: TaskConfig, rows: Sequence[Row]) -> dict[str, list[list[Any]]] | None:
    if not task.modality:
        return None
    return {task.modality: [[row.fields[task.column("item")]] for row in rows]}


def _record(outcome: Outcome, failed: dict[int, str], stage: str) -> None:
    outcome.failures.update({i: (stage, message) for i, message in failed.items()})


def run_generate(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Batched generation with left padding; ``num_return_sequences > 1`` gives a ranked list per row."""
    outcome = Outcome()
    settings = {"do_sample": False, "max_new_tokens": 32, **task.generation}
    per_row = int(settings.get("num_return_sequences", 1))
    bar = _progress(len(rows), f"{task.name}: generate", progress)
    for chunk in chunks(rows, batch_size):
        batch, good, failed = build_isolating(
            chunk, lambda rs: model.processor([_prompt(task, model, r) for r in rs], _items(task, rs), padding_side="left")
        )
        _record(outcome, failed, "input")
        if batch is not None:
            texts = model.processor.batch_decode(model.generate(**batch.to(model.device), **settings))
            for j, row in enumerate(good):
                ranked = texts[j * per_row : (j + 1) * per_row]
                outcome.predictions[row.index] = ranked if per_row > 1 else ranked[0]
        bar.update(len(chunk))
    bar.close()
    return outcome


def answer_log_likelihoods(model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probabilities of the answer tokens of each row, and how many answer tokens it has."""
    labels = batch["labels"]
    logits = model(**batch).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(-1), mask.sum(-1)


def run_multiple_choice(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Score each option as the answer to the prompt; predictions are (log-likelihoods, token counts)."""
    outcome = Outcome()
    bar = _progress(len(rows), f"{task.name}: score options", progress)

    def build(rs: Sequence[Row]) -> Any:
        prompts, targets, items = [], [], []
        for r in rs:
            options = list(r.fields[task.column("options")])
            if len(options) < 2:
                raise ValueError(f"row needs at least two options, got {len(options)}")
            prompts += [_prompt(task, model, r)] * len(options)
            targets += [str(o) for o in options]
            items += [[r.fields[task.column("item")]]] * len(options) if task.modality else []
        return model.processor(prompts, {task.modality: items} if task.modality else None, targets=targets, padding_side="left")

    for chunk in chunks(rows, max(1, batch_size // 4)):
        batch, good, failed = build_isolating(chunk, build)
        _record(outcome, failed, "input")
        if batch is not None:
            with torch.no_grad():
                ll, counts = answer_log_likelihoods(model, batch.to(model.device))
            start = 0
            for row in good:
                n = len(row.fields[task.column("options")])
                outcome.predictions[row.index] = (ll[start : start + n].tolist(), counts[start : start + n].tolist())
                start += n
        bar.update(len(chunk))
    bar.close()
    return outcome


def _embed_rows(model: Any, modality: str, values: Sequence[tuple[int, Any]], batch_size: int, outcome: Outcome, bar: tqdm) -> dict[int, torch.Tensor]:
    """Embeddings keyed by row index; rows whose item fails are recorded and left out."""
    embedded, failed = embed_isolating(
        values,
        lambda items: model.processor(modality, items),
        lambda batch: model.embed_processed(modality, batch.inputs),
        batch_size,
        on_chunk=bar.update,
    )
    _record(outcome, failed, f"{modality} input")
    return embedded


def run_retrieval(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Item <-> text retrieval over the rows (each row: one item, one or more captions)."""
    from tasks.metrics import retrieval_metrics

    outcome = Outcome()
    captions: list[str] = []
    caption_owner: list[int] = []
    for row in rows:
        texts = row.fields[task.column("reference")]
        for text in [texts] if isinstance(texts, str) else texts:
            captions.append(text)
            caption_owner.append(row.index)
    bar = _progress(len(rows) + len(captions), f"{task.name}: embed", progress)
    items = _embed_rows(model, task.modality, [(r.index, r.fields[task.column("item")]) for r in rows], batch_size, outcome, bar)
    texts = _embed_rows(model, "text", list(enumerate(captions)), batch_size, Outcome(), bar)
    bar.close()
    ok_items = sorted(items)
    item_pos = {i: k for k, i in enumerate(ok_items)}
    caption_ids = sorted(texts)
    text_matrix = torch.stack([texts[c] for c in caption_ids])
    metrics: dict[str, float] = {}
    per_row = dict.fromkeys((r.index for r in rows), 0.0)
    if ok_items:
        item_matrix = torch.stack([items[i] for i in ok_items])
        positives = [[c for c, owner in enumerate(caption_owner) if owner == i] for i in ok_items]
        forward = retrieval_metrics(item_matrix, text_matrix, positives, **task.metric_options)
        reachable = [c for c in caption_ids if caption_owner[c] in item_pos]
        backward = retrieval_metrics(
            text_matrix[reachable], item_matrix, [[item_pos[caption_owner[c]]] for c in reachable], **task.metric_options
        ) if reachable else {}
        scale_items, scale_texts = len(ok_items) / len(rows), len(reachable) / len(captions)
        for name, value in forward.items():
            metrics[f"{task.modality}_to_text/{name}"] = value * scale_items if _is_rate(name) else value
        for name, value in backward.items():
            metrics[f"text_to_{task.modality}/{name}"] = value * scale_texts if _is_rate(name) else value
        top1 = (item_matrix @ text_matrix.T).argmax(1).tolist()
        per_row.update({i: float(caption_owner[top1[k]] == i) for k, i in enumerate(ok_items)})
    outcome.metrics = metrics
    outcome.per_row = per_row
    outcome.rate_keys = tuple(k for k in metrics if _is_rate(k.split("/")[-1]))
    outcome.predictions = {i: f"top-1 caption: {captions[top1[k]]!r}" for k, i in enumerate(ok_items)} if ok_items else {}
    return outcome


def _is_rate(name: str) -> bool:
    """Recall and mAP average over queries (a failed query contributes 0); ranks do not scale."""
    return name.startswith(("recall", "mAP"))


def run_zero_shot_classification(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Classify items against ``class_names`` × ``class_templates`` text embeddings (template ensemble)."""
    from tasks.metrics import ensemble_class_embeddings

    outcome = Outcome()
    classes = task.class_names or sorted({str(r.fields[task.column("label")]) for r in rows})
    prompts = [t.format(c) for c in classes for t in task.class_templates]
    bar = _progress(len(rows) + len(prompts), f"{task.name}: embed", progress)
    text = _embed_rows(model, "text", list(enumerate(prompts)), batch_size, Outcome(), bar)
    class_matrix = ensemble_class_embeddings(torch.stack([text[i] for i in range(len(prompts))]).view(len(classes), len(task.class_templates), -1))
    items = _embed_rows(model, task.modality, [(r.index, r.fields[task.column("item")]) for r in rows], batch_size, outcome, bar)
    bar.close()
    labels = {r.index: classes.index(str(r.fields[task.column("label")])) if str(r.fields[task.column("label")]) in classes else -1 for r in rows}
    top5: dict[int, list[int]] = {i: (v @ class_matrix.T).topk(min(5, len(classes))).indices.tolist() for i, v in items.items()}
    n = len(rows)
    predicted = {r.index: top5[r.index][0] if r.index in top5 else -1 for r in rows}  # a failed row is wrong
    present = sorted({c for c in labels.values() if c >= 0})
    recalls = [
        sum(predicted[i] == c for i in labels if labels[i] == c) / sum(labels[i] == c for i in labels) for c in present
    ]
    outcome.metrics = {
        "acc@1": sum(predicted[i] == labels[i] for i in labels) / n,
        "acc@5": sum(labels[i] in top5.get(i, []) for i in labels) / n,
        "mean_per_class_recall": sum(recalls) / len(recalls) if recalls else 0.0,
    }
    outcome.rate_keys = ("acc@1", "acc@5")
    outcome.per_row = {i: float(predicted[i] == labels[i]) for i in labels}
    outcome.predictions = {i: classes[t[0]] for i, t in top5.items()}
    return outcome


def run_linear_probe(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Frozen features -> logistic-regression probe on a scaffold split (MoleculeNet protocol); test ROC-AUC.

    Label columns: ``metric_options.label_columns`` (default: every column but the item); empty cells are
    missing labels. Items that fail go to the test split with an uninformative score, so they count."""
    import numpy as np

    from zoo.evaluation.probe import embed_items, linear_probe, scaffold_splits_keeping_failures

    item_column = task.column("item")
    columns = task.metric_options.get("label_columns") or [c for c in rows[0].fields if c not in (item_column, task.column("id"))]
    labels = np.array(
        [[float(r.fields[c]) if str(r.fields.get(c, "")).strip() != "" else np.nan for c in columns] for r in rows]
    )
    items = [r.fields[item_column] for r in rows]
    features, failed = embed_items(model, items, batch_size)
    splits = scaffold_splits_keeping_failures(items, failed)
    result = linear_probe(features, labels, splits, failed)
    outcome = Outcome()
    outcome.failures = {rows[i].index: ("input", message) for i, message in failed.items()}
    outcome.metrics = {"test_roc_auc": result.test_roc_auc, "valid_roc_auc": result.valid_roc_auc, "l2": result.l2,
                       "num_tasks": labels.shape[1], "train_valid_test": "/".join(map(str, result.split_sizes))}
    split_of = {i: name for name, part in zip(("train", "valid", "test"), splits, strict=True) for i in part}
    outcome.predictions = {rows[i].index: f"{split_of[i]} split" for i in range(len(rows))}
    outcome.per_row = {}
    return outcome


RUNNERS = {
    "linear-probe": run_linear_probe,
    "generate": run_generate,
    "multiple-choice": run_multiple_choice,
    "retrieval": run_retrieval,
    "zero-shot-classification": run_zero_shot_classification,
}
