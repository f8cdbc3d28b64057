"""Featurize time against string length on hostile SMILES, beside bare ``Chem.MolFromSmiles``.

The three shapes of issue 14: ``'[' * n`` (unclosed brackets), ``'C' * n`` (a valid chain) and
``'C(' * (n / 2)`` (unclosed branches), at n = 1,000 to 1,000,000 characters. Rows: bare
``Chem.MolFromSmiles`` (the baseline, logs blocked), ``smiles_to_graph`` and ``featurize_many([text])``;
each time is the best of ``--repeats`` runs. The first table uses the default length limit
(``MAX_SMILES_LENGTH``): longer text is refused unread, in constant time. The second lifts the limit
(``max_length=None``) to show that our own code grows linearly where RDKit does; ``'C('`` is left out of it,
because RDKit itself is superlinear there (its bare parse takes about 8 s at 1,000,000 characters, and its
error log grows with the square of the length): the limit is what bounds it.
Target: every hostile string of 100,000 characters is rejected in under 1 s.

    .venv/bin/python benchmarks/featurize_hostile.py [--repeats 3] [--lengths 1000,10000,100000,1000000]
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
from collections.abc import Callable

from rdkit import Chem, RDLogger

from encoders.molecule import MAX_SMILES_LENGTH, InvalidMoleculeError, featurize_many, smiles_to_graph

SHAPES: dict[str, Callable[[int], str]] = {
    "'[' * n": lambda n: "[" * n,
    "'C' * n": lambda n: "C" * n,
    "'C(' * n/2": lambda n: "C(" * (n // 2),
}
LIFTED_SHAPES = ("'[' * n", "'C' * n")  # RDKit itself is linear on these


def bare_parse(text: str, max_length: int | None) -> str:
    """The baseline: RDKit's parser alone (it has no length limit)."""
    return "parsed" if Chem.MolFromSmiles(text) is not None else "rejected"


def one_graph(text: str, max_length: int | None) -> str:
    """``smiles_to_graph``, its outcome in a few words."""
    try:
        return f"graph of {smiles_to_graph(text, max_length=max_length).num_nodes:,} atoms"
    except InvalidMoleculeError as exc:
        return _short_reason(str(exc))


def many_graphs(text: str, max_length: int | None) -> str:
    """``featurize_many`` on the one string, its outcome in a few words."""
    result = featurize_many([text], max_length=max_length)
    graph = result[0]
    return (
        f"graph of {graph.num_nodes:,} atoms"
        if graph is not None
        else _short_reason(result.errors[0].message)
    )


def _short_reason(message: str) -> str:
    return "refused: over the length limit" if "over the limit" in message else "rejected by RDKit"


METHODS: dict[str, Callable[[str, int | None], str]] = {
    "Chem.MolFromSmiles (baseline)": bare_parse,
    "smiles_to_graph": one_graph,
    "featurize_many": many_graphs,
}


def best_seconds(
    run: Callable[[str, int | None], str], text: str, max_length: int | None, repeats: int
) -> tuple[float, str]:
    """Best wall-clock time of ``repeats`` runs, and the outcome."""
    best, outcome = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        outcome = run(text, max_length)
        best = min(best, time.perf_counter() - start)
    return best, outcome


def print_table(
    title: str, shapes: list[str], lengths: list[int], max_length: int | None, repeats: int
) -> None:
    """One row per shape and method: milliseconds per length, growth over the last tenfold, last outcome."""
    print(title)
    header = "".join(f"{n:>12,}" for n in lengths)
    print(f"{'shape':12s} {'method':30s}{header}  {'growth':>7s}  outcome at {lengths[-1]:,}")
    for shape in shapes:
        texts = [SHAPES[shape](n) for n in lengths]
        for name, run in METHODS.items():
            timed = [best_seconds(run, text, max_length, repeats) for text in texts]
            cells = "".join(f"{seconds * 1e3:10.2f}ms" for seconds, _ in timed)
            growth = f"{timed[-1][0] / timed[-2][0]:6.1f}x" if len(timed) > 1 else "    n/a"
            print(f"{shape:12s} {name:30s}{cells}  {growth:>7s}  {timed[-1][1]}")
    print()


def main() -> None:
    """Time every shape, method and length, with the default limit and with the limit lifted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the best one counts")
    parser.add_argument(
        "--lengths", default="1000,10000,100000,1000000", help="comma-separated string lengths, ascending"
    )
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    RDLogger.DisableLog("rdApp.*")  # the baseline would otherwise log every rejection to stderr
    print_table(
        f"default limit: max_length = MAX_SMILES_LENGTH = {MAX_SMILES_LENGTH:,} characters",
        list(SHAPES),
        lengths,
        MAX_SMILES_LENGTH,
        args.repeats,
    )
    print_table("limit lifted: max_length = None", list(LIFTED_SHAPES), lengths, None, args.repeats)
    print("growth: time at the longest length over time at the one before (10x longer: about 10x is linear)")
    print(
        "targets: every 100,000-character hostile string rejected in under 1 s; linear growth without "
        "the limit"
    )


if __name__ == "__main__":
    main()
