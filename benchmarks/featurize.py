"""Molecules per second of our featurization against bare RDKit parsing and PyG's ``from_smiles``.

Runs over the 5,004 USPTO-50K test products (``../shared/data/uspto50k/src-test.txt``; each line is a
``<RX_n>`` class token and space-separated SMILES tokens). Targets: at least 3x ``from_smiles`` and at most
1.3x the time of bare ``Chem.MolFromSmiles`` (the baseline drops each Mol at once; keeping 5,004 Mols alive
is slower and is shown as a second row; a third times the quicker parse featurize_many itself runs, so its
cost over its own parse shows too). Each method runs ``--repeats`` times, interleaved so machine load
hits all of them alike, and the best time counts. Every timed run happens in a fresh fork of a parent that
has only loaded the data and run each method once on 200 molecules (imports, caches), so no run inherits
another's heap or owes a garbage collection for another's objects.

    .venv/bin/python benchmarks/featurize.py [--repeats 5] [--limit N]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import gc
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from rdkit import Chem, RDLogger
from torch_geometric.utils import from_smiles

from encoders.molecule import featurize_many, smiles_to_graph
from encoders.molecule.parsing import parse_hydrogen_free

PRODUCTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "uspto50k" / "src-test.txt"


def load_products(path: Path) -> list[str]:
    """Product SMILES of a USPTO-50K ``src`` file: drop the reaction-class token, join the SMILES tokens."""
    return ["".join(line.split()[1:]) for line in path.read_text().splitlines() if line.strip()]


def parse_only(smiles: list[str]) -> None:
    """Bare parsing: each ``Mol`` is dropped at once, so keeping thousands alive adds no memory cost."""
    for text in smiles:
        Chem.MolFromSmiles(text)


def parse_hydrogen_free_only(smiles: list[str]) -> None:
    """The parse featurize_many uses for text without hydrogen atoms (all but a few products), Mol dropped."""
    for text in smiles:
        parse_hydrogen_free(text)


def time_in_fork(run: Callable[[list[str]], object], inputs: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``run(inputs)`` in a fork of this process.

    Every timed run then starts from the same memory state: in one process, the heap that earlier methods
    left behind sped up or slowed down the parse-only rows by up to a fifth, depending on their order.
    """
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_time_and_send, args=(run, inputs, sender))
    child.start()
    sender.close()
    seconds = receiver.recv()
    child.join()
    return seconds


def _time_and_send(run: Callable[[list[str]], object], inputs: list[str], sender: Connection) -> None:
    """Child side of :func:`time_in_fork`."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    run(inputs)
    sender.send((time.perf_counter() - start_wall, time.process_time() - start_cpu))


def main() -> None:
    """Time every method on the products and print molecules/s and ratios side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per method; the best one counts")
    parser.add_argument("--limit", type=int, default=None, help="time only the first N products (a smoke run)")
    args = parser.parse_args()
    if not PRODUCTS.is_file():
        print(f"skipped: {PRODUCTS} not found (../shared exists only on project machines)")
        sys.exit(0)
    RDLogger.DisableLog("rdApp.*")  # from_smiles and bare parsing would otherwise log to stderr
    smiles = load_products(PRODUCTS)[: args.limit]
    unique = list(dict.fromkeys(smiles))
    print(
        f"{len(smiles)} USPTO-50K test products, {len(unique)} distinct ({len(smiles) - len(unique)} duplicates)"
    )

    methods: dict[str, tuple[list[str], Callable[[list[str]], object]]] = {
        "Chem.MolFromSmiles, Mol dropped (baseline)": (smiles, parse_only),
        "Chem.MolFromSmiles, Mols kept in a list": (smiles, lambda s: [Chem.MolFromSmiles(t) for t in s]),
        "parse_hydrogen_free, Mol dropped": (smiles, parse_hydrogen_free_only),
        "torch_geometric from_smiles": (smiles, lambda s: [from_smiles(t) for t in s]),
        "smiles_to_graph loop": (smiles, lambda s: [smiles_to_graph(t) for t in s]),
        "featurize_many workers=1": (smiles, lambda s: featurize_many(s, workers=1)),
        "featurize_many workers=1, distinct only": (unique, lambda s: featurize_many(s, workers=1)),
        "featurize_many workers=2": (smiles, lambda s: featurize_many(s, workers=2)),
    }
    for inputs, run in methods.values():  # imports, caches and pools' first costs are paid here, untimed
        run(inputs[:200])
    gc.collect()
    gc.freeze()  # the children's collections then leave the parent's objects (and their pages) alone
    wall = {name: float("inf") for name in methods}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, (inputs, run) in methods.items():
            run_wall, run_cpu = time_in_fork(run, inputs)
            wall[name], cpu[name] = min(wall[name], run_wall), min(cpu[name], run_cpu)

    baseline, pyg = "Chem.MolFromSmiles, Mol dropped (baseline)", "torch_geometric from_smiles"
    print(f"{'method':44s} {'mol/s':>7s} {'time/bare':>10s} {'CPU/bare':>9s} {'vs from_smiles':>15s}")
    for name, (inputs, _) in methods.items():
        scale = len(smiles) / len(inputs)  # per-molecule cost scaled to the full list
        cpu_ratio = f"{cpu[name] * scale / cpu[baseline]:8.2f}x" if "workers=2" not in name else "  (n/a)"
        print(
            f"{name:44s} {len(inputs) / wall[name]:7.0f} {wall[name] * scale / wall[baseline]:9.2f}x "
            f"{cpu_ratio:>9s} {wall[pyg] / (wall[name] * scale):14.2f}x"
        )
    print("time/bare: best wall-clock time; CPU/bare: best CPU time of the timed process (less disturbed by")
    print("other load; n/a for workers=2, whose work runs in child processes)")
    print("parse_hydrogen_free: the parse featurize_many runs on text without hydrogen atoms (the parser's")
    print("molecule without flagging possible stereocentres); featurize_many's cost over its own parse is")
    print(f"{wall['featurize_many workers=1'] / wall['parse_hydrogen_free, Mol dropped']:.2f}x")
    print("targets: featurize_many workers=1 at most 1.30x bare parse time and at least 3.00x from_smiles")


if __name__ == "__main__":
    main()
