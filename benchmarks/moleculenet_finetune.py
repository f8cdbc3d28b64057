"""MoleculeNet fine-tuning through the product (``zoo finetune`` + ``zoo eval``), per data set and seed.

For each data set and seed this runs exactly what a user runs (the commands are printed):

    zoo finetune CARD -t moleculenet-X -d ../shared/data/moleculenet/X.csv --weights-dir ... -o OUT \\
        --lr 1e-3 -b 32 --set epochs=10 --set lr_schedule=constant --set warmup_ratio=0 \\
        --set eval_every=epoch --set early_stopping_metric=roc_auc|rmse --set early_stopping_mode=max|min \\
        --set seed=S
    zoo eval OUT/final -t moleculenet-X -d ../shared/data/moleculenet/X.csv -o OUT/eval

(AdamW at a constant learning rate, as in Hu et al.'s fine-tuning) and prints test ROC-AUC (classification)
or RMSE (regression), mean ± std over the seeds, beside the trivial baseline (ROC-AUC 0.5 of a constant
score; RMSE of predicting the training part's mean), the same architecture fine-tuned from random init
(``--random-init``: ``zoo.build`` of the card's spec, saved and fine-tuned by the same commands), Hu et al.'s
published figure for this pre-training recipe and the best published one we know.
A run whose ``eval/results.json`` exists is reused, so an interrupted sweep continues where it stopped.

    .venv/bin/python benchmarks/moleculenet_finetune.py [--card pretrain-gnns-gcn-contextpred]
        [--datasets bbbp bace clintox tox21 sider esol freesolv lipophilicity] [--seeds 0 1 2] [--epochs 10]
        [--random-init] [--out runs/moleculenet-finetune]
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
import math
import statistics
import subprocess
import time

ROOT = _HERE.parent
SHARED = ROOT.parent / "shared" / "data"
FILES = {  # task suffix -> file in ../shared/data/moleculenet (chemprop's copies)
    "bbbp": "bbbp.csv", "bace": "bace.csv", "clintox": "clintox.csv", "tox21": "tox21.csv", "sider": "sider.csv",
    "esol": "delaney.csv", "freesolv": "freesolv.csv", "lipophilicity": "lipo.csv",
}
REGRESSION = ("esol", "freesolv", "lipophilicity")
# Hu et al., "Strategies for Pre-training Graph Neural Networks", ICLR 2020, Table 1: GIN, supervised + context
# prediction pre-training, scaffold split, test ROC-AUC x100 (100 fine-tuning epochs, dropout 0.5).
HU_ET_AL = {"bbbp": 68.7, "bace": 84.5, "clintox": 72.6, "tox21": 78.1, "sider": 62.7}
# Zhou et al., "Uni-Mol", ICLR 2023, Tables 1 and 2 (their own scaffold split, so close to but not the same rows
# as ours): ROC-AUC x100 for classification, RMSE for regression.
UNI_MOL = {"bbbp": 72.9, "bace": 85.7, "clintox": 91.9, "tox21": 79.6, "sider": 65.9,
           "esol": 0.788, "freesolv": 1.480, "lipophilicity": 0.603}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--card", default="pretrain-gnns-gcn-contextpred")
    parser.add_argument("--datasets", nargs="+", default=list(FILES), choices=list(FILES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--random-init", action="store_true", help="also fine-tune the architecture from random init")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "moleculenet-finetune")
    args = parser.parse_args()
    weights_dir = SHARED / "weights" / "pretrain-gnns"
    if not (SHARED / "moleculenet").is_dir():
        sys.exit(f"skipped: {SHARED / 'moleculenet'} not found (the shared data exists only on project machines)")
    started = time.time()
    table = []
    for dataset in args.datasets:
        row = {"dataset": dataset, "trivial": trivial_baseline(dataset)}
        for setting in ("pretrained", "random init") if args.random_init else ("pretrained",):
            values = []
            for seed in args.seeds:
                model = args.card if setting == "pretrained" else random_init_dir(args.card, seed, args.out)
                values.append(run(model, dataset, seed, args, weights_dir, setting))
                print(f"  {dataset} {setting} seed {seed}: {values[-1]:.4f}  [{time.time() - started:.0f} s]", flush=True)
            row[setting] = values
        table.append(row)
    print_table(table, args)


def run(model: str, dataset: str, seed: int, args: argparse.Namespace, weights_dir: Path, setting: str) -> float:
    """Fine-tune and evaluate one seed with the CLI (skipped when its results exist); the test metric."""
    out = args.out / args.card / setting.replace(" ", "-") / f"{dataset}-s{seed}"
    results = out / "eval" / "results.json"
    data = SHARED / "moleculenet" / FILES[dataset]
    metric, mode = ("rmse", "min") if dataset in REGRESSION else ("roc_auc", "max")
    if not results.is_file():
        zoo = [sys.executable, "-m", "zoo.cli", "-q"]
        finetune = [*zoo, "finetune", model, "-t", f"moleculenet-{dataset}", "-d", str(data), "--weights-dir",
                    str(weights_dir), "-o", str(out), "--lr", "1e-3", "-b", "32", "--set", f"epochs={args.epochs}",
                    "--set", "lr_schedule=constant", "--set", "warmup_ratio=0", "--set", "eval_every=epoch",
                    "--set", f"early_stopping_metric={metric}",
                    "--set", f"early_stopping_mode={mode}", "--set", f"seed={seed}"]
        evaluate = [*zoo, "eval", str(out / "final"), "-t", f"moleculenet-{dataset}", "-d", str(data),
                    "-o", str(out / "eval"), "-b", "128"]
        for command in (finetune, evaluate):
            print("$ " + " ".join(command[2:]), flush=True)
            subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return float(json.loads(results.read_text())["metrics"][metric])


def random_init_dir(card: str, seed: int, out: Path) -> str:
    """The card's architecture at random init (seed ``seed``), saved once so ``zoo finetune`` can take it."""
    folder = out / card / "random-init-models" / f"s{seed}"
    if not (folder / "config.json").is_file():
        import zoo

        spec = {**zoo.card(card).spec, "seed": seed}
        zoo.build(spec).save_pretrained(folder)
    return str(folder)


def trivial_baseline(dataset: str) -> float:
    """ROC-AUC of a constant score (0.5); for regression, the test RMSE of predicting the training part's mean."""
    if dataset not in REGRESSION:
        return 0.5
    from tasks.config import load_task
    from tasks.data.manifest import read_rows
    from tasks.data.properties import property_labels
    from tasks.data.splits import rows_in_split

    task = load_task(f"moleculenet-{dataset}")
    rows = read_rows(task.reader, SHARED / "moleculenet" / FILES[dataset], task.column("item"))

    def labels(part: str) -> list[float]:
        picked = rows_in_split(rows, load_task(task, **{"split.part": part}).split_spec, task.column("item"))
        return [property_labels(r.fields, task.targets, task.target_type)[0] for r in picked if r.ok]

    train, test = labels("train"), labels("test")
    mean = statistics.fmean(train)
    return math.sqrt(statistics.fmean((y - mean) ** 2 for y in test))


def print_table(table: list[dict], args: argparse.Namespace) -> None:
    """Markdown: ROC-AUC x100 (or RMSE) mean ± std over the seeds, beside the baselines and published figures."""
    settings = ["pretrained", "random init"] if args.random_init else ["pretrained"]
    print(f"\n{args.card}, {args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}; test ROC-AUC x100 "
          "(classification) or RMSE (regression, lower is better)\n")
    print("| data set | metric | " + " | ".join(f"{s} (this run)" for s in settings)
          + " | trivial baseline | Hu et al. 2020 (GIN) | Uni-Mol 2023 |")
    print("|---|---|" + "---|" * (len(settings) + 3))
    for row in table:
        regression = row["dataset"] in REGRESSION
        scale = 1 if regression else 100
        cells = [f"{scale * statistics.fmean(row[s]):.{3 if regression else 1}f} ± "
                 f"{scale * statistics.pstdev(row[s]):.{3 if regression else 1}f}" for s in settings]
        trivial = f"{row['trivial']:.3f}" if regression else "50.0"
        hu = f"{HU_ET_AL[row['dataset']]:.1f}" if row["dataset"] in HU_ET_AL else "—"
        best = f"{UNI_MOL[row['dataset']]:.3f}" if regression else f"{UNI_MOL[row['dataset']]:.1f}"
        metric = "rmse" if regression else "roc_auc"
        print(f"| {row['dataset']} | {metric} | " + " | ".join(cells) + f" | {trivial} | {hu} | {best} |")


if __name__ == "__main__":
    main()
