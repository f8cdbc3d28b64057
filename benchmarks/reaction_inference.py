"""Retrosynthesis inference speed: the template model's top-10 against the seq2seq card's beam-10, on the same
USPTO-50K test products, through the same ``zoo.evaluate`` path (reading, predicting, scoring), one run.

    .venv/bin/python benchmarks/reaction_inference.py [--n 200] [--batch-size 64]

Prints products/s and top-1/top-10 on those rows for each model (the seq2seq row is the baseline). The template
model runs twice: spread over its default worker processes (one per core), and applying templates in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import time

import zoo

ROWS = (
    # (label, card, task, worker processes applying templates: None for the model's default)
    ("seq2seq (baseline)", "rxn-retro-uspto50k", "retro-uspto50k", None),
    ("template model", "rxn-retro-template-uspto50k", "retro-template-uspto50k", None),
    ("template, 1 process", "rxn-retro-template-uspto50k", "retro-template-uspto50k", 1),
)  # the pooled row first: its workers fork before this process has prepared any template (both start cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test products to time (the first N)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=str(_HERE.parent.parent / "shared" / "data" / "uspto50k" / "src-test.txt"))
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"no USPTO-50K test file at {args.data}; pass --data")
    print(f"{'model':<20} {'card':<30} {'workers':>7} {'products/s':>10} {'top-1':>7} {'top-10':>7}")
    for label, card, task, workers in ROWS:
        model = zoo.load(card)
        if workers is not None:
            model.workers = workers
        started = time.perf_counter()
        results = zoo.evaluate(model, task, args.data, limit=args.n, batch_size=args.batch_size, progress=False,
                               report=False)
        seconds = time.perf_counter() - started
        metrics = results["metrics"]
        top10 = metrics.get("top10_exact_match_stereo_aware", float("nan"))
        print(f"{label:<20} {card:<30} {getattr(model, 'workers', '-'):>7} {args.n / seconds:>10.1f} "
              f"{metrics.get('top1_exact_match_stereo_aware', float('nan')):>7.3f} {top10:>7.3f}")


if __name__ == "__main__":
    main()
