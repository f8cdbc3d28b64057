"""The text-only ChEBI-20 tasks, ``chebi20-smiles2caption`` and ``chebi20-caption2smiles``, run end to end by
``zoo eval`` on a tiny random T5 checkpoint (the ``t5`` family, built as ``tests/test_t5_checkpoints.py`` builds
it) over the real 100-row ChEBI-20 sample: the raw SMILES or description is the whole model input, every metric
key is there and in range, and a row with an empty cell fails and stays counted."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, T5ForConditionalGeneration
from typer.testing import CliRunner

import zoo
from encoders.text.tokenizers import load_tokenizer
from tests.test_t5_checkpoints import TINY_T5
from zoo.cli import app

SAMPLE = Path(__file__).resolve().parents[1] / "tasks" / "samples" / "chebi20-test-100.tsv"
SHORT = "generation.max_new_tokens=8"  # the task's beam search (5 beams), cut short for a random model
CAPTION_KEYS = {"bleu2", "bleu4", "rouge1_f_no_stemming", "rouge2_f_no_stemming", "rougeL_f_no_stemming", "meteor_exact"}
MOLT5_KEYS = {"molt5_bleu", "molt5_exact_match", "molt5_levenshtein", "molt5_validity", "molt5_num_invalid",
              "molt5_maccs_fts", "molt5_rdk_fts", "molt5_morgan_fts"}
# task -> (the column the model reads, the reference column, the metric keys)
TASKS = {
    "chebi20-smiles2caption": ("SMILES", "description", CAPTION_KEYS),
    "chebi20-caption2smiles": ("description", "SMILES", MOLT5_KEYS),
}
pytestmark = pytest.mark.usefixtures("hub_offline")  # every file here is local


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random T5ForConditionalGeneration saved like a Hub repo, with its tokenizer."""
    root = tmp_path_factory.mktemp("t5") / "checkpoint"
    torch.manual_seed(0)
    T5ForConditionalGeneration(AutoConfig.for_model("t5", **TINY_T5)).save_pretrained(root)
    load_tokenizer("bundled:tiny-bpe").save_pretrained(root)
    return root


def zoo_eval(checkpoint: Path, task: str, data: Path, out: Path) -> dict:
    result = CliRunner().invoke(app, ["-q", "eval", f"hf:{checkpoint}", "--task", task, "--data", str(data),
                                      "-o", str(out), "--set", SHORT])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def check_ranges(metrics: dict[str, float], rows: int) -> None:
    for key, value in metrics.items():
        if key == "molt5_levenshtein":
            assert value > 0, key  # a random model never writes the reference
        elif key == "molt5_num_invalid":
            assert value == int(value) and 0 <= value <= rows, key
        elif key.endswith("_fts") and math.isnan(value):  # averaged over valid predictions: NaN when there are none
            assert metrics["molt5_validity"] == 0.0, key
        else:
            assert 0.0 <= value <= 1.0, key


@pytest.mark.parametrize("task", sorted(TASKS))
def test_zoo_eval_scores_every_sample_row_with_the_raw_text_as_the_whole_input(checkpoint, task, tmp_path):
    source, target, keys = TASKS[task]
    results = zoo_eval(checkpoint, task, SAMPLE, tmp_path)
    assert results["task"]["modality"] is None and results["task"]["prompt_template"] == f"{{{source}}}"
    assert (results["num_rows"], results["num_failed"], results["failures"]) == (100, 0, [])
    assert set(results["metrics"]) == keys  # no scored_fraction: every row was scored
    check_ranges(results["metrics"], 100)
    rows = results["rows"]
    sample = [line.split("\t") for line in SAMPLE.read_text(encoding="utf-8").rstrip("\n").split("\n")]
    header, records = sample[0], sample[1:]
    assert [r["item"] for r in rows] == [rec[header.index(source)] for rec in records]
    assert [r["reference"] for r in rows] == [rec[header.index(target)] for rec in records]
    # MolT5's input: the cell itself, no instruction around it (the model's own generation from the raw text)
    model = zoo.load(f"hf:{checkpoint}")
    generation = {**results["task"]["generation"], "max_new_tokens": 8}
    assert [r["prediction"] for r in rows[:3]] == model.generate_text([r["item"] for r in rows[:3]], **generation)
    assert len({r["prediction"] for r in rows}) > 1  # not one output for every input


def _with_empty_cell(column: str, row: int, rows: int, tmp_path: Path) -> Path:
    """The sample's first ``rows`` rows with ``column`` emptied in row ``row``."""
    lines = SAMPLE.read_text(encoding="utf-8").rstrip("\n").split("\n")[: rows + 1]
    cells = lines[row + 1].split("\t")
    cells[lines[0].split("\t").index(column)] = ""
    lines[row + 1] = "\t".join(cells)
    path = tmp_path / "chebi20.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("task", "column"), [
    ("chebi20-smiles2caption", "description"),
    ("chebi20-caption2smiles", "SMILES"),
    ("chebi20-smiles2caption", "SMILES"),  # the text input itself
    ("chebi20-caption2smiles", "description"),
])
def test_a_row_with_an_empty_cell_fails_and_stays_in_the_denominator(checkpoint, task, column, tmp_path):
    data = _with_empty_cell(column, 3, 10, tmp_path)
    results = zoo_eval(checkpoint, task, data, tmp_path / "out")
    assert (results["num_rows"], results["num_failed"]) == (10, 1)
    failure = results["failures"][0]
    assert (failure["index"], failure["source"], failure["stage"]) == (3, "chebi20.tsv:5", "fields")
    assert f"{column!r} is empty" in failure["error"]
    row = results["rows"][3]
    assert (row["prediction"], row["score"]) == (None, 0.0) and row["error"] == failure["error"]
    assert results["metrics"]["scored_fraction"] == pytest.approx(0.9)
    assert set(results["metrics"]) == TASKS[task][2] | {"scored_fraction"}
    check_ranges(results["metrics"], 10)
    metrics = results["metrics"]
    if "molt5_num_invalid" in metrics:  # the failed row is an invalid prediction in the count as in the rate
        assert metrics["molt5_num_invalid"] == pytest.approx(10 * (1 - metrics["molt5_validity"]))


def test_the_baseline_script_scores_both_tasks_on_a_chebi20_folder(tmp_path):
    """``benchmarks/chebi20_text_baselines.py`` on a folder whose validation and test splits are the sample."""
    for split in ("validation", "test"):
        (tmp_path / f"{split}.txt").write_bytes(SAMPLE.read_bytes())
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "chebi20_text_baselines.py"
    out = subprocess.run([sys.executable, str(script), "--data", str(tmp_path), "--pool", "2", "--select-rows", "10"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for task, (_, _, keys) in TASKS.items():
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{task}: 100 test rows"))
        header, *rows = lines[start + 1 : start + 5]
        assert set(header.split()[1:]) == keys
        assert [row.rsplit(None, len(keys))[0] for row in rows] == ["fixed validation answer", "copy the input", "empty output"]
        if task == "chebi20-caption2smiles":
            empty = dict(zip(header.split()[1:], map(float, rows[2].split()[2:]), strict=True))
            assert empty["molt5_validity"] == 1.0  # MolT5's evaluation parses '' as a molecule


@pytest.mark.parametrize(("profile", "rates"), [
    ("molt5", {"molt5_exact_match", "molt5_validity"}),
    ("strict", {"canonical_exact_match", "validity", "maccs_tanimoto", "rdk_tanimoto", "morgan2_2048_tanimoto"}),
])
def test_molecule_generation_rates_count_failed_rows_as_misses(profile, rates):
    """Exact match, validity and the all-rows similarities are means over rows: a row that failed before scoring
    must lower them (evaluate scales rate keys by the rows that ran); BLEU, Levenshtein and valid-only means not."""
    from zoo.evaluation.scoring import molecule_generation

    scores = molecule_generation(["CCO", "c1ccccc1"], ["CCO", "c1ccccc1"], profile=profile)
    assert set(scores.rate_keys) == rates and rates <= set(scores.summary)


def _recorded(generate, calls: list, **kwargs):
    calls.append(generate(**kwargs))
    return calls[-1]


def test_evaluation_keeps_a_checkpoints_length_bound_when_the_task_sets_none(checkpoint, tmp_path):
    """A generation_config.json ``max_length`` bounds ``zoo eval``'s answers when the task gives no length; the
    runner's own 32-new-token default applies only when neither does."""
    import shutil

    from tasks.config import load_task

    bounded = tmp_path / "bounded"
    shutil.copytree(checkpoint, bounded)
    (bounded / "generation_config.json").write_text(json.dumps({"max_length": 3}))
    data = tmp_path / "four.tsv"
    data.write_text("\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:5]) + "\n", encoding="utf-8")
    task = load_task("chebi20-smiles2caption", generation={"num_beams": 1})  # no length of its own
    widths = {}
    for name, path in (("bounded", bounded), ("default", checkpoint)):
        model = zoo.load(f"hf:{path}")
        calls = []
        model.generate = functools.partial(_recorded, model.generate, calls)
        assert zoo.evaluate(model, task, data, batch_size=4, progress=False)["num_failed"] == 0
        widths[name] = calls[0].shape[1]
    assert widths["bounded"] <= 2 < widths["default"] <= 32  # max_length counts the decoder's start token
