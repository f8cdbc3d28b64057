"""Baselines for Suzuki–Miyaura yield regression on Yield-BERT's split (the file's first 70% trains, the last 30% is
the test set), scored with the same pure metrics as ``zoo eval``, beside the ``rxn-yield-suzuki`` card, one run.

    .venv/bin/python benchmarks/yield_baselines.py [--data FILE] [--epochs 60] [--skip-card]

Rows: the trivial baseline (always the training set's mean yield, the prior); component identity (each distinct
molecule one-hot, summed per side: the same sum-of-sides MLP as the card with the pretrained embeddings
replaced by identity, which tells what the embeddings add); and the card itself through ``zoo.evaluate``.
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

import torch

from tasks.config import load_task, rows_in_range
from tasks.data.manifest import read_rows
from tasks.metrics import mae, r_squared, rmse


def _split(path: Path) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    task = load_task("yield-suzuki")
    rows = read_rows(task.reader, path, task.column("item"))
    pairs = lambda rs: [(r.fields[task.column("item")], float(r.fields[task.column("reference")])) for r in rs]  # noqa: E731
    test_start = rows_in_range(rows, [0.0, task.row_range[0]])
    return pairs(test_start), pairs(rows_in_range(rows, task.row_range))


def _row(label: str, predictions: list[float], targets: list[float], seconds: float) -> None:
    print(f"{label:<44} {r_squared(predictions, targets):>7.4f} {mae(predictions, targets):>7.4f} "
          f"{rmse(predictions, targets):>7.4f} {seconds:>8.1f}")


def _one_hot_sides(reactions: list[str], index: dict[str, int]) -> torch.Tensor:
    """``[N, 3 * M]``: how often each known molecule is on each side (an unseen molecule adds nothing)."""
    features = torch.zeros(len(reactions), 3, len(index))
    for n, reaction in enumerate(reactions):
        for s, side in enumerate(reaction.split(">")):
            for molecule in filter(None, side.split(".")):
                if molecule in index:
                    features[n, s, index[molecule]] += 1
    return features.flatten(1)


def one_hot_mlp(train: list[tuple[str, float]], test: list[tuple[str, float]], epochs: int) -> list[float]:
    """The card's head (LayerNorm, 512 GELU units, dropout 0.1, AdamW 1e-3) on one-hot molecule counts."""
    torch.manual_seed(0)
    molecules = sorted({m for r, _ in train for side in r.split(">") for m in side.split(".") if m})
    index = {m: i for i, m in enumerate(molecules)}
    x, x_test = _one_hot_sides([r for r, _ in train], index), _one_hot_sides([r for r, _ in test], index)
    y = torch.tensor([v for _, v in train])
    mean, std = y.mean(), y.std()
    head = torch.nn.Sequential(torch.nn.LayerNorm(x.shape[1]), torch.nn.Linear(x.shape[1], 512), torch.nn.GELU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(512, 1))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for picks in torch.randperm(len(y), generator=generator).split(64):
            loss = torch.nn.functional.mse_loss(head(x[picks]).squeeze(-1), (y[picks] - mean) / std)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        return (head(x_test).squeeze(-1) * std + mean).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(_HERE.parent.parent / "shared" / "data" / "yields" / "suzuki_miyaura_random_split_0.tsv"))
    parser.add_argument("--epochs", type=int, default=200, help="epochs of the one-hot MLP (the card's head trains 200)")
    parser.add_argument("--skip-card", action="store_true", help="leave out the card's row (no rxnmapper needed)")
    args = parser.parse_args()
    path = Path(args.data)
    if not path.is_file():
        sys.exit(f"no Suzuki–Miyaura yields file at {path}; pass --data")
    train, test = _split(path)
    targets = [v for _, v in test]
    print(f"{len(train)} training and {len(test)} test reactions from {path.name}")
    print(f"{'model':<44} {'R2':>7} {'MAE':>7} {'RMSE':>7} {'seconds':>8}")
    started = time.perf_counter()
    prior = sum(v for _, v in train) / len(train)
    _row("trivial: the training mean yield (prior)", [prior] * len(test), targets, time.perf_counter() - started)
    started = time.perf_counter()
    _row("component identity: one-hot sides -> MLP", one_hot_mlp(train, test, args.epochs), targets,
         time.perf_counter() - started)
    if not args.skip_card:
        import zoo

        started = time.perf_counter()
        results = zoo.evaluate("rxn-yield-suzuki", "yield-suzuki", path, batch_size=64, progress=False)
        predictions = [row["prediction"] for row in results["rows"]]
        _row("rxn-yield-suzuki (zoo eval)", predictions, targets, time.perf_counter() - started)
    print("published (same split): Yield-BERT R2 0.81, DRFP + XGBoost R2 0.85; target R2 >= 0.80")


if __name__ == "__main__":
    main()
