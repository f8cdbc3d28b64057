"""``zoo.evaluate``: run a task over a data file, count every failed row as wrong, and write the results.

The results hold full provenance (resolved spec, processor config, task and prompt template, generation
settings, package versions, data checksum) so a number can be traced and reproduced.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tasks.config import ANSWER_KINDS, TaskConfig, load_task, rows_in_range
from tasks.data.manifest import Row, read_rows
from tasks.data.splits import rows_in_split
from zoo.evaluation import scoring
from zoo.evaluation.distributed import gather_outcome, is_main_process, shard_rows
from zoo.evaluation.fields import check_rows, scored_reference
from zoo.evaluation.runners import RUNNERS, Outcome

PACKAGES = ("modalzoo", "torch", "transformers", "timm", "open-clip-torch", "rdkit", "torch-geometric", "torchaudio")
METRICS = {
    "vqa": scoring.vqa,
    "exact_match": scoring.exact_match,
    "captioning": scoring.captioning,
    "reaction_topk": scoring.reaction_topk,
    "grounding": scoring.grounding,
    "molecule_generation": scoring.molecule_generation,
    "regression": scoring.regression,
    "property": scoring.property_scores,
}
EMBEDDING_METRICS = ("retrieval", "zero_shot_classification")


def data_sha256(path: Path) -> str:
    """Checksum of a data file, or of every file under a data folder (sorted by name)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


def _score(task: TaskConfig, rows: list[Row], usable: list[Row], outcome: Outcome) -> tuple[dict[str, float], dict[int, float]]:
    """Summary metrics over all ``rows`` (the ``usable`` ones ran; the others failed before) and per-row scores."""
    coverage = len(usable) / len(rows)
    if task.kind == "multiple-choice":
        return _score_multiple_choice(task, rows, outcome)
    if task.kind not in ANSWER_KINDS:  # the embedding kinds finish their own metrics over the rows they ran
        metrics = {k: v * coverage if k in outcome.rate_keys else v for k, v in (outcome.metrics or {}).items()}
        return metrics, outcome.per_row or {}
    per_row = dict.fromkeys((r.index for r in rows), 0.0)
    if not usable:
        return {}, per_row
    scores = METRICS[task.metric](
        [outcome.predictions.get(r.index) for r in usable],
        [scored_reference(task, r) for r in usable],
        **task.metric_options,
        **({"target_type": task.target_type} if task.kind == "property" else {}),
    )
    for row, score in zip(usable, scores.per_row, strict=True):
        per_row[row.index] = score
    if scores.answers is not None:  # the metric's normalised answers (e.g. distinct molecules) are what rows show
        for row, answer in zip(usable, scores.answers, strict=True):
            if answer is not None:
                outcome.predictions[row.index] = answer
    for k, message in scores.unparsable.items():
        outcome.failures.setdefault(usable[k].index, ("generation", message))
    unscored = len(rows) - len(usable)
    summary = {k: v * coverage if k in scores.rate_keys else v + unscored if k in scores.count_keys else v
               for k, v in scores.summary.items()}
    scored = coverage * summary.get("scored_fraction", 1.0)  # rows that ran, times those the metric could score
    if scored < 1:
        summary["scored_fraction"] = scored
    if "aspect" in task.fields:
        summary |= _by_aspect(task, rows, per_row, scores.rate_keys[0] if scores.rate_keys else "score")
    return summary, per_row


def _by_aspect(task: TaskConfig, rows: list[Row], per_row: dict[int, float], name: str) -> dict[str, float]:
    """``<name>/<aspect>``: the row scores averaged within each aspect (e.g. a VQA answer type) over all its rows,
    failed ones as 0; a row without the column is in ``all``, an unreadable one in ``unreadable``."""
    from tasks.metrics import group_means

    column = task.column("aspect")
    groups = [
        "unreadable" if not r.ok else "all" if r.fields.get(column) is None else str(r.fields[column]) for r in rows
    ]
    return {f"{name}/{group}": v for group, v in group_means([per_row[r.index] for r in rows], groups).items()}


def _score_multiple_choice(task: TaskConfig, rows: list[Row], outcome: Outcome) -> tuple[dict[str, float], dict[int, float]]:
    from tasks.metrics import choose_options

    normalise = task.metric_options.get("length_normalised", False)
    per_row: dict[int, float] = {}
    aspects: dict[str, list[float]] = {}
    for row in rows:
        prediction = outcome.predictions.get(row.index)
        right = False
        if prediction is not None:
            ll, counts = prediction
            chosen = choose_options([ll], [counts] if normalise else None)[0]
            outcome.predictions[row.index] = f"option {chosen}: {row.fields[task.column('options')][chosen]}"
            right = chosen == int(row.fields[task.column("answer")])
        per_row[row.index] = float(right)
        aspect = str(row.fields.get(task.column("aspect"), "all")) if row.ok else "unreadable"
        aspects.setdefault(aspect, []).append(float(right))
    summary = {"accuracy": sum(per_row.values()) / len(rows)}
    summary |= {f"accuracy/{a}": sum(v) / len(v) for a, v in sorted(aspects.items())}
    return summary, per_row


def evaluate(
    model: Any,
    task: str | Path | TaskConfig,
    data: str | Path,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
    report: bool = True,
    **task_overrides: Any,
) -> dict[str, Any]:
    """Run ``task`` on the rows of ``data``; returns (and with ``output_dir`` writes) the results.

    ``model`` is a model or a name for ``zoo.load``. Every row that fails (unreadable line, missing or
    ill-typed field, bad input, unparsable output) is counted as wrong and listed under ``failures`` with its
    ``file:line``; nothing is dropped and no row can abort the run.
    """
    import torch

    if isinstance(model, (str, Path)):
        from zoo.loading import load

        model = load(model)
    task = load_task(task, **task_overrides)
    data = Path(data)
    started = time.time()
    if task.kind in ANSWER_KINDS and task.metric not in METRICS:
        raise KeyError(f"task {task.name!r} names unknown metric {task.metric!r}; known: {', '.join(METRICS)}")
    rows = rows_in_range(read_rows(task.reader, data, task.column("item"), task.modality), task.row_range)
    rows = rows_in_split(rows, task.split_spec, task.column("item"))[:limit]
    if not rows:
        raise ValueError(f"{data} has no rows for task {task.name!r}")
    unusable = {r.index: ("read", r.error or "") for r in rows if not r.ok}
    unusable |= {i: ("fields", message) for i, message in check_rows(task, rows).items()}
    usable = [r for r in rows if r.index not in unusable]
    model.eval()
    with torch.no_grad():
        outcome = RUNNERS[task.kind](model, task, shard_rows(task.kind, usable), batch_size, progress)
    outcome = gather_outcome(task.kind, outcome)
    outcome.failures.update(unusable)
    metrics, per_row = _score(task, rows, usable, outcome)
    results = {
        "task": task.to_dict(),
        "metrics": metrics,
        "num_rows": len(rows),
        "num_failed": len(outcome.failures),
        "failures": [
            {"index": i, "source": rows[i].source, "stage": stage, "error": message}
            for i, (stage, message) in sorted(outcome.failures.items())
        ],
        "rows": [
            {
                "index": r.index,
                "id": r.fields.get(task.column("id"), r.index),
                "source": r.source,
                "item": _json_safe(r.fields.get(task.column("item"))),
                "prompt": r.fields.get(task.column("prompt")),
                "prediction": _json_safe(outcome.predictions.get(r.index)),
                "reference": _json_safe(_reference(task, r)),
                "score": per_row.get(r.index, 0.0) if per_row else None,
                "error": outcome.failures.get(r.index, (None, None))[1],
            }
            for r in rows
        ],
        "provenance": {
            "model": getattr(model, "card_meta", {}).get("name", type(model).__name__),
            "spec": _json_safe(_spec_dict(model)),
            "processor": _json_safe(model.processor.config_dict()),
            "prompt_template": task.prompt_template,
            "generation": task.generation,
            "batch_size": batch_size,
            "data": {"path": str(data), "sha256": data_sha256(data), "rows": len(rows)},
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "device": str(model.device),
            "dtype": str(model.dtype),
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
            "duration_s": round(time.time() - started, 3),
        },
    }
    results |= {k: _json_safe(v) for k, v in outcome.extra.items() if k not in results}  # e.g. a confusion matrix
    if output_dir is not None and is_main_process():
        write_results(results, Path(output_dir), report=report)
    return results


def _reference(task: TaskConfig, row: Row) -> Any:
    """What a row's prediction is compared with, in the column that plays the reference role for the task's
    kind: the class label, the right option (as predictions show it), the probe's or property task's labels, else
    ``reference`` (``answer`` when there is no reference column)."""
    fields = row.fields
    if task.kind == "zero-shot-classification":
        return fields.get(task.column("label"))
    if task.kind == "multiple-choice":
        options, answer = fields.get(task.column("options")), fields.get(task.column("answer"))
        chosen = int(answer) if isinstance(answer, str) and answer.strip().isascii() and answer.strip().isdigit() else answer
        if isinstance(options, list) and isinstance(chosen, int) and not isinstance(chosen, bool) and 0 <= chosen < len(options):
            return f"option {chosen}: {options[chosen]}"
        return answer
    if task.kind == "property":
        return {c: fields.get(c) for c in task.targets} if fields else None
    if task.kind == "linear-probe":
        from zoo.evaluation.fields import probe_label_columns

        return {c: fields.get(c) for c in probe_label_columns(task, row)} if fields else None
    return fields.get(task.column("reference"), fields.get(task.column("answer")))


def _spec_dict(model: Any) -> dict[str, Any]:
    from zoo.spec import spec_to_dict

    return spec_to_dict(model.spec)


def write_results(results: dict[str, Any], output_dir: Path, report: bool = True) -> Path:
    """``results.json`` (and ``report.html``) in ``output_dir``, each written atomically."""
    from zoo.io import atomic_write

    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    atomic_write(output_dir / "results.json", lambda tmp: tmp.write_text(text))
    if report:
        from zoo.evaluation.report import render_report

        html = render_report(results, output_dir)
        atomic_write(output_dir / "report.html", lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return output_dir
