"""HMA ratio search: the search on synthetic scores (optimum, bound, cache, seed), the blocks, and one tiny
end-to-end `zoo merge --search` on tiny-test-vlm fine-tuned for two steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import zoo
from zoo.cli import app
from zoo.training import finetune
from zoo.training.merge import MergeError
from zoo.training.merge_search import (
    BlockRule,
    Point,
    block_patterns,
    group_blocks,
    pareto_front,
    search_ratios,
)

GAIN = (1.0, 2.0, 3.0, 4.0)  # target score per unit of ratio, per block
COST = (4.0, 3.0, 2.0, 1.0)  # retain score lost per unit of ratio, per block


class Linear:
    """target = GAIN . ratios, retain = -COST . ratios; counts its calls. With a forgetting bound of 2 the best
    grid point is (0, 0, 0.5, 1): target 5.5. No uniform point reaches it (the best feasible one, alpha 0.2,
    scores 2.0), and single-block moves from there are stuck on the bound: it takes swaps."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, ...]] = []

    def __call__(self, ratios: tuple[float, ...]) -> tuple[float, float]:
        self.calls.append(ratios)
        dot = lambda weights: round(sum(w * r for w, r in zip(weights, ratios, strict=True)), 9)  # noqa: E731
        return dot(GAIN), -dot(COST)


def test_search_finds_the_known_optimum_within_its_budget():
    result = search_ratios(Linear(), 4, max_forgetting=2.0, budget=120, seed=0)
    chosen = result.points[result.chosen]
    assert chosen.ratios == (0.0, 0.0, 0.5, 1.0)
    assert (chosen.target, chosen.retain) == (5.5, -2.0)
    assert result.stopped == "local optimum" and len(result.points) <= 120
    best_uniform = max((p for p, ok in zip(result.points, result.feasible, strict=True) if ok and p.source == "uniform"),
                       key=lambda p: p.target)
    assert best_uniform.ratios == (0.2,) * 4 and chosen.target > best_uniform.target


def test_uniform_sweep_comes_first_and_sets_the_floor_from_the_base():
    result = search_ratios(Linear(), 4, max_forgetting=2.0, budget=20)
    uniform = result.points[:11]
    assert [p.ratios for p in uniform] == [(a / 10,) * 4 for a in range(11)]
    assert all(p.source == "uniform" for p in uniform) and all(p.source == "search" for p in result.points[11:])
    assert result.retain_floor == uniform[0].retain - 2.0 == -2.0


def test_search_respects_the_forgetting_bound():
    result = search_ratios(Linear(), 4, max_forgetting=0.5, budget=60, seed=3)
    assert result.feasible == [p.retain >= -0.5 for p in result.points]
    assert not all(result.feasible)  # the fine-tuned end (all 1) forgets 10: it is evaluated and refused
    chosen = result.points[result.chosen]
    assert result.feasible[result.chosen] and chosen.retain >= -0.5
    assert chosen.target == max(p.target for p, ok in zip(result.points, result.feasible, strict=True) if ok)
    assert chosen.ratios == (0.0, 0.0, 0.0, 0.5)  # the best block alone, up to the bound


def test_each_ratio_vector_is_evaluated_once_and_the_budget_counts_evaluations():
    evaluate = Linear()
    result = search_ratios(evaluate, 4, max_forgetting=2.0, budget=30, seed=1)
    assert len(evaluate.calls) == len(set(evaluate.calls)) == len(result.points) == 30
    assert result.stopped == "budget"
    assert [p.ratios for p in result.points] == evaluate.calls


def test_the_same_seed_gives_the_same_search_and_another_seed_another_path():
    runs = [search_ratios(Linear(), 4, max_forgetting=2.0, budget=40, seed=seed) for seed in (7, 7, 8)]
    assert runs[0].points == runs[1].points and runs[0].chosen == runs[1].chosen
    assert [p.ratios for p in runs[0].points] != [p.ratios for p in runs[2].points]


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"budget": 5}, "does not cover the 11-point uniform sweep"), ({"step": 0.3}, "must divide 1"),
     ({"max_forgetting": -0.1}, ">= 0")],
)
def test_bad_search_settings_are_errors(settings, message):
    with pytest.raises(MergeError, match=message):
        search_ratios(Linear(), 4, **{"max_forgetting": 1.0, **settings})


def test_a_base_retain_score_that_is_not_a_number_is_an_error():
    with pytest.raises(MergeError, match="retain score is nan"):
        search_ratios(lambda ratios: (0.0, float("nan")), 2, max_forgetting=0.1, budget=11)


def test_pareto_front_keeps_the_points_nothing_beats_on_both_scores():
    points = [Point((0.0,), 0.0, 1.0, "uniform"), Point((0.5,), 0.5, 0.5, "uniform"), Point((1.0,), 1.0, 0.0, "uniform"),
              Point((0.2,), 0.4, 0.4, "search"), Point((0.7,), 0.5, 0.5, "search")]
    assert pareto_front(points) == [0, 1, 2, 4]


DUAL_ENCODER_KEYS = ["logit_scale", "towers.image.model.cls_token", "towers.image.model.blocks.0.attn.qkv.weight",
                     "text_tower.model.encoder.layer.0.output.dense.weight", "projections.image.weight",
                     "text_projection.weight"]


def test_dual_encoder_keys_group_into_towers_projections_and_the_rest():
    blocks = group_blocks(DUAL_ENCODER_KEYS)
    assert [(b.name, b.kind, b.pattern) for b in blocks] == [
        ("logit_scale", "other", "logit_scale"), ("towers.image", "encoder", "towers.image.*"),
        ("text_tower", "text-tower", "text_tower.*"), ("projections.image", "projector", "projections.image.*"),
        ("text_projection", "text-projection", "text_projection.*"),
    ]


def test_block_globs_are_ordered_most_specific_rule_first():
    blocks = group_blocks(["language_model.lm_head.weight", "language_model.model.layers.1.mlp.weight",
                           "language_model.model.layers.10.mlp.weight"])
    assert [b.name for b in blocks] == ["language_model", "language_model.model.layers.1",
                                        "language_model.model.layers.10"]
    assert list(block_patterns(blocks, [0.1, 0.2, 0.3]).items()) == [
        ("language_model.model.layers.1.*", 0.2), ("language_model.model.layers.10.*", 0.3), ("language_model.*", 0.1)]


def test_rules_whose_globs_would_give_a_key_another_blocks_ratio_are_refused():
    with pytest.raises(MergeError, match="p.q.s is in block p, but merge would give it the ratio of glob 'p.q.*'"):
        group_blocks(["p.q.r.w", "p.q.s"], rules=(BlockRule("r-only", r"p\.q(?=\.r)"),))


# --- end to end: tiny-test-vlm ------------------------------------------------------------------------------

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}
SHAPES = ("circle", "square")
MC_TASK = """description: image multiple choice by option log-likelihood
kind: multiple-choice
reader: jsonl
modality: image
metric: option_log_likelihood
fields: {item: image, prompt: question, options: options, answer: answer}
prompt_template: "{placeholder} {question} Answer:"
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """Six coloured shapes; a colour-VQA training file, colour (target) and shape (retain) multiple-choice files;
    tiny-test-vlm saved as base/ and, fully fine-tuned for two steps on the colours, as ft/final."""
    root = tmp_path_factory.mktemp("hma")
    files: dict[str, list[dict]] = {"train": [], "colour": [], "shape": []}
    for i, (colour, shape) in enumerate([(c, s) for c in COLOURS for s in SHAPES]):
        picture = Image.new("RGB", (32, 32), "white")
        draw = ImageDraw.Draw(picture)
        (draw.ellipse if shape == "circle" else draw.rectangle)((8, 8, 24, 24), fill=COLOURS[colour])
        picture.save(root / f"{i}.png")
        files["train"].append({"image": f"{i}.png", "question": f"What colour is the {shape}?", "answers": [colour]})
        files["colour"].append({"image": f"{i}.png", "question": f"What colour is the {shape}?",
                                "options": list(COLOURS), "answer": list(COLOURS).index(colour)})
        files["shape"].append({"image": f"{i}.png", "question": "Which shape is it?", "options": list(SHAPES),
                               "answer": SHAPES.index(shape)})
    for name, rows in files.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "mc.yaml").write_text(MC_TASK)
    zoo.build("tiny-test-vlm").save_pretrained(root / "base")
    finetune(zoo.load(root / "base"), "vqa", root / "train.jsonl", "full", root / "ft", max_steps=2, batch_size=6,
             lr=3e-2, progress=False)
    return root


def test_cli_merge_search_writes_the_table_the_plot_and_a_model_with_the_chosen_ratios(pair, tmp_path):
    run = tmp_path / "run"
    args = ["merge", str(pair / "base"), str(pair / "ft" / "final"), "--search", "--task", str(pair / "mc.yaml"),
            "--data", str(pair / "colour.jsonl"), "--retain-task", str(pair / "mc.yaml"), "--retain-data",
            str(pair / "shape.jsonl"), "--max-forgetting", "0.0", "--step", "0.5", "--budget", "5", "-o", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "chosen" in result.output and "wrote" in result.output

    table = json.loads((run / "merge_search.json").read_text())
    base, finetuned = zoo.load(pair / "base"), zoo.load(pair / "ft" / "final")
    names = [b["name"] for b in table["blocks"]]
    assert names == ["encoders.image", "projectors.image", "language_model.model.embed_tokens",
                     "language_model.model.layers.0", "language_model.model.layers.1", "language_model"]
    assert sum(b["tensors"] for b in table["blocks"]) == len(base.state_dict())
    points = table["points"]
    assert table["evaluations"] == len(points) == 5 and table["stopped"] == "budget"
    assert [p.get("alpha") for p in points[:3]] == [0.0, 0.5, 1.0] and points[3]["source"] == "search"
    assert table["target"]["metric"] == table["retain"]["metric"] == "accuracy"
    assert table["retain_floor"] == table["base"]["retain"] == points[0]["retain"]
    assert table["finetuned"] == {"target": points[2]["target"], "retain": points[2]["retain"]}
    assert all(p["feasible"] == (p["retain"] >= table["retain_floor"]) for p in points)
    assert [p["index"] for p in points if p["chosen"]] == [table["chosen"]]
    chosen = points[table["chosen"]]
    assert chosen["feasible"] and chosen["target"] == max(p["target"] for p in points if p["feasible"])
    assert any(p["pareto"] for p in points)
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    merged = zoo.load(run / "merged").state_dict()
    blocks = group_blocks(list(base.state_dict()))
    ratios = [chosen["ratios"][b.name] for b in blocks]
    base_state, finetuned_state = base.state_dict(), finetuned.state_dict()
    for block, ratio in zip(blocks, ratios, strict=True):
        for key in block.keys:
            expected = torch.lerp(base_state[key].float(), finetuned_state[key].float(), ratio).to(base_state[key].dtype)
            torch.testing.assert_close(merged[key], expected, msg=f"{key} at ratio {ratio}")
    assert "## Ratio search" in (run / "merged" / "README.md").read_text()


def _said(result) -> str:
    """The command's output with rich's error box and line wrapping taken out."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("extra", "message"),
    [([], "--search needs --task, --data, --retain-task, --retain-data, --max-forgetting"),
     (["--alpha", "0.5", "--task", "t", "--data", "d", "--retain-task", "t", "--retain-data", "d",
       "--max-forgetting", "0"], "drop --alpha and --layer-alpha")],
)
def test_cli_merge_search_refuses_missing_or_conflicting_options(extra, message, tmp_path):
    result = CliRunner().invoke(app, ["merge", "base", "finetuned", "--search", "-o", str(tmp_path), *extra])
    assert result.exit_code == 2 and message in _said(result)


def test_cli_merge_without_search_needs_alpha_and_refuses_search_options(tmp_path):
    no_alpha = CliRunner().invoke(app, ["merge", "base", "finetuned", "-o", str(tmp_path)])
    assert no_alpha.exit_code == 2 and "give --alpha A" in _said(no_alpha)
    stray = CliRunner().invoke(app, ["merge", "base", "finetuned", "--alpha", "0.5", "--max-forgetting", "0.1",
                                     "-o", str(tmp_path)])
    assert stray.exit_code == 2 and "--max-forgetting only apply with --search" in _said(stray)
