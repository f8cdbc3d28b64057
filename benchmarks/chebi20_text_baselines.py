"""Trivial baselines for the text-only ChEBI-20 tasks (``chebi20-smiles2caption``, ``chebi20-caption2smiles``) on
the full test split, scored by the metric adapters ``zoo eval`` uses, with each task's own reader, columns and
metric options, one run on the CPU:

    .venv/bin/python benchmarks/chebi20_text_baselines.py [--data ../shared/data/chebi20] [--pool 16]
        [--select-rows 300]

``--data`` holds ChEBI-20's ``validation.txt`` and ``test.txt``. The shared data has no training split (and no
SMILES or caption repeats in the validation split, so "the most frequent one" is not defined), so the fixed
answer is chosen on the validation split, never on test. Rows:

- fixed validation answer: the same output for every input, the best of ``--pool`` seeded validation rows on
  ``--select-rows`` seeded validation rows: for captions by ROUGE-L F (the score ``zoo eval`` gives a caption
  row), for SMILES by MolT5's Morgan fingerprint similarity (``molt5_morgan_fts``);
- copy the input: the SMILES as the caption, the caption as the SMILES;
- empty output (MolT5's own evaluation counts an empty SMILES as a valid molecule).

Caption BLEU is on word tokens (the task's default), not MolT5's SciBERT word pieces. About 5 minutes on two
shared CPU cores, most of it the MolT5 fingerprints and InChI of 3,300 molecules per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import random
import time
from collections.abc import Callable

from tasks.config import TaskConfig, load_task
from tasks.data.manifest import read_rows
from zoo.evaluation.evaluate import METRICS

DEFAULT_DATA = _HERE.parent.parent / "shared" / "data" / "chebi20"
# task -> the summary key its fixed answer is chosen by
SELECT_BY = {"chebi20-smiles2caption": "rougeL_f_no_stemming", "chebi20-caption2smiles": "molt5_morgan_fts"}


def pairs(task: TaskConfig, path: Path) -> list[tuple[str, str]]:
    """(input, reference) of every row of ``path``, read as ``zoo eval`` reads it for ``task``."""
    rows = read_rows(task.reader, path, task.column("item"), task.modality)
    failed = [r.source for r in rows if not r.ok]
    if failed:
        raise SystemExit(f"{path}: unreadable rows {failed[:5]}; this script scores clean files only")
    return [(r.fields[task.column("item")], r.fields[task.column("reference")]) for r in rows]


def score(task: TaskConfig, predictions: list[str], references: list[str]) -> dict[str, float]:
    return METRICS[task.metric](predictions, references, **task.metric_options).summary


def fixed_answer(task: TaskConfig, validation: list[tuple[str, str]], pool: int, select_rows: int) -> tuple[str, float]:
    """The validation reference that, given for every input, scores best on a seeded slice of the validation split."""
    rng = random.Random(0)
    candidates = [ref for _, ref in rng.sample(validation, min(pool, len(validation)))]
    references = [ref for _, ref in rng.sample(validation, min(select_rows, len(validation)))]
    key = SELECT_BY[task.name]
    scored = [(score(task, [c] * len(references), references)[key], c) for c in candidates]
    value, best = max(scored)
    return best, value


def table(task: TaskConfig, rows: list[tuple[str, Callable[[str], str]]], test: list[tuple[str, str]]) -> None:
    references = [ref for _, ref in test]
    results = [(label, score(task, [answer(item) for item, _ in test], references)) for label, answer in rows]
    keys = list(results[0][1])
    print(f"{task.name}: {len(test)} test rows, metric {task.metric} {task.metric_options or ''}".rstrip())
    print(f"{'baseline':<28}" + "".join(f"{k:>{max(len(k), 8) + 2}}" for k in keys))
    for label, summary in results:
        print(f"{label:<28}" + "".join(f"{summary[k]:>{max(len(k), 8) + 2}.4f}" for k in keys))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with validation.txt and test.txt")
    parser.add_argument("--pool", type=int, default=16, help="validation answers tried as the fixed answer")
    parser.add_argument("--select-rows", type=int, default=300, help="validation rows the fixed answer is chosen on")
    args = parser.parse_args()
    for split in ("validation", "test"):
        if not (args.data / f"{split}.txt").is_file():
            raise SystemExit(f"no {args.data / f'{split}.txt'}; give --data the folder of ChEBI-20's split files")
    for name in SELECT_BY:
        started = time.time()
        task = load_task(name)
        validation, test = pairs(task, args.data / "validation.txt"), pairs(task, args.data / "test.txt")
        answer, value = fixed_answer(task, validation, args.pool, args.select_rows)
        print(f"fixed answer ({SELECT_BY[name]} {value:.4f} on {min(args.select_rows, len(validation))} validation rows): "
              f"{answer[:100]}{'...' if len(answer) > 100 else ''}")
        table(task, [("fixed validation answer", lambda _, a=answer: a), ("copy the input", lambda item: item),
                     ("empty output", lambda _: "")], test)
        print(f"({time.time() - started:.0f} s)\n")


if __name__ == "__main__":
    main()
