"""The answer-prior baseline for audio QA on the procedural audio scenes, in one table with the models' own
`zoo eval` results, broken down by answer type and by question type; and the constant-caption baseline.

    .venv/bin/python benchmarks/audio_lm_baselines.py TRAIN_DIR TEST_DIR [--qa-results NAME=results.json ...]

Folders are written by ``python -m tasks.data.audio_scenes``. The prior answers each question with the most
common training answer of its question type ("How many sounds are there?" -> "2"), fitted on TRAIN_DIR only
and scored with VQAv2 accuracy as ``zoo eval --task audio-qa`` scores a model. Each ``--qa-results`` is the
``results.json`` of ``zoo eval NAME --task audio-qa --data TEST_DIR/qa.jsonl -o DIR``; its per-row scores are
grouped the same way, so every column of a row counts the same questions. The captioning baseline gives every
test clip the most common training caption, scored with the captioning metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import json
from collections.abc import Sequence
from typing import Any

from tasks.data.scene_baselines import constant_caption_metrics, vqa_prior
from tasks.metrics import vqa_accuracy

ANSWER_TYPES: tuple[str, ...] = ("yes_no", "number", "other")
CAPTION_METRICS: tuple[str, ...] = ("bleu4", "rougeL_f_no_stemming", "meteor_exact")


def read_manifest(folder: Path, name: str) -> list[dict[str, Any]]:
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing; write the split with `python -m tasks.data.audio_scenes {folder} --n N --seed S`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Row positions of every group a table row reports: all, each answer type, each question type."""
    found: dict[str, list[int]] = {"all": list(range(len(rows)))}
    for kind in ANSWER_TYPES:
        found[kind] = [i for i, r in enumerate(rows) if r["answer_type"] == kind]
    for kind in sorted({r["question_type"] for r in rows}):
        found[f"  {kind}"] = [i for i, r in enumerate(rows) if r["question_type"] == kind]
    return found


def model_scores(path: Path, test: Sequence[dict[str, Any]]) -> list[float]:
    """The per-row scores of a ``zoo eval --task audio-qa`` run on ``test`` (failed rows score 0)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    if results["num_rows"] != len(test):
        raise SystemExit(f"{path} scores {results['num_rows']} rows; the test qa.jsonl has {len(test)}: evaluate that file")
    scores = [0.0] * len(test)
    for row in results["rows"]:
        scores[row["index"]] = float(row["score"] or 0.0)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description="Answer-prior and constant-caption baselines, beside zoo eval results.")
    parser.add_argument("train", type=Path, help="training split folder (the baselines' only source)")
    parser.add_argument("test", type=Path, help="test split folder")
    parser.add_argument("--qa-results", action="append", default=[], metavar="NAME=PATH",
                        help="a model's audio-qa results.json on TEST/qa.jsonl (repeatable)")
    args = parser.parse_args()
    train_qa, test_qa = read_manifest(args.train, "qa"), read_manifest(args.test, "qa")
    prior = vqa_prior(train_qa)
    columns = {"prior": [vqa_accuracy(prior.get(r["question_type"], ""), r["answers"]) for r in test_qa]}
    for pair in args.qa_results:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--qa-results takes NAME=PATH, got {pair!r}")
        columns[name] = model_scores(Path(path), test_qa)
    print(f"{len(read_manifest(args.train, 'captions'))} training and {len(read_manifest(args.test, 'captions'))} "
          f"test clips; {len(test_qa)} test questions")
    print(f"{'vqa_accuracy':<14} {'questions':>9} " + " ".join(f"{name:>18}" for name in columns) + "  prior answer")
    for group, positions in groups(test_qa).items():
        means = [sum(scores[i] for i in positions) / len(positions) if positions else float("nan") for scores in columns.values()]
        answer = prior.get(group.strip(), "")
        print(f"{group:<14} {len(positions):>9} " + " ".join(f"{m:>18.4f}" for m in means) + (f"  {answer!r}" if answer else ""))
    caption = constant_caption_metrics(read_manifest(args.train, "captions"), read_manifest(args.test, "captions"))
    print("constant caption (most common training caption): "
          + ", ".join(f"{metric} {caption[metric]:.4f}" for metric in CAPTION_METRICS))


if __name__ == "__main__":
    main()
