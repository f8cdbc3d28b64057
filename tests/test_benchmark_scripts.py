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
