"""O-LoRA as the instruct stage's adapter in ``zoo finetune``: a second task's adapter beside the frozen first one,
its orthogonality penalty, save_pretrained / zoo.load round trip, folding in ``zoo merge`` and bit-exact resume,
on tiny-test-vlm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

import zoo
from tests.helpers import run_and_kill_after_first_checkpoint
from zoo.cli import app
from zoo.errors import WeightsError
from zoo.training import TrainingConfig, TrainingError, finetune
from zoo.training.merge import merge
from zoo.training.olora import OLoRALinear, OrthogonalityPenalty, olora_layers
from zoo.training.stages import apply_stage

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}
TARGETS = [f"language_model.model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
SETTINGS = {"batch_size": 4, "lr": 0.01, "progress": False, "adapter": "olora", "lora_r": 4, "save_every": 1}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two tasks over the same pictures: the colour (task 1) and the shape (task 2)."""
    root = tmp_path_factory.mktemp("scenes")
    colour_rows, shape_rows = [], []
    for i, (colour, shape) in enumerate([(c, s) for c in COLOURS for s in ("circle", "square")] * 2):
        image = Image.new("RGB", (32, 32), "white")
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "circle" else draw.rectangle)((8, 8, 24, 24), fill=COLOURS[colour])
        image.save(root / f"{i}.png")
        colour_rows.append({"id": f"c{i}", "image": f"{i}.png", "question": "What colour is it?", "answers": [colour]})
        shape_rows.append({"id": f"s{i}", "image": f"{i}.png", "question": "What shape is it?", "answers": [shape]})
    for name, rows in (("colour", colour_rows), ("shape", shape_rows)):
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


@pytest.fixture(scope="module")
def task1(scenes, tmp_path_factory):
    """tiny-test-vlm after O-LoRA on the colour task (its first task adapter)."""
    out = tmp_path_factory.mktemp("task1")
    return finetune(zoo.build("tiny-test-vlm"), "vqa", scenes / "colour.jsonl", "instruct", out, max_steps=2,
                    **SETTINGS)


def _task2_settings(lambda1: float) -> dict:
    return {**SETTINGS, "max_steps": 5, "lr_schedule": "constant", "warmup_ratio": 0.0, "olora_lambda1": lambda1,
            "olora_lambda2": 0.0}


def _task2(task1, scenes, out: Path, lambda1: float):
    return finetune(zoo.load(task1.final_dir), "vqa", scenes / "shape.jsonl", "instruct", out, **_task2_settings(lambda1))


@pytest.fixture(scope="module")
def task2(task1, scenes, tmp_path_factory):
    """The task-1 model fine-tuned with O-LoRA on the shape task, with a strong orthogonality weight."""
    return _task2(task1, scenes, tmp_path_factory.mktemp("task2"), lambda1=50.0)


@pytest.fixture(scope="module")
def batch(scenes):
    model = zoo.build("tiny-test-vlm")
    return model.processor(["<image> What colour is it?", "<image> What shape is it?"],
                           {"image": [[str(scenes / "0.png")], [str(scenes / "3.png")]]}, padding_side="left")


def _overlap(model: nn.Module) -> float:
    """How much the newest task's input subspace overlaps the first's, scale-free: ``||Q_1^T Q_2||_F^2`` summed over
    the layers, ``Q_t`` an orthonormal basis of the rows of ``A_t`` (0: orthogonal; r: the same subspace)."""
    total = 0.0
    for layer in olora_layers(model).values():
        first, newest = (torch.linalg.qr(a.detach().double().T)[0] for a in (layer.lora_A[0], layer.lora_A[-1]))
        total += float((first.T @ newest).square().sum())
    return total


def test_olora_is_an_instruct_setting():
    with pytest.raises(TrainingError, match="adapter='olora' is added by the instruct stage"):
        TrainingConfig(adapter="olora", stage="align")
    with pytest.raises(TrainingError, match="olora_lambda1 and olora_lambda2 must be >= 0"):
        TrainingConfig(adapter="olora", olora_lambda1=-1.0)


def test_each_task_adds_an_adapter_and_freezes_the_earlier_ones(task1, task2):
    first, second = task1.model.state_dict(), task2.model.state_dict()
    layers = olora_layers(task2.model)
    assert sorted(layers) == TARGETS and all(layer.num_tasks == 2 for layer in layers.values())
    new = {f"{n}.lora_{m}.1" for n in TARGETS for m in "AB"}
    assert second.keys() == first.keys() | new
    changed = {k for k in first if not torch.equal(first[k], second[k])}
    assert changed == {k for k in first if k.startswith("projectors.")}  # task 1's adapters and the LLM are kept
    assert all(second[k].abs().sum() > 0 for k in new if ".lora_B." in k)  # the new adapter trained
    trainable = {n for n, p in task2.model.named_parameters() if p.requires_grad}
    assert trainable == new | {k for k in first if k.startswith("projectors.")}


def test_the_penalty_is_the_papers_overlap_and_norm_terms():
    torch.manual_seed(0)
    layer = OLoRALinear(nn.Linear(6, 5))
    layer.add_task(2, 4.0)
    layer.add_task(3, 6.0)
    model = nn.Sequential(layer)
    old, new_a, new_b = layer.lora_A[0], layer.lora_A[1], layer.lora_B[1]
    overlap = (old @ new_a.T).abs().sum()
    torch.testing.assert_close(OrthogonalityPenalty(0.5, 0.0)(model), 0.5 * overlap)
    torch.testing.assert_close(OrthogonalityPenalty(0.0, 2.0)(model), 2.0 * (new_a.norm() + new_b.norm()))
    assert not old.requires_grad and new_a.requires_grad
    x = torch.randn(4, 6)
    with torch.no_grad():
        new_b.normal_()
    expected = (x @ layer.weight.T + layer.bias) + 2.0 * (x @ old.T @ layer.lora_B[0].T) + 2.0 * (x @ new_a.T @ new_b.T)
    torch.testing.assert_close(layer(x), expected)


def test_the_penalty_drives_the_new_subspace_toward_orthogonality(task1, task2, scenes, tmp_path):
    start = zoo.load(task1.final_dir)
    torch.manual_seed(0)  # the trainer seeds with its seed, 0, right before it adds the adapter
    apply_stage(start, TrainingConfig(adapter="olora", lora_r=4))  # so this is the new adapter both runs start from
    free = _task2(task1, scenes, tmp_path / "free", lambda1=0.0)
    initial, unconstrained, constrained = _overlap(start), _overlap(free.model), _overlap(task2.model)
    measured = f"subspace overlap: initial {initial:.4f}, lambda1=0 {unconstrained:.4f}, lambda1=50 {constrained:.4f}"
    assert initial > 0.5, measured  # random 4-dim subspaces of a 64-dim space: about 16 / 64 per layer
    assert constrained < 0.5 * initial and constrained < 0.5 * unconstrained, measured


def test_the_saved_model_reloads_to_identical_outputs_and_strictly(task2, batch, tmp_path):
    config = json.loads((task2.final_dir / "config.json").read_text())
    assert config["adapters"]["olora"]["layers"][TARGETS[0]] == {"ranks": [4, 4], "alphas": [16.0, 16.0],
                                                                 "dropout": 0.0}
    loaded = zoo.load(task2.final_dir)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, task2.model.eval()(**batch).logits)
    shutil.copytree(task2.final_dir, tmp_path / "one-task")
    config["adapters"]["olora"]["layers"][TARGETS[0]].update(ranks=[4], alphas=[16.0])
    (tmp_path / "one-task" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="unexpected key.*q_proj.lora_A.1"):
        zoo.load(tmp_path / "one-task")


def test_zoo_merge_folds_the_task_adapters_exactly(task2, batch, tmp_path):
    folded = merge(zoo.build("tiny-test-vlm"), task2.model, 1.0).eval()
    assert not olora_layers(folded) and olora_layers(task2.model)
    with torch.no_grad():
        torch.testing.assert_close(folded(**batch).logits, task2.model.eval()(**batch).logits, rtol=1e-4, atol=1e-5)
    result = CliRunner().invoke(app, ["merge", "tiny-test-vlm", str(task2.final_dir), "--alpha", "1",
                                      "-o", str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    assert "adapters" not in json.loads((tmp_path / "plain" / "config.json").read_text())


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "step" in r]


@pytest.mark.slow
def test_a_second_task_killed_mid_run_resumes_to_the_same_weights(task1, task2, scenes, tmp_path):
    """`zoo finetune` of the second task (the task2 fixture's settings) SIGKILLed after its first checkpoint and
    run again ends on the uninterrupted run's weights, the frozen first adapter and the penalty included."""
    out = tmp_path / "killed"
    args = ["finetune", str(task1.final_dir), "--task", "vqa", "--data", str(scenes / "shape.jsonl"),
            "--stage", "instruct", "-o", str(out), *(f"--set={k}={v}" for k, v in _task2_settings(50.0).items())]
    run_and_kill_after_first_checkpoint(args, out)
    result = CliRunner().invoke(app, args)  # the same command again resumes
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 1
    a, b = load_file(out / "final" / "model.safetensors"), load_file(task2.final_dir / "model.safetensors")
    assert a.keys() == b.keys() and any(".lora_A.1" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(out) == _losses(task2.output_dir)
