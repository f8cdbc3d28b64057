"""audio-clip-tiny (bundled weights) loads offline and beats chance on freshly generated clips, held-out classes
included; benchmarks/audio_baselines.py prints every row beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from tasks.data.audio_scenes import CLASSES, generate_audio_scenes
from tasks.data.scene_baselines import random_recall

ROOT = Path(__file__).resolve().parents[1]
CLIPS, SEED = 40, 20261123  # neither the card's training (0), validation (1) nor test (2) seed
PROMPT = {"class_templates": ["A {}."]}  # the card's zero-shot prompt


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio-scenes")
    generate_audio_scenes(root / "train", 60, SEED + 1)
    generate_audio_scenes(root / "test", CLIPS, SEED)
    generate_audio_scenes(root / "held-out", CLIPS, SEED, "held-out")
    return root


@pytest.fixture(scope="module")
def model():
    return zoo.load("audio-clip-tiny")


def _metrics(model, task, data, **overrides):
    return zoo.evaluate(model, task, data, batch_size=16, progress=False, report=False, **overrides)["metrics"]


def test_retrieval_beats_a_random_ranking(model, clips):
    metrics = _metrics(model, "audio-retrieval", clips / "test" / "captions.jsonl")
    assert metrics["audio_to_text/recall@1"] > 5 * random_recall(2 * CLIPS, 2, 1)
    assert metrics["text_to_audio/recall@1"] > 5 * random_recall(CLIPS, 1, 1)


def test_zero_shot_names_classes_it_never_heard(model, clips):
    held_out = clips / "held-out"
    metrics = _metrics(model, held_out / "zero-shot-all-classes.yaml", held_out / "classification.jsonl", **PROMPT)
    # every clip starts with a class absent from training, which the prior and the MFCC probe never name; the card
    # measures 2.7x chance on its 500 held-out test clips (issue 17 asks for 3x)
    assert metrics["acc@1"] > 2 / len(CLASSES)


def test_baselines_script_prints_every_row(clips):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "audio_baselines.py"), "--root", str(clips)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"60 training clips, {CLIPS} seen test clips, {CLIPS} held-out clips; 14 classes (chance 1/14)"
    for row, times in (("chance:", 2), ("prior: always the most frequent class", 1), ("MFCC + logistic regression", 1),
                       ("MFCC probe: captions scored by their first sound", 1), ("audio-clip-tiny (zoo eval)", 3)):
        found = [line for line in lines if line.startswith(row) and len(line.split()) > 4]
        assert len(found) == times, f"row {row!r} missing from:\n{result.stdout}"
    assert lines[-1].startswith("targets (issue 17)"), result.stdout
