"""Property heads on any encoder: splits computed from the task, labels with missing values, the predictor's
masked losses, layer-wise learning-rate decay, and ``zoo finetune`` -> ``zoo eval`` -> save -> reload from the CLI.

``fixtures/molecules_120.csv``: 118 molecules of chemprop's BBBP copy (MIT) with labels derived from their atoms
(``has_n``: a nitrogen; ``has_s``: sulfur or chlorine, every fifth one blanked as missing; ``heavy_atoms``),
plus an unparsable SMILES and a row whose label is ``x``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import zoo
from tasks.config import TaskConfigError, load_task
from tasks.data.manifest import read_rows
from tasks.data.properties import property_labels
from tasks.data.splits import Split, rows_in_split, split_indices
from tasks.metrics import average_precision, property_metrics
from zoo.cli import app
from zoo.training import TrainingError, finetune
from zoo.training.config import TrainingConfig
from zoo.training.optim import build_optimizer, layer_scales

FIXTURE = Path(__file__).parent / "fixtures" / "molecules_120.csv"
TINY_GNN = {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 3, "hidden_size": 32}}
runner = CliRunner()


def _task_file(folder: Path, targets: list[str], target_type: str = "binary", method: str = "random") -> Path:
    path = folder / f"task-{'-'.join(targets)}-{method}.yaml"
    path.write_text(
        "include: _moleculenet.yaml\n"
        f"targets: {json.dumps(targets)}\ntarget_type: {target_type}\n"
        f"split: {{method: {method}, fractions: [0.7, 0.15, 0.15], seed: 0, part: test}}\n"
    )
    return path


@pytest.fixture
def encoder_dir(tmp_path) -> Path:
    """A tiny GCN encoder card saved to a folder, as a user's own encoder would be."""
    model = zoo.build({"type": "encoder", "modality": "molecule_graph", "encoder": TINY_GNN})
    return model.save_pretrained(tmp_path / "tiny-gcn")


# -- splits and labels -----------------------------------------------------------------------------------------


def test_the_split_puts_every_row_in_one_part_and_unparsable_items_in_test() -> None:
    rows = read_rows("csv", FIXTURE, "smiles")
    items = [r.fields["smiles"] for r in rows]
    for method in ("scaffold", "random"):
        parts = split_indices(items, Split(method=method, fractions=(0.7, 0.15, 0.15)))
        assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(len(items)))
        assert method == "random" or items.index("C1CC(") in parts["test"]  # no scaffold: tested, never dropped
        assert split_indices(items, Split(method=method, fractions=(0.7, 0.15, 0.15))) == parts  # deterministic
    random = split_indices(items, Split(method="random", fractions=(0.7, 0.15, 0.15)))
    assert len(random["train"]) == math.floor(0.7 * len(items))
    assert split_indices(items, Split(method="random", fractions=(0.7, 0.15, 0.15), seed=1)) != random
    picked = rows_in_split(rows, Split(method="random", fractions=(0.7, 0.15, 0.15), part="valid"), "smiles")
    assert [r.index for r in picked] == list(range(len(picked)))  # numbered again, file:line kept
    assert [r.source for r in picked] == [rows[i].source for i in random["valid"]]


def test_a_bad_split_or_property_task_is_a_task_error(tmp_path) -> None:
    with pytest.raises(TaskConfigError, match="split.method must be one of scaffold, random"):
        load_task("moleculenet-bbbp", **{"split.method": "temporal"})
    with pytest.raises(TaskConfigError, match="fractions must be three non-negative numbers summing to 1"):
        load_task("moleculenet-bbbp", **{"split.fractions": [0.8, 0.3, 0.1]})
    with pytest.raises(TaskConfigError, match="target_type must be one of binary, regression, multiclass"):
        load_task("moleculenet-bbbp", target_type="ordinal")
    with pytest.raises(TaskConfigError, match="targets must list the label columns"):
        load_task("moleculenet-bbbp", targets=[])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=8), st.floats(allow_nan=True), st.integers(-3, 3), st.none()))
def test_a_label_cell_is_a_number_a_missing_label_or_an_error_naming_its_column(value) -> None:
    for target_type in ("binary", "regression"):
        try:
            (label,) = property_labels({"smiles": "CCO", "y": value}, ["y"], target_type) if value not in (None, "") \
                else (math.nan,)
        except ValueError as err:
            assert "'y'" in str(err) or "no label" in str(err)
            continue
        assert math.isnan(label) or (math.isfinite(label) and (target_type == "regression" or label in (0.0, 1.0)))


def test_a_row_without_any_label_is_an_error() -> None:
    assert property_labels({"a": "1", "b": ""}, ["a", "b"], "binary")[0] == 1.0
    with pytest.raises(ValueError, match="no label in any target column"):
        property_labels({"a": "", "b": " "}, ["a", "b"], "binary")


# -- metrics ---------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_average_precision_equals_scikit_learn(pairs) -> None:
    from sklearn.metrics import average_precision_score

    labels = [float(y) for y, _ in pairs]
    scores = [s / 6 for _, s in pairs]  # few distinct values: ties are exercised
    if sum(labels) == 0:
        with pytest.raises(ValueError, match="at least one positive"):
            average_precision(labels, scores)
        return
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_property_metrics_mask_missing_labels_and_match_scikit_learn() -> None:
    from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (50, 3)).astype(float)
    labels[rng.random((50, 3)) < 0.3] = np.nan
    labels[:, 2] = np.where(np.isnan(labels[:, 2]), np.nan, 1.0)  # one class only: skipped
    scores = rng.random((50, 3))
    metrics = property_metrics(scores, labels, "binary")
    expected = np.mean([roc_auc_score(labels[~np.isnan(labels[:, t]), t], scores[~np.isnan(labels[:, t]), t]) for t in (0, 1)])
    assert metrics["roc_auc"] == pytest.approx(expected) and metrics["tasks_scored"] == 2
    values, predictions = rng.normal(size=(40, 1)), rng.normal(size=(40, 1))
    metrics = property_metrics(predictions, values, "regression")
    assert metrics["r2"] == pytest.approx(r2_score(values, predictions))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(values, predictions))


# -- the predictor ---------------------------------------------------------------------------------------------


def _predictor(head: str = "binary", targets: tuple[str, ...] = ("has_n", "has_s")):
    return zoo.build({"type": "predictor", "modality": "molecule_graph", "encoder": TINY_GNN, "head": head,
                      "targets": list(targets)})


def test_missing_labels_add_nothing_to_the_loss_or_its_gradient() -> None:
    model = _predictor()
    raw = torch.randn(4, 2, requires_grad=True)
    labels = torch.tensor([[1.0, math.nan], [0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]])
    loss = model.head_loss(raw, labels)
    present = ~torch.isnan(labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(raw[present], labels[present])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert raw.grad[0, 1] == 0 and raw.grad[2, 0] == 0 and raw.grad[1, 1] != 0


def test_a_regression_head_answers_in_data_units() -> None:
    model = _predictor("regression", ("heavy_atoms",))
    model.set_target_scale(torch.tensor([[10.0], [20.0], [math.nan], [30.0]]))
    assert model.target_mean.tolist() == [20.0] and model.target_std.tolist() == [10.0]
    raw = torch.tensor([[1.0], [-0.5]])
    assert model.from_head_output(raw).flatten().tolist() == [30.0, 15.0]
    assert model.prior() == [20.0]
    with pytest.raises(ValueError, match="'heavy_atoms'.*at least two finite, varying"):
        model.set_target_scale(torch.tensor([[5.0], [5.0]]))


def test_layer_decay_scales_each_encoder_depth() -> None:
    model = _predictor()
    scales = layer_scales(model, 0.5)
    blocks = 3  # num_layers
    assert scales["encoder.gnn.x_embedding1.weight"] == pytest.approx(0.5 ** (blocks + 1))  # embeddings: depth 0
    for i in range(blocks):
        block = [k for k in scales if k.startswith(f"encoder.gnn.gnns.{i}.")]
        norms = [k for k in scales if k.startswith(f"encoder.gnn.batch_norms.{i}.")]
        assert block and norms and all(scales[k] == pytest.approx(0.5 ** (blocks - i)) for k in block + norms)
    assert not any(k.startswith("head.") for k in scales)
    optimizer = build_optimizer(model, TrainingConfig(stage="full", lr=1e-2, layer_decay=0.5))
    rates = sorted({g["lr"] for g in optimizer.param_groups})
    assert rates[-1] == pytest.approx(1e-2) and rates[0] == pytest.approx(1e-2 * 0.5 ** (blocks + 1))


# -- the product path: zoo finetune -> zoo eval -> save -> reload ----------------------------------------------


def test_finetune_an_encoder_with_a_head_then_eval_save_and_reload(encoder_dir, tmp_path) -> None:
    task = _task_file(tmp_path, ["has_n", "has_s"])
    out = tmp_path / "run"
    result = runner.invoke(app, ["finetune", str(encoder_dir), "-t", str(task), "-d", str(FIXTURE), "-o", str(out),
                                 "--lr", "3e-3", "-b", "16", "--set", "epochs=3", "--set", "eval_every=5",
                                 "--set", "early_stopping_metric=roc_auc", "--set", "progress=false"])
    assert result.exit_code == 0, result.output
    failed = json.loads((out / "failed_rows.json").read_text())
    train_rows = rows_in_split(read_rows("csv", FIXTURE, "smiles"), Split("random", (0.7, 0.15, 0.15), 0, "train"), "smiles")
    assert {f["source"] for f in failed} <= {r.source for r in train_rows}  # only train rows are read for training
    assert any(":121" in f["source"] or ":122" in f["source"] for f in failed) or len(failed) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_step"] is not None and summary["num_examples"] == len(train_rows) - len(failed)

    evaluated = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(out / "final"), "-t", str(task), "-d", str(FIXTURE), "-o", str(evaluated)])
    assert result.exit_code == 0, result.output
    results = json.loads((evaluated / "results.json").read_text())
    test_rows = rows_in_split(read_rows("csv", FIXTURE, "smiles"), Split("random", (0.7, 0.15, 0.15), 0, "test"), "smiles")
    assert results["num_rows"] == len(test_rows)  # the test part only
    assert {"roc_auc", "pr_auc", "accuracy"} <= set(results["metrics"])
    assert "report.html" in {p.name for p in evaluated.iterdir()}

    loaded = zoo.load(out / "final")
    assert loaded.spec.type == "predictor" and loaded.spec.targets == ["has_n", "has_s"]
    molecules = ["CCO", "c1ccccc1N", "CCS"]
    again = zoo.load(loaded.save_pretrained(tmp_path / "again"))
    assert loaded.predict(molecules) == again.predict(molecules)


def test_the_head_stage_keeps_the_encoder_and_full_trains_it(encoder_dir, tmp_path) -> None:
    task = _task_file(tmp_path, ["has_s"])
    start = {k: v.clone() for k, v in zoo.load(encoder_dir).encoder.state_dict().items()}
    common = {"lr": 1e-2, "batch_size": 16, "epochs": 2, "progress": False}
    head = finetune(zoo.load(encoder_dir), task, FIXTURE, "head", tmp_path / "head", **common).model
    assert all(torch.equal(start[k], v) for k, v in head.encoder.state_dict().items())
    full = finetune(zoo.load(encoder_dir), task, FIXTURE, None, tmp_path / "full", **common).model  # full: the default
    assert any(not torch.equal(start[k], v) for k, v in full.encoder.state_dict().items() if v.is_floating_point())


def test_a_finetuned_head_learns_a_property_from_the_atoms(encoder_dir, tmp_path) -> None:
    task = _task_file(tmp_path, ["has_s"])
    result = finetune(zoo.load(encoder_dir), task, FIXTURE, "full", tmp_path / "run", lr=1e-2, batch_size=16,
                      epochs=25, warmup_ratio=0.0, progress=False)
    metrics = zoo.evaluate(result.model, task, FIXTURE, progress=False)["metrics"]
    assert metrics["roc_auc"] > 0.8, metrics


def test_a_regression_task_trains_a_standardised_head(encoder_dir, tmp_path) -> None:
    task = _task_file(tmp_path, ["heavy_atoms"], "regression")
    result = finetune(zoo.load(encoder_dir), task, FIXTURE, "full", tmp_path / "run", lr=1e-2, batch_size=16,
                      epochs=2, progress=False)
    assert 10 < result.model.target_mean.item() < 40  # the training labels' mean
    metrics = zoo.evaluate(result.model, task, FIXTURE, progress=False)["metrics"]
    assert {"rmse", "mae", "r2"} <= set(metrics)


def test_wrong_pairings_are_clear_errors(encoder_dir, tmp_path) -> None:
    binary = _task_file(tmp_path, ["has_s"])
    predictor = finetune(zoo.load(encoder_dir), binary, FIXTURE, "head", tmp_path / "run", epochs=1, progress=False).model
    with pytest.raises(TrainingError, match="head is binary over \\['has_s'\\].*needs regression over \\['heavy_atoms'\\]"):
        finetune(predictor, _task_file(tmp_path, ["heavy_atoms"], "regression"), FIXTURE, "head", tmp_path / "r2")
    with pytest.raises(TrainingError, match="a Predictor trains with stage 'head' or 'full', not 'instruct'"):
        finetune(zoo.load(encoder_dir), binary, FIXTURE, "instruct", tmp_path / "r3")
    with pytest.raises(ValueError, match="needs a model with a property head.*zoo finetune"):
        zoo.evaluate(zoo.load(encoder_dir), binary, FIXTURE, progress=False)
    result = runner.invoke(app, ["finetune", str(encoder_dir), "-t", str(binary), "-d", str(FIXTURE), "-o",
                                 str(tmp_path / "r4"), "--head-hidden-sizes", "64,x"])
    text = " ".join(result.output.replace("│", " ").split())  # typer draws usage errors in a wrapped box
    assert result.exit_code == 2 and "positive integers separated by commas" in text


def test_a_dual_encoder_tower_gets_a_head(tmp_path) -> None:
    from tests.helpers import dual_encoder_spec

    task = tmp_path / "text-property.yaml"
    task.write_text("include: _moleculenet.yaml\nmodality: text\ntargets: [has_s]\ntarget_type: binary\n"
                    "split: {method: random, fractions: [0.7, 0.15, 0.15], seed: 0, part: test}\n")
    clip = zoo.build(dual_encoder_spec())
    text_weights = {k: v.clone() for k, v in clip.text_tower.state_dict().items()}
    result = finetune(clip, task, FIXTURE, "head", tmp_path / "run", epochs=1, batch_size=16, progress=False)
    model = result.model
    assert model.spec.type == "predictor" and model.modality == "text"
    assert model.spec.encoder == clip.spec.text_tower and model.encoder is clip.text_tower
    assert all(torch.equal(text_weights[k], v) for k, v in model.encoder.state_dict().items())
    reloaded = zoo.load(result.final_dir)
    assert reloaded.predict(["CCS", "CCO"]) == model.predict(["CCS", "CCO"])
    with pytest.raises(TrainingError, match="reads 'audio' items; this DualEncoder's towers are image, text"):
        finetune(zoo.build(dual_encoder_spec()), load_task(task, modality="audio"), FIXTURE, "head", tmp_path / "r2")


def test_the_saved_best_step_scores_what_it_scored_in_validation(encoder_dir, tmp_path) -> None:
    """Early stopping restores the best step's weights and its batch-norm statistics together: final/ scores on
    the valid part exactly what that step scored there."""
    task = _task_file(tmp_path, ["has_n", "has_s"])
    result = finetune(zoo.load(encoder_dir), task, FIXTURE, "full", tmp_path / "run", lr=3e-2, batch_size=8,
                      epochs=6, eval_every=4, early_stopping_metric="roc_auc", progress=False)
    assert result.best_step is not None and result.best_step < result.steps  # a later step was worse
    from safetensors.torch import load_file

    assert any("batch_norms.0.running_mean" in k for k in load_file(tmp_path / "run" / "best" / "trainable.safetensors"))
    valid = zoo.evaluate(zoo.load(result.final_dir), task, FIXTURE, progress=False, **{"split.part": "valid"})
    assert valid["metrics"]["roc_auc"] == pytest.approx(result.best_value, abs=1e-12)


def test_eval_every_epoch_validates_at_each_pass_over_the_training_rows(encoder_dir, tmp_path) -> None:
    task = _task_file(tmp_path, ["has_n"])
    result = finetune(zoo.load(encoder_dir), task, FIXTURE, "full", tmp_path / "run", batch_size=16, epochs=3,
                      eval_every="epoch", early_stopping_metric="roc_auc", progress=False)
    epochs_done = [(s * 16) // result.num_examples for s in range(result.steps + 1)]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validated = [r["step"] for r in records if "validation" in r]
    assert len(validated) == 3 and all(epochs_done[s] > epochs_done[s - 1] for s in validated)
    assert validated[-1] == result.steps and result.steps == math.ceil(3 * result.num_examples / 16)
    with pytest.raises(TrainingError, match="eval_every must be a number of steps or 'epoch', got 'weekly'"):
        TrainingConfig(eval_every="weekly")


@pytest.mark.parametrize(("schedule", "expected"), [
    ("cosine", [0.5, 1.0, 0.962, 0.854, 0.691, 0.5, 0.309, 0.146, 0.038, 0.0]),
    ("linear", [0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]),
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
])
def test_each_lr_schedule_warms_up_then_follows_its_shape(schedule, expected) -> None:
    from zoo.training.optim import build_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, TrainingConfig(warmup_ratio=0.2, lr_schedule=schedule), total_steps=10)
    seen = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        seen.append(round(scheduler.get_last_lr()[0], 3))
    assert seen == expected
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainingConfig(lr_schedule="step")
