"""The bundled scene models load offline and beat trivial baselines on freshly generated scenes.

The baselines here are fitted on the very scenes they are scored on (a prior that has seen the answers'
distribution, a box of the scenes' own mean size), so they are at least as strong as the ones in the cards.
"""

from __future__ import annotations

import pytest

import zoo
from tasks.data.scene_baselines import centre_box_accuracy, random_recall, read_manifest, vqa_prior_accuracy
from tasks.data.scenes import generate_scenes

SCENES = 40


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    generate_scenes(folder, SCENES, seed=20261123)
    return folder


def _evaluate(model, task, data, **overrides):
    return zoo.evaluate(model, task, data, batch_size=64, progress=False, report=False, **overrides)[
        "metrics"
    ]


def test_scene_vlm_beats_prior_and_centre_box(scenes):
    model = zoo.load("scene-vlm-tiny")
    vqa = _evaluate(model, "vqa", scenes / "vqa.jsonl")["vqa_accuracy"]
    rows = read_manifest(scenes, "vqa")
    assert vqa > vqa_prior_accuracy(rows, rows) + 0.1
    grounding = _evaluate(model, "grounding", scenes / "grounding.jsonl", **{"generation.max_new_tokens": 40})
    boxes = read_manifest(scenes, "grounding")
    assert grounding["accuracy_at_iou_0.5"] > centre_box_accuracy(boxes, boxes) + 0.15


def test_scene_clip_beats_random_ranking(scenes):
    metrics = _evaluate(zoo.load("scene-clip-tiny"), "retrieval", scenes / "captions.jsonl")
    assert metrics["image_to_text/recall@1"] > 5 * random_recall(2 * SCENES, 2, 1)
    assert metrics["text_to_image/recall@1"] > 5 * random_recall(SCENES, 1, 1)
