"""Smoke runs of the benchmark scripts on a few inputs, so a script that no longer runs is caught here.

They check that every row is printed, never how fast anything is: speed targets are read off full runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_featurize_benchmark_prints_every_row(shared_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "featurize.py"), "--repeats", "1", "--limit", "300"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("300 USPTO-50K test products"), result.stdout
    for row in ("Chem.MolFromSmiles, Mol dropped (baseline)", "torch_geometric from_smiles",
                "parse_hydrogen_free, Mol dropped", "featurize_many workers=1", "featurize_many workers=2"):
        assert any(line.startswith(row) for line in lines), f"row {row!r} missing from:\n{result.stdout}"
    assert lines[-1].startswith("targets:"), result.stdout


def test_featurize_hostile_benchmark_prints_every_row() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "featurize_hostile.py"), "--repeats", "1",
         "--lengths", "1000,5000"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("default limit: max_length = MAX_SMILES_LENGTH"), result.stdout
    for shape, tables in (("'[' * n", 2), ("'C' * n", 2), ("'C(' * n/2", 1)):
        for method in ("Chem.MolFromSmiles (baseline)", "smiles_to_graph", "featurize_many"):
            rows = [line for line in lines if line.startswith(f"{shape:12s} {method}")]
            assert len(rows) == tables, f"{shape} {method} rows missing from:\n{result.stdout}"
    refused = [line for line in lines if line.startswith("'C' * n      featurize_many")]
    assert refused[0].endswith("refused: over the length limit")  # 5,000 characters, over the default limit
    assert refused[1].endswith("graph of 5,000 atoms")  # the same with the limit lifted
    assert lines[-1].startswith("targets:"), result.stdout


def test_yield_baselines_benchmark_prints_every_row() -> None:
    fixture = ROOT / "tests" / "fixtures" / "suzuki_miyaura_40.tsv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "yield_baselines.py"), "--data", str(fixture), "--epochs", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "28 training and 12 test reactions from suzuki_miyaura_40.tsv", result.stdout
    for row in ("trivial: the training mean yield (prior)", "component identity: one-hot sides -> MLP",
                "rxn-yield-suzuki (zoo eval)"):
        assert any(line.startswith(row) and len(line.split()) > 4 for line in lines), f"row {row!r} missing:\n{result.stdout}"
    assert lines[-1].startswith("published (same split)"), result.stdout


def test_reaction_inference_benchmark_prints_every_row(shared_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reaction_inference.py"), "--n", "3", "--batch-size", "4"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for row in ("seq2seq (baseline)", "template model"):
        assert any(line.startswith(row) for line in lines), f"row {row!r} missing from:\n{result.stdout}"
