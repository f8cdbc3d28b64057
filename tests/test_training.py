"""zoo.finetune: what each stage trains, bit-identical resume after SIGKILL, 1 vs 2 processes, logs and plot,
bad rows reported, LoRA merge, packing, early stopping and refused settings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

import zoo
from tasks.config import load_task
from tests.helpers import dual_encoder_spec, launch_two_cpu_processes, run_and_kill_after_first_checkpoint
from zoo.cli import app
from zoo.training import TrainingError, finetune, load_adapter, merge_lora
from zoo.training.data import LMCollator, batch_plan, build_examples

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """12 scenes (short and long questions, so packing packs), plus three bad rows: a corrupt image, a
    malformed line and a row without answers; and a 4-row validation file."""
    root = tmp_path_factory.mktemp("scenes")
    rows = []
    for i, (colour, shape) in enumerate([(c, s) for c in COLOURS for s in ("circle", "square")] * 2):
        image = Image.new("RGB", (48, 48), "white")
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(
            (12, 12, 36, 36), fill=COLOURS[colour]
        )
        image.save(root / f"{i}.png")
        question = f"What colour is the {shape}?" if i % 2 else f"Look closely at the {shape} in this picture. " * 6 + "Colour?"
        rows.append({"id": f"s{i}", "image": f"{i}.png", "question": question, "answers": [colour] * 3,
                     "captions": [f"a {colour} {shape}"]})
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    lines = [json.dumps(r) for r in rows]
    lines += [json.dumps({**rows[0], "image": "broken.png"}), "{not json", json.dumps({"image": "0.png", "question": "?"})]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:4]) + "\n")
    (root / "vqa-short.yaml").write_text("include: vqa\ngeneration: {max_new_tokens: 2, do_sample: false}\n")
    return root


def _cli_args(scenes: Path, output_dir: Path) -> list[str]:
    return ["finetune", "tiny-test-vlm", "--task", str(scenes / "vqa-short.yaml"), "--data", str(scenes / "train.jsonl"), "--stage", "instruct",
            "-o", str(output_dir), "--validation-data", str(scenes / "val.jsonl"), "--max-steps", "8",
            "--batch-size", "4", "--lr", "0.01", "--set", "save_every=1", "--set", "eval_every=4", "--set", "progress=false"]


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory) -> Path:
    """An uninterrupted `zoo finetune` run (in this process)."""
    out = tmp_path_factory.mktemp("reference")
    _invoke(_cli_args(scenes, out))
    return out


def _steps(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "step" in r]


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}


def _train(model, stage: str, tmp_path: Path, scenes: Path, task: str = "vqa", **settings):
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    settings = {"max_steps": 2, "batch_size": 4, "lr": 1e-2, "progress": False, **settings}
    result = finetune(model, task, scenes / "train.jsonl", stage, tmp_path, **settings)
    return before, result


@pytest.mark.parametrize(
    ("stage", "settings", "trained"),
    [
        ("align", {}, ("projectors.",)),
        ("align", {"unfreeze_encoder_blocks": 1}, ("projectors.", "encoders.image.model.blocks.1.")),
        ("full", {}, ("",)),
    ],
)
def test_each_stage_changes_exactly_its_parameters(scenes, tmp_path, stage, settings, trained):
    before, result = _train(zoo.build("tiny-test-vlm"), stage, tmp_path, scenes, **settings)
    expected = {k for k in before if k.startswith(trained)}
    assert _changed(before, result.model) == expected
    assert result.trainable_parameters == sum(before[k].numel() for k in expected)
    assert zoo.load(tmp_path / "final").state_dict().keys() == result.model.state_dict().keys()


@pytest.fixture(scope="module")
def instruct_run(scenes, tmp_path_factory):
    """tiny-test-vlm after two unmerged LoRA steps: (parameters before, result)."""
    return _train(zoo.build("tiny-test-vlm"), "instruct", tmp_path_factory.mktemp("instruct"), scenes, merge_lora=False)


def test_instruct_trains_projectors_and_lora_only(instruct_run):
    before, result = instruct_run
    params = dict(result.model.named_parameters())
    lora = {k for k in params if "lora_" in k}
    for key, value in params.items():
        if key in lora:
            continue
        original = key.replace("base_model.model.", "").replace(".base_layer", "")  # peft's names for base weights
        assert torch.equal(value, before[original]) != key.startswith("projectors."), key
    assert all(params[k].abs().sum() > 0 for k in lora if "lora_B" in k)  # lora_B starts at zero: it trained
    assert result.trainable_parameters == 6272 + sum(params[k].numel() for k in lora)


@pytest.mark.parametrize(("stage", "trained"), [("align", {"logit_scale", "projections.image.weight", "text_projection.weight"}),
                                                ("full", None)])
def test_dual_encoder_stages(scenes, tmp_path, stage, trained):
    before, result = _train(zoo.build(dual_encoder_spec()), stage, tmp_path, scenes, task="retrieval")
    assert _changed(before, result.model) == (trained or set(before))


def test_full_stage_keeps_frozen_prefixes_and_refuses_a_prefix_that_names_nothing(scenes, tmp_path):
    before, result = _train(zoo.build("tiny-test-vlm"), "full", tmp_path / "ok", scenes, frozen=["encoders"])
    assert _changed(before, result.model) == {k for k in before if not k.startswith("encoders.")}
    with pytest.raises(TrainingError, match="frozen prefix 'encoder' names no parameter"):
        _train(zoo.build("tiny-test-vlm"), "full", tmp_path / "typo", scenes, frozen=["encoder"])


def test_cached_frozen_tower_features_train_like_the_towers_themselves(scenes, tmp_path):
    """align on a DualEncoder runs the frozen towers once; the trained heads match the uncached run."""
    _, cached = _train(zoo.build(dual_encoder_spec()), "align", tmp_path / "cached", scenes, task="retrieval")
    _, direct = _train(zoo.build(dual_encoder_spec()), "align", tmp_path / "direct", scenes, task="retrieval",
                       cache_frozen_features=False)
    losses = [[r["loss"] for r in _steps(run)] for run in (tmp_path / "cached", tmp_path / "direct")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, a), b in zip(cached.model.named_parameters(), direct.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_lora_merge_is_a_standalone_model_with_the_same_logits(instruct_run, scenes, tmp_path):
    _, result = instruct_run
    model = result.model.eval()
    batch = model.processor(["<image> Colour?", "<image> What colour is it?"],
                            {"image": [[str(scenes / "0.png")], [str(scenes / "3.png")]]}, padding_side="left")
    with torch.no_grad():
        peft_logits = model(**batch).logits
        adapter = load_adapter(result.final_dir, zoo.build("tiny-test-vlm"))
        assert torch.equal(adapter(**batch).logits, peft_logits)  # the unmerged final/ reloads onto its base
        merge_lora(model).save_pretrained(tmp_path / "merged")
        loaded = zoo.load(tmp_path / "merged")
        assert not any("lora" in k for k in loaded.state_dict())
        assert torch.allclose(loaded(**batch).logits, peft_logits, atol=1e-5, rtol=0)


def test_adapter_refuses_another_base(instruct_run):
    other = zoo.build({**zoo.card("tiny-test-vlm").spec, "seed": 1})
    with pytest.raises(TrainingError, match="hashes to"):
        load_adapter(instruct_run[1].final_dir, other)


@pytest.mark.parametrize("checkpointing", [False, True])  # True: the backward pass recomputes the packed attention
def test_packed_batches_give_the_padded_loss(scenes, tmp_path, checkpointing):
    model = zoo.build("tiny-test-vlm")
    examples = build_examples(model, load_task("vqa"), scenes / "train.jsonl").examples
    packed = LMCollator(model.processor, packed=True)(examples[:4])
    lengths = [e.length for e in examples[:4]]
    assert packed["input_ids"].shape == (1, sum(lengths)) and packed["attention_mask"] is None  # no padding at all
    assert packed["cu_seq_lens"].tolist() == [0, *itertools.accumulate(lengths)]
    losses = {}
    for mode in ("packed", "padded"):
        _train(zoo.build("tiny-test-vlm"), "instruct", tmp_path / mode, scenes, batching=mode,
               gradient_checkpointing=checkpointing)
        losses[mode] = [r["loss"] for r in _steps(tmp_path / mode)]
    assert losses["packed"] == pytest.approx(losses["padded"], abs=1e-5)


def test_batch_plan_is_seeded_full_and_length_grouped():
    lengths = [5, 50, 6, 60, 7, 70, 8, 80, 9, 90]
    plan = batch_plan(lengths, batch_size=4, num_batches=6, seed=3, grouped=False)
    assert plan == batch_plan(lengths, batch_size=4, num_batches=6, seed=3, grouped=False)
    assert all(len(b) == 4 for b in plan)  # 24 examples: epochs 0 and 1 whole, then 4 of epoch 2's order
    stream = [i for b in plan for i in b]
    assert sorted(stream[:10]) == sorted(stream[10:20]) == list(range(10))
    grouped = batch_plan(lengths, batch_size=2, num_batches=5, seed=3, grouped=True)
    assert [lengths[i] for b in grouped for i in b] == sorted(lengths, reverse=True)  # one window: sorted


def test_logs_plot_and_bad_rows_are_reported(reference):
    records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    header, steps = records[0], records[1:]
    assert header["event"] == "data" and header["num_failed_rows"] == 3 and header["num_examples"] == 12
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert {"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s"} <= set(steps[0])
    assert [r["step"] for r in steps if "validation" in r] == [4, 8] and "vqa_accuracy" in steps[3]["validation"]
    assert (reference / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    failed = json.loads((reference / "failed_rows.json").read_text())
    assert {(f["source"], f["stage"]) for f in failed} == {
        ("train.jsonl:13", "input"), ("train.jsonl:14", "read"), ("train.jsonl:15", "fields")}
    assert "broken.png" in failed[0]["error"]
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["steps"] == 8 and len(summary["failed_rows"]) == 3
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step-00000007", "step-00000008"]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(scenes, reference, tmp_path):
    out = tmp_path / "killed"
    run_and_kill_after_first_checkpoint(_cli_args(scenes, out), out)
    _invoke(_cli_args(scenes, out))  # the same command again resumes
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 1
    resumed, uninterrupted = load_file(out / "final" / "model.safetensors"), load_file(reference / "final" / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert _steps(out) == [{**r, "samples_per_s": s["samples_per_s"]} for r, s in zip(_steps(reference), _steps(out), strict=True)]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(scenes, reference, tmp_path):
    out = tmp_path / "two"
    done = launch_two_cpu_processes("-m", "zoo.cli", *_cli_args(scenes, out))
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _steps(reference), _steps(out)
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert [r.get("validation") for r in two] == [r.get("validation") for r in one]  # sharded, gathered once per row
    a, b = load_file(reference / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_early_stopping_restores_the_best_weights(scenes, tmp_path):
    # an untrained model scores 0 every time: the first evaluation stays best, the second ends the run
    _, result = _train(zoo.build("tiny-test-vlm"), "align", tmp_path, scenes, str(scenes / "vqa-short.yaml"),
                       max_steps=4, eval_every=1,
                       validation_data=scenes / "val.jsonl", early_stopping_metric="vqa_accuracy",
                       early_stopping_patience=1)
    assert result.stopped_early and result.steps == 2 and result.best_step == 1
    best = load_file(tmp_path / "best" / "trainable.safetensors")
    assert all(torch.equal(best[k], v) for k, v in result.model.state_dict().items() if k in best)


def test_settings_are_checked(scenes, tmp_path):
    with pytest.raises(TrainingError, match="unknown training setting.*lr_group.*allowed"):
        finetune(zoo.build("tiny-test-vlm"), "vqa", scenes / "train.jsonl", output_dir=tmp_path, lr_group={"x": 1})
    with pytest.raises(TrainingError, match="a DualEncoder trains with stage 'align' or 'full', not 'instruct'"):
        finetune(zoo.build(dual_encoder_spec()), "retrieval", scenes / "train.jsonl", "instruct", tmp_path)
    with pytest.raises(TrainingError, match="lr_groups key.*encoders.*trainable: projectors.image"):
        _train(zoo.build("tiny-test-vlm"), "align", tmp_path, scenes, lr_groups={"encoders": 1e-5})
    _train(zoo.build("tiny-test-vlm"), "align", tmp_path, scenes, lr_groups={"projectors": 1e-3})
    with pytest.raises(TrainingError, match=r"other training settings \(lr_groups\)"):
        _train(zoo.build("tiny-test-vlm"), "align", tmp_path, scenes)


def test_set_may_give_a_setting_that_is_also_an_option(scenes, tmp_path):
    """`--set max_steps=2` is a training setting like any other, not a duplicate-keyword TypeError."""
    _invoke(_cli_args(scenes, tmp_path / "run") + ["--set", "max_steps=2", "--set", "save_every=2"])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


def test_a_checkpoint_written_before_a_setting_existed_resumes_when_it_is_left_at_its_default():
    from zoo.training.config import TrainingConfig

    saved = TrainingConfig(lr=3e-4).to_dict()
    del saved["olora_lambda1"]  # as a checkpoint written before that setting was added
    assert TrainingConfig(lr=3e-4).differences(saved) == []
    assert TrainingConfig(lr=3e-4, olora_lambda1=0.25).differences(saved) == ["olora_lambda1"]
    assert TrainingConfig(lr=1e-4).differences(saved) == ["lr"]
