"""The ``zoo`` CLI: list, info, errors, and the demo."""

from __future__ import annotations

import subprocess
import sys

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
