"""Smoke runs of the benchmark scripts on a few inputs, so a script that no longer runs is caught here.

They check that every row is printed, never how fast anything is: speed targets are read off full runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_audio_lm_baselines_put_the_prior_beside_a_models_results(tmp_path: Path) -> None:
    """A results file whose rows score exactly what the prior scores must give the prior's column again."""
    import json

    from tasks.data.audio_scenes import generate_audio_scenes
    from tasks.data.scene_baselines import vqa_prior
    from tasks.metrics import vqa_accuracy

    generate_audio_scenes(tmp_path / "train", 30, seed=0)
    generate_audio_scenes(tmp_path / "test", 10, seed=2)
    read = lambda split: [json.loads(line) for line in (tmp_path / split / "qa.jsonl").read_text().splitlines()]  # noqa: E731
    prior = vqa_prior(read("train"))
    test = read("test")
    rows = [{"index": i, "score": vqa_accuracy(prior[r["question_type"]], r["answers"])} for i, r in enumerate(test)]
    (tmp_path / "results.json").write_text(json.dumps({"num_rows": len(test), "rows": rows}))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "audio_lm_baselines.py"), str(tmp_path / "train"),
         str(tmp_path / "test"), "--qa-results", f"echo={tmp_path / 'results.json'}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"30 training and 10 test clips; {len(test)} test questions", result.stdout
    table = {line[:14].strip(): line[14:].split() for line in lines[2:-1]}
    assert {"all", "yes_no", "number", "other", "count", "first", "exists"} <= set(table), result.stdout
    for group, cells in table.items():
        assert cells[1] == cells[2], f"{group}: the echoed column differs from the prior's:\n{result.stdout}"
    expected = sum(r["score"] for r in rows) / len(rows)
    assert float(table["all"][1]) == pytest.approx(expected, abs=1e-4)
    assert next(line for line in lines if line.startswith("  first ")).endswith(repr(prior["first"]))
    assert lines[-1].startswith("constant caption (most common training caption): bleu4 "), result.stdout


def test_family_overhead_benchmark_prints_both_calls_of_every_family() -> None:
    """Each family gives a forward and a generate line on which the zoo, loading the checkpoint by its
    ``model_type``, computed what transformers computed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "family_overhead.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for family in ("llava", "llava_next", "blip-2", "instructblip", "qwen2_audio", "t5", "bart"):
        forward = [line for line in lines if line.startswith(f"{family} forward ")]
        generate = [line for line in lines if line.startswith(f"{family} generate 2 ")]
        assert len(forward) == len(generate) == 1, f"{family} lines missing from:\n{result.stdout}"
        assert all(float(cell) > 0 for cell in forward[0].split()[2:10]), forward[0]  # times, MiB and ratios
        assert float(forward[0].split("max|dlogit|")[1]) < 1e-4, forward[0]
        assert generate[0].endswith("same tokens: True"), generate[0]
    assert lines[-1].startswith("target: zoo / reference <= 1.05"), result.stdout


def test_forgetting_benchmark_prints_one_row_per_method() -> None:
    """Every method gets a row whose forgetting is A before - A after; the merges at ratio 0 and 1 are the A model
    and the sequential LoRA model, so they must score exactly what those do."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "forgetting.py"), "--quick", "--alphas", "0,1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method "))
    table = {line[:14].strip(): [float(cell) for cell in line[14:].split()] for line in lines[header + 1:-2]}
    assert list(table) == ["lora", "loramoe", "olora", "hma a=0", "hma a=1"], result.stdout
    for method, (before, after, forgetting, b_score) in table.items():
        assert forgetting == pytest.approx(before - after, abs=1.5e-3), f"{method}: {result.stdout}"
        assert all(0.0 <= score <= 1.0 for score in (before, after, b_score)), f"{method}: {result.stdout}"
    lora = table["lora"]
    assert table["hma a=0"][1] == lora[0], result.stdout  # the A model scores its own A score
    assert table["hma a=1"][1:] == lora[1:], result.stdout  # the sequential model's A after, forgetting, B
    assert lines[-2].startswith("run time: "), result.stdout
    assert lines[-1].startswith("target "), result.stdout
