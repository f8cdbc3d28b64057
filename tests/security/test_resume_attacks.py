"""Resume attacks: a damaged checkpoint is passed over for the one before it, unreadable random states are an
error unless --allow-rng-reset, a pickle planted as a random state is never executed, and a new checkpoint is
verified before an older one is deleted."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

import zoo
from tests.helpers import launch_two_cpu_processes
from zoo.cli import app
from zoo.io import sha256_file
from zoo.training import TrainingConfig, TrainingError, finetune
from zoo.training.checkpoint import Checkpoints
from zoo.training.manifest import MANIFEST_FILE, IncompleteError

SETTINGS = {"max_steps": 3, "batch_size": 4, "grad_accum": 2, "lr": 1e-2, "save_every": 1, "progress": False}
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "black": (0, 0, 0)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 one-shape scenes in a VQA manifest."""
    root = tmp_path_factory.mktemp("scenes")
    rows = []
    for i, (colour, shape) in enumerate((c, s) for c in COLOURS for s in ("circle", "square")):
        image = Image.new("RGB", (48, 48), "white")
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "circle" else draw.rectangle)((12, 12, 36, 36), fill=COLOURS[colour])
        image.save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "question": f"What colour is the {shape}?", "answers": [colour]})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def _finetune(data: Path, output_dir: Path, **settings):
    return finetune(zoo.build("tiny-test-vlm"), "vqa", data, "align", output_dir, **{**SETTINGS, **settings})


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """An uninterrupted 3-step run; it keeps the checkpoints of steps 2 and 3."""
    out = tmp_path_factory.mktemp("finished")
    _finetune(data, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}"


def _final(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "truncated weights": (lambda ck: _truncate(ck / "trainable.safetensors"), "trainable.safetensors has .* bytes"),
    "no manifest": (lambda ck: (ck / MANIFEST_FILE).unlink(), "it has no manifest.json"),
    "altered optimizer": (lambda ck: _flip_byte(ck / "optimizer.bin"), "optimizer.bin does not match its sha256"),
    "deleted scheduler": (lambda ck: (ck / "scheduler.bin").unlink(), "scheduler.bin is missing"),
    "planted file": (lambda ck: (ck / "model.safetensors").write_bytes(b"x"), "it holds files .* does not list: model.safetensors"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(finished, run, data, damage):
    apply, reason = DAMAGE[damage]
    apply(_checkpoint(run, 3))
    with pytest.warns(UserWarning, match=f"ignoring incomplete checkpoint .*step-00000003: {reason}.*step-00000002"):
        result = _finetune(data, run)
    assert result.resumed_from_step == 2 and result.steps == 3
    resumed, uninterrupted = _final(run), _final(finished)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)  # step 3 redone, bit for bit
    Checkpoints.check(_checkpoint(run, 3))  # rewritten complete


def test_no_complete_checkpoint_is_an_error_naming_each(run, data):
    _truncate(_checkpoint(run, 3) / "trainable.safetensors")
    (_checkpoint(run, 2) / MANIFEST_FILE).unlink()
    with pytest.raises(TrainingError, match=r"no checkpoint in .* is complete.*step-00000003: trainable.safetensors "
                                            r"has .*step-00000002: it has no manifest.json.*new output_dir"):
        _finetune(data, run)


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_an_unreadable_rng_state_is_an_error_naming_the_file_and_the_flag(run, data, damage):
    rng = _checkpoint(run, 3) / "random_states_0.pkl"
    rng.write_bytes(b"not a pickle") if damage == "corrupt" else rng.unlink()
    before = _final(run)
    with pytest.raises(TrainingError, match=r"random state .*step-00000003/random_states_0.pkl.*--allow-rng-reset"):
        _finetune(data, run)
    assert all(torch.equal(v, before[k]) for k, v in _final(run).items())  # nothing was written


def test_allow_rng_reset_warns_and_continues(finished, run, data):
    shutil.rmtree(_checkpoint(run, 3))
    (_checkpoint(run, 2) / "random_states_0.pkl").write_bytes(b"not a pickle")
    options = {"max_steps": "--max-steps", "batch_size": "--batch-size", "lr": "--lr"}
    args = ["finetune", "tiny-test-vlm", "--task", "vqa", "--data", str(data), "--stage", "align", "-o", str(run),
            *(f"{options[k]}={v}" if k in options else f"--set={k}={v}" for k, v in SETTINGS.items()),
            "--allow-rng-reset"]
    with pytest.warns(UserWarning, match=r"random_states_0.pkl.*resuming from step-00000002 .*allow_rng_reset"):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == 2
    resumed, uninterrupted = _final(run), _final(finished)  # nothing here draws random numbers: still identical
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


@pytest.mark.slow
def test_two_processes_fall_back_together(finished, run, data):
    """The main process picks the checkpoint and the other follows; a second process without a saved random
    state of its own (the run was written by one) starts from the seed, with a warning."""
    _truncate(_checkpoint(run, 3) / "trainable.safetensors")
    done = launch_two_cpu_processes(
        "-m", "zoo.cli", "finetune", "tiny-test-vlm", "--task", "vqa", "--data", str(data), "--stage", "align",
        "-o", str(run), "--max-steps", "3", "--batch-size", "4", "--lr", "0.01",
        *(f"--set={k}={v}" for k, v in SETTINGS.items() if k in ("grad_accum", "save_every", "progress")),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("ignoring incomplete checkpoint") == 1  # warned once, by the main process
    assert "step-00000002 holds random states for 1 process(es)" in done.stderr
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == 2
    resumed, uninterrupted = _final(run), _final(finished)
    assert max(float((resumed[k] - uninterrupted[k]).abs().max()) for k in resumed) < 1e-5


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_pickle_planted_as_rng_state_is_refused_and_never_run(run, data, tmp_path):
    """Even with its manifest entry rewritten to match, the pickle is read with weights_only and never runs."""
    marker = tmp_path / "executed"
    checkpoint = _checkpoint(run, 3)
    rng = checkpoint / "random_states_0.pkl"
    rng.write_bytes(pickle.dumps(_Planted(marker), protocol=2))  # protocol 2 reaches the global
    manifest = json.loads((checkpoint / MANIFEST_FILE).read_text())
    manifest["files"][rng.name] = {"sha256": sha256_file(rng), "size": rng.stat().st_size}
    (checkpoint / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(TrainingError, match="random_states_0.pkl.*--allow-rng-reset"):
        _finetune(data, run)
    with pytest.warns(UserWarning, match="random_states_0.pkl"):
        assert _finetune(data, run, allow_rng_reset=True).resumed_from_step == 3
    assert not marker.exists()


def test_a_new_checkpoint_is_verified_before_an_older_one_is_deleted(data, tmp_path, monkeypatch):
    check = Checkpoints.check

    def fails_at_step_3(path: Path) -> None:
        if path.name == "step-00000003":
            raise IncompleteError("simulated bad write")
        check(path)

    monkeypatch.setattr(Checkpoints, "check", staticmethod(fails_at_step_3))
    with pytest.raises(TrainingError, match="step-00000003, does not verify: simulated bad write.*older checkpoints"):
        _finetune(data, tmp_path)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000001", "step-00000002", "step-00000003"]


def test_keeping_fewer_than_two_checkpoints_is_refused():
    with pytest.raises(TrainingError, match="keep_checkpoints must be at least 2"):
        TrainingConfig(keep_checkpoints=1)
