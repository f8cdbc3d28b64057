"""The four ways a task asks a model: generate, score options, retrieve, classify zero-shot.

Each runner takes the model, the task, the rows that passed the field checks (``zoo.evaluation.fields``) and a
batch size, and returns an ``Outcome``: one prediction per row (``None`` for a failed row), the failures with
their stage, and for the embedding tasks the finished metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from tasks.config import TaskConfig
from tasks.data.manifest import Row
from zoo.evaluation.batching import build_isolating, chunks, embed_isolating
from zoo.evaluation.fields import item_checker
from zoo.evaluation.retrieval import captions_of, is_rate, score_retrieval


@dataclass
class Outcome:
    predictions: dict[int, Any] = field(default_factory=dict)
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # row index -> (stage, message)
    metrics: dict[str, float] | None = None
    per_row: dict[int, float] | None = None
    rate_keys: tuple[str, ...] = ()  # metrics that are means over rows: unreadable rows extend them as misses
    extra: dict[str, Any] = field(default_factory=dict)  # more results (e.g. a confusion matrix), copied into them


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="row", disable=not enabled, leave=False)


def _prompt(task: TaskConfig, model: Any, row: Row) -> str:
    placeholder = model.processor.placeholders.get(task.modality, "") if task.modality else ""
    return task.prompt_template.format_map({**row.fields, "placeholder": placeholder})


def _items(task: TaskConfig, rows: Sequence[Row]) -> dict[str, list[list[Any]]] | None:
    if not task.modality:
        return None
    check = item_checker(task)
    return {task.modality: [[check(row.fields[task.column("item")])] for row in rows]}


def _record(outcome: Outcome, failed: dict[int, str], stage: str) -> None:
    outcome.failures.update({i: (stage, message) for i, message in failed.items()})


def run_generate(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Batched generation (left padding for a causal LM; an encoder–decoder's processor pads right);
    ``num_return_sequences > 1`` gives a ranked list per row."""
    outcome = Outcome()
    # 32 new tokens unless the task or the checkpoint's generation defaults (spec.generation) bound the length
    bounded = {"max_length", "max_new_tokens"} & {*task.generation, *getattr(model.spec, "generation", {})}
    settings = {"do_sample": False, **({} if bounded else {"max_new_tokens": 32}), **task.generation}
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


def _run_model_predict(
    model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool,
    predict: Callable[[Sequence[Row]], list[Any]], answer: Callable[[Any], Any],
) -> Outcome:
    """``predict(rows)`` batch by batch, each row's output turned into its ``answer``; a batch that fails is
    retried row by row so each failure is pinned on its row."""
    outcome = Outcome()
    bar = _progress(len(rows), f"{task.name}: predict", progress)
    for chunk in chunks(rows, batch_size):
        outputs, good, failed = build_isolating(chunk, predict)
        _record(outcome, failed, "input")
        for row, output in zip(good, outputs or [], strict=True):
            outcome.predictions[row.index] = answer(output)
        bar.update(len(chunk))
    bar.close()
    return outcome


def run_predict(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """A model's own ranked answers (``model.predict(items, top_k)``, e.g. a template model's reactant sets,
    with ``reaction_classes`` when the task maps the ``reaction_class`` role to a column)."""
    top_k = int(task.generation.get("top_k", 10))
    column = task.column("item")
    given = task.fields.get("reaction_class")  # the class-given protocol: the row's reaction class conditions

    def predict(rs: Sequence[Row]) -> list[Any]:
        classes = {"reaction_classes": [r.fields[given] for r in rs]} if given else {}
        return model.predict([r.fields[column] for r in rs], top_k, **classes)

    return _run_model_predict(model, task, rows, batch_size, progress, predict,
                              lambda candidates: [candidate.smiles for candidate in candidates])


def _predictor_for(model: Any, task: TaskConfig, outputs: list[str] | None) -> None:
    """Refuse a model whose head does not answer ``task`` (another family, other targets or classes)."""
    spec = getattr(model, "spec", None)
    if getattr(spec, "type", None) != "predictor":
        raise ValueError(f"task {task.name!r} ({task.kind}) needs a model with a property head; "
                         f"{type(model).__name__} has none: fine-tune one with `zoo finetune MODEL -t {task.name} ...`")
    if outputs is not None and (spec.head, spec.classes or spec.targets) != (task.target_type, outputs):
        raise ValueError(f"task {task.name!r} needs a {task.target_type} head over {outputs}; this model's head is "
                         f"{spec.head} over {spec.classes or spec.targets}")


def run_regress(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """A one-target regression model's value for each row (``model.predict(items)``)."""
    _predictor_for(model, task, None)
    if model.spec.head != "regression" or len(model.spec.targets) != 1:
        raise ValueError(f"task {task.name!r} scores one value per row; this model's head is {model.spec.head} over "
                         f"{model.spec.targets}")
    column = task.column("item")
    return _run_model_predict(model, task, rows, batch_size, progress,
                              lambda rs: model.predict([r.fields[column] for r in rs]), lambda values: values[0])


def run_property(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """A property model's outputs for each row (``model.predict(items)``). A row whose item cannot be featurized
    is listed and given the model's uninformative answer (``model.prior()``), so it counts in every metric."""
    _predictor_for(model, task, task.class_names if task.target_type == "multiclass" else task.targets)
    column = task.column("item")
    outcome = _run_model_predict(model, task, rows, batch_size, progress,
                                 lambda rs: model.predict([r.fields[column] for r in rs]), lambda values: values)
    prior = model.prior()
    for index in outcome.failures:
        outcome.predictions[index] = prior
    return outcome


def answer_log_likelihoods(model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probabilities of the answer tokens of each row, and how many answer tokens it has; the model
    pairs its logits with the labels they score (``answer_logits``: shifted for a causal LM, not for a seq2seq)."""
    return _summed_log_likelihoods(*model.answer_logits(batch))


def _summed_log_likelihoods(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.float()
    mask = targets != -100
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(-1), mask.sum(-1)


@dataclass
class OptionBatch:
    """A batch of questions' options to score. ``prompts`` holds each question once and ``continuations`` the token
    ids of every option, with ``owners`` naming each option's question, when the model shares a prompt's KV cache
    over its options; otherwise ``prompts`` holds one full prompt-and-option row per option (``continuations``
    None)."""

    prompts: Any
    continuations: list[list[int]] | None = None
    owners: torch.Tensor | None = None


def shares_prompt(model: Any) -> bool:
    """Whether options can reuse their question's KV cache: a causal LM with ``continuation_logits``. An
    encoder-decoder runs the old path, its encoder once per option."""
    language_model = getattr(model, "language_model", None)
    return (hasattr(model, "continuation_logits") and language_model is not None
            and not language_model.config.is_encoder_decoder)


def build_options(
    model: Any, prompts: Sequence[str], items: dict[str, list[list[Any]]] | None, options: Sequence[Sequence[str]]
) -> OptionBatch:
    """Tokenized questions and options (``items[modality][i]``: question ``i``'s items); the option tokens are
    exactly the answer tokens (and EOS) the processor lays out after a prompt."""
    flat = [str(o) for opts in options for o in opts]
    if not shares_prompt(model):
        repeated = {m: [per for per, opts in zip(per_prompt, options, strict=True) for _ in opts]
                    for m, per_prompt in (items or {}).items()}
        flat_prompts = [p for p, opts in zip(prompts, options, strict=True) for _ in opts]
        return OptionBatch(model.processor(flat_prompts, repeated or None, targets=flat, padding_side="left"))
    distinct = list(dict.fromkeys(flat))  # benchmarks reuse option texts ("A".."D", yes/no): tokenize each once
    labels = model.processor([""] * len(distinct), None, targets=distinct, padding_side="right")["labels"]
    tokens = {text: row[row != -100].tolist() for text, row in zip(distinct, labels, strict=True)}
    owners = torch.repeat_interleave(torch.arange(len(options)), torch.tensor([len(o) for o in options]))
    return OptionBatch(model.processor(list(prompts), items, padding_side="left"), [tokens[o] for o in flat], owners)


def score_options(model: Any, options: OptionBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-likelihood (sum over the option's tokens and EOS) and token count of every option, flat in order."""
    batch = options.prompts.to(model.device)
    with torch.no_grad():
        if options.continuations is None:
            return answer_log_likelihoods(model, batch)
        return _summed_log_likelihoods(*model.continuation_logits(batch, options.continuations, options.owners))


def run_multiple_choice(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Score each option as the answer to the prompt; predictions are (log-likelihoods, token counts). A causal
    LM runs each question once and only the options' tokens on its KV cache, ``batch_size`` questions at a time;
    otherwise each option is a full row, ``batch_size // 4`` questions at a time."""
    outcome = Outcome()
    bar = _progress(len(rows), f"{task.name}: score options", progress)

    check = item_checker(task)

    def build(rs: Sequence[Row]) -> OptionBatch:
        options = [list(r.fields[task.column("options")]) for r in rs]
        for opts in options:
            if len(opts) < 2:
                raise ValueError(f"row needs at least two options, got {len(opts)}")
        items = {task.modality: [[check(r.fields[task.column("item")])] for r in rs]} if task.modality else None
        return build_options(model, [_prompt(task, model, r) for r in rs], items, options)

    for chunk in chunks(rows, batch_size if shares_prompt(model) else max(1, batch_size // 4)):
        batch, good, failed = build_isolating(chunk, build)
        _record(outcome, failed, "input")
        if batch is not None:
            ll, counts = score_options(model, batch)
            start = 0
            for row in good:
                n = len(row.fields[task.column("options")])
                outcome.predictions[row.index] = (ll[start : start + n].tolist(), counts[start : start + n].tolist())
                start += n
        bar.update(len(chunk))
    bar.close()
    return outcome


def _embed_rows(
    model: Any, modality: str, values: Sequence[tuple[int, Any]], batch_size: int, outcome: Outcome, bar: tqdm,
    check: Callable[[Any], Any] = lambda item: item,
) -> dict[int, torch.Tensor]:
    """Embeddings keyed by row index; rows whose item fails ``check`` or the model are recorded and left out."""
    embedded, failed = embed_isolating(
        values,
        lambda items: model.processor(modality, [check(item) for item in items]),
        lambda batch: model.embed_processed(modality, batch.inputs),
        batch_size,
        on_chunk=bar.update,
    )
    _record(outcome, failed, f"{modality} input")
    return embedded


def run_retrieval(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Item <-> text retrieval over the rows (each row: one item, one or more captions); every item and caption
    keeps a stable id, and a row whose item or any caption fails is listed and scored as a miss."""
    outcome = Outcome()
    captions = captions_of(rows, task.column("reference"))
    # each distinct caption text is embedded once: equal texts then score exactly alike, and the documented tie
    # rule (lower gallery index first) ranks them, not float noise from where each sat in a padded batch
    first: dict[Any, int] = {}  # text -> the id of its first caption
    owner = {c.id: first.setdefault(c.text if isinstance(c.text, str) else ("not a string", c.id), c.id) for c in captions}
    distinct = [(c.id, c.text) for c in captions if owner[c.id] == c.id]
    bar = _progress(len(rows) + len(distinct), f"{task.name}: embed", progress)
    items = _embed_rows(model, task.modality, [(r.index, r.fields[task.column("item")]) for r in rows], batch_size, outcome, bar,
                        item_checker(task))
    by_text, failed_texts = embed_isolating(
        distinct,
        lambda values: model.processor("text", values),
        lambda batch: model.embed_processed("text", batch.inputs),
        batch_size,
        on_chunk=bar.update,
    )
    bar.close()
    texts = {c.id: by_text[owner[c.id]] for c in captions if owner[c.id] in by_text}
    failed = {c.id: failed_texts[owner[c.id]] for c in captions if owner[c.id] in failed_texts}
    for caption in captions:
        if caption.id in failed:
            outcome.failures.setdefault(caption.owner, ("text input", f"caption {caption.text!r:.60}: {failed[caption.id]}"))
    scores = score_retrieval([r.index for r in rows], captions, items, texts, task.modality, task.metric_options)
    outcome.metrics = scores.metrics
    outcome.per_row = scores.per_row
    outcome.rate_keys = tuple(k for k in scores.metrics if is_rate(k.split("/")[-1]))
    outcome.predictions = {i: f"top-1 caption: {c.text!r}" for i, c in scores.top1.items()}
    return outcome


def run_zero_shot_classification(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Classify items against ``class_names`` x ``class_templates`` text embeddings (template ensemble).

    Without ``class_names`` the classes are the labels of the rows whose item embedded, so a failing row can
    never add a class and move another row's prediction. A failed row is wrong and stays in every denominator."""
    from tasks.metrics import ensemble_class_embeddings, group_means, topk_lower_index_wins

    def confusion_matrix(classes: list[str], labels: dict[int, str], predictions: dict[int, str]) -> dict[str, Any]:
        """Rows by true class (``true_classes``: the classes, then any label that is not one, as a failed row's
        can be) x predicted class (``columns``: the classes, then ``failed`` for rows with no prediction).
        Rows that failed before this runner (unreadable, bad fields) are not here: they have no usable label."""
        true_classes = list(classes) + sorted(set(labels.values()) - set(classes))
        row_of = {c: k for k, c in enumerate(true_classes)}
        column_of = {c: k for k, c in enumerate(classes)}
        counts = [[0] * (len(classes) + 1) for _ in true_classes]
        for i, label in labels.items():
            counts[row_of[label]][column_of[predictions[i]] if i in predictions else len(classes)] += 1
        return {"classes": list(classes), "true_classes": true_classes, "columns": [*classes, "failed"], "counts": counts}

    outcome = Outcome()
    bar = _progress(len(rows), f"{task.name}: embed", progress)
    items = _embed_rows(model, task.modality, [(r.index, r.fields[task.column("item")]) for r in rows], batch_size, outcome, bar,
                        item_checker(task))
    labels = {r.index: str(r.fields[task.column("label")]) for r in rows}
    classes = task.class_names or sorted({labels[i] for i in items})
    prompts = [t.format(c) for c in classes for t in task.class_templates]
    bar.total += len(prompts)
    text = _embed_rows(model, "text", list(enumerate(prompts)), batch_size, Outcome(), bar)
    bar.close()
    if len(text) < len(prompts):
        missing = [prompts[i] for i in range(len(prompts)) if i not in text]
        raise ValueError(f"task {task.name!r}: the text tower rejects the class prompts {missing[:3]}; fix class_templates")
    outcome.per_row = dict.fromkeys(labels, 0.0)
    if not items:
        outcome.extra["confusion_matrix"] = confusion_matrix(classes, labels, {})
        return outcome
    class_matrix = ensemble_class_embeddings(torch.stack([text[i] for i in range(len(prompts))]).view(len(classes), len(task.class_templates), -1))
    ids = list(items)
    _, ranked = topk_lower_index_wins(torch.stack([items[i] for i in ids]) @ class_matrix.T, min(5, len(classes)))
    top5 = dict(zip(ids, ranked.tolist(), strict=True))
    truth = {i: classes.index(label) if label in classes else -1 for i, label in labels.items()}
    right = {i: i in top5 and top5[i][0] == truth[i] for i in labels}  # a failed row is wrong
    present = sorted({c for c in truth.values() if c >= 0})
    recalls = [sum(right[i] for i in truth if truth[i] == c) / sum(truth[i] == c for i in truth) for c in present]
    outcome.metrics = {"acc@1": sum(right.values()) / len(rows)}
    if len(classes) > 5:  # with 5 classes or fewer the top 5 always hold the true class: acc@5 would say nothing
        outcome.metrics["acc@5"] = sum(truth[i] in top5.get(i, []) for i in labels) / len(rows)
    outcome.metrics["mean_per_class_recall"] = sum(recalls) / len(recalls)
    outcome.rate_keys = tuple(k for k in ("acc@1", "acc@5") if k in outcome.metrics)
    outcome.per_row = {i: float(r) for i, r in right.items()}
    outcome.predictions = {i: classes[t[0]] for i, t in top5.items()}
    outcome.extra["confusion_matrix"] = confusion_matrix(classes, labels, outcome.predictions)
    outcome.extra["per_class_accuracy"] = group_means([float(right[i]) for i in labels], list(labels.values()))
    return outcome


def run_linear_probe(model: Any, task: TaskConfig, rows: Sequence[Row], batch_size: int, progress: bool) -> Outcome:
    """Frozen features -> logistic-regression probe on a scaffold split (MoleculeNet protocol); test ROC-AUC.

    Label columns: ``metric_options.label_columns`` (default: every column but the item and the id); empty
    cells are missing labels. Items that fail go to the test split with an uninformative score, so they count."""
    import numpy as np

    from zoo.evaluation.fields import probe_label, probe_label_columns
    from zoo.evaluation.probe import embed_items, linear_probe, scaffold_splits_keeping_failures

    outcome = Outcome()
    if not rows:
        return outcome
    columns = probe_label_columns(task, rows[0])
    labels = np.array([[probe_label(r.fields.get(c), c) for c in columns] for r in rows])
    items = [r.fields[task.column("item")] for r in rows]
    features, failed = embed_items(model, items, batch_size)
    splits = scaffold_splits_keeping_failures(items, failed)
    result = linear_probe(features, labels, splits, failed)
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
    "predict": run_predict,
    "regress": run_regress,
    "property": run_property,
    "multiple-choice": run_multiple_choice,
    "retrieval": run_retrieval,
    "zero-shot-classification": run_zero_shot_classification,
}
