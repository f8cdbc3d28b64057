"""The ``zoo`` CLI: list (with where each card's files come from), info, errors, the demo, and the loading
options of eval, finetune and demo."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from zoo.cli import app

runner = CliRunner()


def test_list_shows_names_with_descriptions():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("tiny-test-vlm"))
    assert "Random-init tiny vision-language model" in line


def test_info_prints_spec_and_licence():
    result = runner.invoke(app, ["info", "tiny-test-vlm"])
    assert result.exit_code == 0
    assert "licence: apache-2.0" in result.output and "model_name: vit_tiny_patch16_224" in result.output


def test_unknown_name_exits_2_with_suggestion():
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "info", "tiny-vlm"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "no model named 'tiny-vlm'. Did you mean: tiny-test-vlm?" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_prints_the_table_and_writes_the_index_report(tmp_path):
    from zoo.demo import DEMO_EVALS, run_demo

    clip = [d for d in DEMO_EVALS if d.model == "scene-clip-tiny"]
    rows = run_demo(tmp_path, tuple(clip))
    assert [r["model"] for r in rows] == ["scene-clip-tiny"] and rows[0]["failed"] == 0
    assert rows[0]["metrics"] == {m: rows[0]["card_sample"][m] for m in clip[0].metrics}
    index = (tmp_path / "report.html").read_text()
    assert 'href="scene-clip-tiny--retrieval/report.html"' in index
    assert (tmp_path / "scene-clip-tiny--retrieval" / "report.html").is_file()


def test_eval_list_tasks_prints_the_builtin_tasks_without_torch():
    """The option `zoo eval --help` points to; it needs no model, task or data and stays cheap."""
    from tasks.config import builtin_tasks, load_task

    result = runner.invoke(app, ["eval", "--list-tasks"])
    assert result.exit_code == 0, result.output
    assert result.output == runner.invoke(app, ["tasks"]).output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == builtin_tasks()
    assert lines[builtin_tasks().index("vqa")].endswith(load_task("vqa").description)
    code = (
        "import sys; from typer.testing import CliRunner; from zoo.cli import app; "
        "assert CliRunner().invoke(app, ['eval', '--list-tasks']).exit_code == 0; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_list_shows_where_each_card_gets_its_files():
    lines = {line.split()[0]: line.split()[1] for line in runner.invoke(app, ["list"]).output.splitlines()}
    assert lines["scene-clip-tiny"] == "bundled"
    assert lines["smiles-albert-uspto"] == "package"
    assert lines["all-minilm-l6-v2"] == "package,hub"
    assert lines["openclip-vit-b-32-openai"] == "hub"  # the spec's open_clip tag, fetched from the Hub
    assert lines["pretrain-gnns-gcn-contextpred"] == "url"
    assert lines["tiny-test-vlm"] == "-"  # random init: no files
    listed = json.loads(runner.invoke(app, ["list", "moltext-*", "--json"]).output)
    assert listed[0]["sources"] == ["bundled", "package", "hub"]


def test_a_weight_entry_without_a_source_is_marked_weights_dir():
    from zoo.cards import parse_card, source_kinds

    text = ("---\nname: mine\ndescription: d\nlicense: mit\nspec: {type: encoder}\n"
            f"weights: [{{file: w.safetensors, sha256: '{'0' * 64}'}}]\n---\n")
    assert source_kinds(parse_card(text, "mine.md")) == ["weights-dir"]


@pytest.fixture
def loads(monkeypatch) -> list[dict]:
    """``zoo.load`` replaced by a recorder of its arguments (returning a stand-in model)."""
    calls: list[dict] = []

    def load(name, **kwargs):
        calls.append({"name": name, **kwargs})
        return "the model"

    monkeypatch.setattr("zoo.loading.load", load)
    return calls


LOAD_OPTIONS = ["--weights-dir", "W", "--device", "cpu", "--dtype", "bfloat16"]


def test_eval_and_finetune_pass_weights_dir_device_and_dtype_to_zoo_load(loads, monkeypatch):
    import torch

    given = []
    monkeypatch.setattr("zoo.evaluation.evaluate.evaluate", lambda model, *a, **k: given.append(model) or
                        {"metrics": {}, "num_rows": 0, "num_failed": 0})
    result = SimpleNamespace(steps=1, loss=0.5, num_examples=1, failed_rows=[], final_dir="F")
    monkeypatch.setattr("zoo.training.finetune", lambda model, *a, **k: given.append(model) or result)
    for command in (["eval", "tiny-test-vlm", "-t", "vqa", "-d", "x"], ["finetune", "tiny-test-vlm", "-t", "vqa", "-d", "x"]):
        outcome = runner.invoke(app, [*command, *LOAD_OPTIONS])
        assert outcome.exit_code == 0, outcome.output
    expected = {"name": "tiny-test-vlm", "weights_dir": "W", "device": "cpu", "dtype": torch.bfloat16}
    assert loads == [expected, expected] and given == ["the model", "the model"]


def test_demo_passes_weights_dir_device_and_dtype_to_every_load(loads, monkeypatch, tmp_path):
    import torch

    from zoo.demo import DEMO_EVALS, run_demo

    seen = {}
    monkeypatch.setattr("zoo.demo.run_demo", lambda output_dir, **kwargs: seen.update(kwargs))
    assert runner.invoke(app, ["demo", "-o", str(tmp_path), *LOAD_OPTIONS]).exit_code == 0
    assert seen == {"weights_dir": "W", "device": "cpu", "dtype": torch.bfloat16}

    class Loaded(Exception):
        """Raised by the evaluation that follows the load: the test ends there."""

    def evaluate(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr("zoo.evaluate", evaluate, raising=False)  # zoo resolves it lazily; this sets it first
    yields = tuple(d for d in DEMO_EVALS if d.model == "rxn-yield-suzuki")  # no scenes to generate
    with pytest.raises(Loaded):
        run_demo(tmp_path, yields, **seen)
    assert loads == [{"name": "rxn-yield-suzuki", **seen}]


def test_an_unknown_dtype_is_a_usage_error(loads):
    outcome = runner.invoke(app, ["eval", "tiny-test-vlm", "-t", "vqa", "-d", "x", "--dtype", "half"])
    assert outcome.exit_code == 2 and "--dtype takes one of float32, float16, bfloat16" in outcome.output
    assert loads == []
