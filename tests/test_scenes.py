"""The procedural scene set: deterministic, boxes that match the drawn pixels, unambiguous questions."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.config import load_task
from tasks.data.scene_baselines import baselines, random_recall
from tasks.data.scenes import COLOURS, SHAPES, generate_scenes, make_scene, place_name, questions
from tasks.metrics import decode_box_tokens


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    generate_scenes(tmp_path / "a", 12, seed=3)
    generate_scenes(tmp_path / "b", 12, seed=3)
    generate_scenes(tmp_path / "c", 12, seed=4)
    first = _files(tmp_path / "a")
    assert first == _files(tmp_path / "b")
    assert first["captions.jsonl"] != _files(tmp_path / "c")["captions.jsonl"]
    assert {"captions.jsonl", "vqa.jsonl", "grounding.jsonl", "instruct.jsonl", "images/000011.png"} <= set(
        first
    )


def _check_scene(seed: int, index: int, size: int) -> None:
    scene = make_scene(seed, index, size)
    pixels = np.asarray(scene.image)
    assert 1 <= len(scene.shapes) <= 3
    assert len({s.colour for s in scene.shapes}) == len({s.shape for s in scene.shapes}) == len(scene.shapes)
    assert len({s.cell for s in scene.shapes}) == len(scene.shapes)
    painted = np.zeros(pixels.shape[:2], dtype=bool)
    for s in scene.shapes:
        mask = (pixels == COLOURS[s.colour]).all(-1)
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == s.box  # the box is the drawn pixels' box
        x1, y1, x2, y2 = s.normalised_box(size)
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        # Each shape stays inside its own grid cell, except that its last column / row may be the pixel that
        # straddles the cell's right / bottom edge (pixel indices put the drawn centre half a pixel right).
        cell = size / 3
        column, row = s.cell % 3, s.cell // 3
        assert column * cell <= s.box[0] and s.box[2] <= math.ceil((column + 1) * cell)
        assert row * cell <= s.box[1] and s.box[3] <= math.ceil((row + 1) * cell)
        painted |= mask
    for a, b in itertools.combinations(scene.shapes, 2):  # so no two shapes' boxes overlap
        assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] or b.box[3] <= a.box[1]
    assert (pixels[~painted] == 255).all()  # nothing else is drawn


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6), size=st.sampled_from([40, 48, 64, 96]))
@example(seed=10964, index=10964, size=40)  # a shape whose last column straddles its cell's edge
def test_boxes_match_pixels_and_shapes_are_distinct(seed, index, size):
    _check_scene(seed, index, size)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6))
def test_answers_follow_from_the_scene(seed, index):
    scene = make_scene(seed, index)
    answers = dict((kind, (q, a)) for kind, q, a in questions(scene, random.Random(index)))
    by_shape = {s.shape: s for s in scene.shapes}
    by_place = {s.place: s for s in scene.shapes}
    question, answer = answers["colour"]
    assert by_shape[question.split()[-1].rstrip("?")].colour == answer
    question, answer = answers["shape"]
    assert by_place[question.removeprefix("What shape is at the ").rstrip("?")].shape == answer
    question, answer = answers["place"]
    colour, shape = question.removeprefix("Where is the ").rstrip("?").split()
    assert by_shape[shape].colour == colour and by_shape[shape].place == answer
    assert answers["count"][1] == str(len(scene.shapes))
    question, answer = answers["exists"]
    colour, shape = question.rstrip("?").split()[-2:]
    assert answer == ("yes" if (colour, shape) in {(s.colour, s.shape) for s in scene.shapes} else "no")


def test_places_are_the_tokenizer_words():
    assert [place_name(c) for c in range(9)] == [
        "top left",
        "top",
        "top right",
        "left",
        "centre",
        "right",
        "bottom left",
        "bottom",
        "bottom right",
    ]
    assert all(colour and shape for colour in COLOURS for shape in SHAPES)


def test_manifests_are_consistent_and_prompts_equal_the_eval_templates(tmp_path):
    generate_scenes(tmp_path, 30, seed=0)
    rows = {
        n: [json.loads(x) for x in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
        for n in ("captions", "vqa", "grounding", "instruct")
    }
    assert len(rows["vqa"]) == 5 * 30 and all(len(r["answers"]) == 10 for r in rows["vqa"])
    expressions = {}
    for r in rows["grounding"]:
        expressions.setdefault(r["image"], []).append(r["expression"])
    assert all(len(set(e)) == len(e) for e in expressions.values())  # unambiguous within each image
    templates = {k: load_task(k).prompt_template for k in ("captioning", "vqa", "grounding")}
    expected = [templates["captioning"].format(placeholder="<image>")] * 30
    expected += [templates["vqa"].format(placeholder="<image>", question=r["question"]) for r in rows["vqa"]]
    expected += [
        templates["grounding"].format(placeholder="<image>", expression=r["expression"])
        for r in rows["grounding"]
    ]
    instruct = load_task("scene-instruct").prompt_template
    got = [instruct.format(placeholder="<image>", instruction=r["instruction"]) for r in rows["instruct"]]
    assert sorted(got) == sorted(expected)
    for r in rows["instruct"]:
        if r["kind"] == "grounding":
            box = decode_box_tokens(r["target"])
            truth = next(
                g["box"]
                for g in rows["grounding"]
                if g["image"] == r["image"] and g["expression"] in r["instruction"]
            )
            assert max(abs(a - b) for a, b in zip(box, truth, strict=True)) <= 1 / 512


def test_baselines_are_near_chance(tmp_path):
    generate_scenes(tmp_path / "train", 200, seed=0)
    generate_scenes(tmp_path / "test", 40, seed=1)
    found = baselines(tmp_path / "train", tmp_path / "test")
    assert 0.1 < found["vqa_accuracy"] < 0.5
    assert found["accuracy_at_iou_0.5"] < 0.3
    assert found["retrieval"]["text_to_image/recall@1"] == pytest.approx(1 / 40)
    assert random_recall(10, 2, 1) == pytest.approx(0.2)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 1 scene"):
        generate_scenes(tmp_path, 0, seed=0)
    with pytest.raises(ValueError, match="image_size"):
        make_scene(0, 0, image_size=16)
