"""``zoo -v / -vv / -q``: the package loggers' level and stderr handler, and progress bars off under -q."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from zoo.cli import PACKAGE_LOGGERS, app

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_logging_and_environment(monkeypatch):
    """The options set process-wide state (logger levels and handlers, the tqdm and Hub switches): undo it."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in PACKAGE_LOGGERS}
    yield
    for name, (level, handlers) in saved.items():
        log = logging.getLogger(name)
        log.setLevel(level)
        log.handlers[:] = handlers
    os.environ.pop("TQDM_DISABLE", None)  # set by -q outside monkeypatch's knowledge
    os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)

    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.enable_progress_bars()


@pytest.fixture
def logging_demo(monkeypatch):
    """``zoo demo`` replaced by a function that logs one record at each level from package modules."""

    def run_demo(output_dir, **kwargs):
        logging.getLogger("zoo.demo").debug("debug line")
        logging.getLogger("zoo.demo").info("loaded scene-clip-tiny in 0.1 s")
        logging.getLogger("encoders.molecule").warning("warning line")
        logging.getLogger("tasks.data").error("error line")

    monkeypatch.setattr("zoo.demo.run_demo", run_demo)


def _demo(tmp_path, *options: str):
    result = runner.invoke(app, [*options, "demo", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return result.stderr


def test_default_shows_warnings_and_errors_only(logging_demo, tmp_path):
    err = _demo(tmp_path)
    assert "WARNING encoders.molecule: warning line" in err and "ERROR tasks.data: error line" in err
    assert "loaded" not in err and "debug line" not in err
    assert "TQDM_DISABLE" not in os.environ


def test_v_adds_info_and_vv_adds_debug(logging_demo, tmp_path):
    err = _demo(tmp_path, "-v")
    assert "INFO zoo.demo: loaded scene-clip-tiny in 0.1 s" in err and "debug line" not in err
    assert "WARNING encoders.molecule: warning line" in err
    err = _demo(tmp_path, "-vv")
    assert "DEBUG zoo.demo: debug line" in err and "INFO zoo.demo: loaded" in err
    err = _demo(tmp_path, "--verbose", "--verbose")
    assert "DEBUG zoo.demo: debug line" in err


def test_each_record_is_written_once_however_often_the_options_run(logging_demo, tmp_path):
    for _ in range(3):
        err = _demo(tmp_path, "-v")
    assert err.count("loaded scene-clip-tiny") == 1
    assert all(len(logging.getLogger(name).handlers) == 1 for name in PACKAGE_LOGGERS)


def test_q_keeps_warnings_and_turns_progress_bars_off(logging_demo, tmp_path):
    err = _demo(tmp_path, "-q")
    assert "warning line" in err and "error line" in err and "loaded" not in err
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_q_turns_off_bars_made_after_it_as_in_a_cli_run():
    """tqdm reads TQDM_* when it is imported, so check in a fresh process, where (as in `zoo -q ...`) the option
    is applied before anything imports tqdm."""
    code = ("from zoo.cli import configure_logging; configure_logging(quiet=True)\n"
            "from tqdm.auto import tqdm\n"
            "bar = tqdm(total=2); print('disabled' if bar.disable else 'shown')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "disabled"


def test_q_turns_off_the_eval_progress_bars(monkeypatch):
    given = {}
    monkeypatch.setattr("zoo.loading.load", lambda name, **kwargs: "the model")
    monkeypatch.setattr("zoo.evaluation.evaluate.evaluate",
                        lambda model, *a, **k: given.update(k) or {"metrics": {}, "num_rows": 0, "num_failed": 0})
    command = ["eval", "tiny-test-vlm", "-t", "vqa", "-d", "x"]
    assert runner.invoke(app, command).exit_code == 0 and given["progress"] is True
    assert runner.invoke(app, ["-q", *command]).exit_code == 0 and given["progress"] is False
    result = runner.invoke(app, ["-q", *command, "--set", "progress=true"])  # an explicit --set still wins
    assert result.exit_code == 0 and given["progress"] is True


def test_q_turns_off_the_finetune_progress_bar(monkeypatch, tmp_path):
    from types import SimpleNamespace

    given = {}
    done = SimpleNamespace(steps=1, loss=0.5, num_examples=2, failed_rows=[], final_dir=tmp_path / "final")
    monkeypatch.setattr("zoo.loading.load", lambda name, **kwargs: "the model")
    monkeypatch.setattr("zoo.training.finetune", lambda *a, **k: given.update(k) or done)
    command = ["finetune", "tiny-test-vlm", "-t", "vqa", "-d", "x", "-o", str(tmp_path)]
    assert runner.invoke(app, command).exit_code == 0 and given["progress"] is True
    assert runner.invoke(app, ["-q", *command]).exit_code == 0 and given["progress"] is False


def test_v_and_q_together_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["-v", "-q", "list"])
    assert result.exit_code == 2 and "give --verbose or --quiet, not both" in result.output


def test_results_still_go_to_stdout_and_help_lists_the_options():
    listed = runner.invoke(app, ["-q", "list"])
    assert listed.exit_code == 0 and any(line.startswith("tiny-test-vlm") for line in listed.stdout.splitlines())
    text = runner.invoke(app, ["--help"]).output
    assert "--verbose" in text and "--quiet" in text and "modalzoo: multimodal models by name." in text
