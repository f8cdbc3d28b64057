"""The audio tasks (zero-shot classification, retrieval, captioning, QA): configs, the breakdown metric, the item
checks, and each task end to end on generated clips with bad audio counted as failed rows, each with its reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from encoders.audio.io import audio_length
from encoders.base import InvalidInputError
from tasks.config import TaskConfigError, load_task
from tasks.data.audio_scenes import generate_audio_scenes
from tasks.metrics import group_means
from tests.helpers import TINY_BERT
from zoo.evaluation.evaluate import evaluate
from zoo.evaluation.fields import item_checker

AUDIO_TASKS = ("zero-shot-audio-classification", "audio-retrieval", "audio-captioning", "audio-qa")
TINY_SPECTROGRAM = {
    "front_end": {"type": "log-mel", "n_mels": 16}, "patch_frames": 8, "hidden_size": 32, "num_layers": 1,
    "num_heads": 2, "ffn_size": 64, "max_seconds": 3.0,
}
AUDIO_TOWER = {"type": "spectrogram-transformer", "config": TINY_SPECTROGRAM}
GOOD = 3  # generated clips per manifest
# Bad audio files (relative to the data folder) and the reason each row must fail with.
BAD = {
    "bad/corrupt.wav": "not a readable audio file",
    "bad/empty.wav": "audio has zero length",
    "bad/silent.wav": "audio is silent (all zeros)",
    "bad/nan.wav": "audio contains NaN or Inf samples",
    "bad/rate-8k.wav": "sample rate 8000 Hz, but the task takes 16000 Hz",
    "bad/long.wav": "31.00 s long, over the task's 30 s",
    "bad/missing.wav": "file not found",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: thread fan-out only costs time on a shared machine. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- configs ------------------------------------------------------------------------------------------------


def test_audio_task_configs_load_with_audio_items_and_item_checks():
    kinds = {name: load_task(name) for name in AUDIO_TASKS}
    assert {t.kind for t in kinds.values()} == {"zero-shot-classification", "retrieval", "generate"}
    for task in kinds.values():
        assert task.modality == "audio" and task.column("item") == "audio"
        assert task.item_checks == {"sample_rate": 16000, "max_seconds": 30}
    assert len(kinds["zero-shot-audio-classification"].class_templates) == 3
    assert kinds["audio-retrieval"].column("reference") == kinds["audio-captioning"].column("reference") == "captions"
    assert "{placeholder}" in kinds["audio-captioning"].prompt_template
    qa = kinds["audio-qa"]
    assert (qa.metric, qa.column("prompt"), qa.column("aspect")) == ("vqa", "question", "answer_type")
    # sound names and event lists take more tokens than the image tasks' budgets (8 and 32)
    assert qa.generation["max_new_tokens"] == 16 and kinds["audio-captioning"].generation["max_new_tokens"] == 64


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"item_checks": {"max_frames": 10}}, "item_checks.max_frames does not apply to audio items"),
        ({"modality": "image"}, "item_checks.sample_rate does not apply to image items"),
        ({"item_checks.max_seconds": -1}, "must be a positive finite number or null"),
        ({"item_checks.sample_rate": True}, "must be a positive finite number or null"),
        ({"item_checks": [16000]}, "item_checks must be a mapping"),
    ],
)
def test_bad_item_checks_are_task_errors(overrides, message):
    with pytest.raises(TaskConfigError, match=message):
        load_task("audio-qa", **overrides)


# ---- the breakdown metric -----------------------------------------------------------------------------------


def test_group_means_by_hand():
    assert group_means([1.0, 0.0, 0.5, 1.0, 0.0], ["yes_no", "number", "yes_no", "other", "number"]) == {
        "number": 0.0, "other": 1.0, "yes_no": 0.75,
    }
    with pytest.raises(ValueError, match="scores has 2 items but groups has 1"):
        group_means([1.0, 0.0], ["a"])
    with pytest.raises(ValueError, match="scores is empty"):
        group_means([], [])


@settings(max_examples=50, deadline=None)
@given(pairs=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["yes_no", "number", "other"])), min_size=1, max_size=30),
       seed=st.integers(0, 2**16))
def test_group_means_weighted_by_group_size_give_the_overall_mean_whatever_the_order(pairs, seed):
    scores, groups = [s for s, _ in pairs], [g for _, g in pairs]
    means = group_means(scores, groups)
    assert sum(means[g] * groups.count(g) for g in means) / len(scores) == pytest.approx(sum(scores) / len(scores))
    order = np.random.default_rng(seed).permutation(len(pairs))
    assert group_means([scores[i] for i in order], [groups[i] for i in order]) == pytest.approx(means)
    assert all(min(scores) - 1e-12 <= m <= max(scores) + 1e-12 for m in means.values())


# ---- item checks --------------------------------------------------------------------------------------------


def _tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_audio_length_reads_the_header_and_counts_in_memory_samples(tmp_path):
    sf.write(tmp_path / "stereo.wav", np.stack([_tone(0.5, 8000)] * 2, axis=1), 8000)
    assert audio_length(str(tmp_path / "stereo.wav")) == (8000, 4000)
    assert audio_length((np.stack([_tone(0.25)] * 2), 16000)) == (16000, 4000)  # (channels, samples)
    assert audio_length({"array": [0.1, -0.2, 0.3], "sampling_rate": 22050}) == (22050, 3)
    with pytest.raises(InvalidInputError, match="file not found"):
        audio_length(str(tmp_path / "nope.wav"))
    with pytest.raises(InvalidInputError, match="has no sample rate"):
        audio_length(np.zeros(10))


def test_item_checker_passes_good_clips_and_names_the_limit_a_bad_one_breaks(tmp_path):
    sf.write(tmp_path / "ok.wav", _tone(1.0), 16000)
    sf.write(tmp_path / "slow.wav", _tone(1.0, 8000), 8000)
    check = item_checker(load_task("audio-captioning"))
    assert check(str(tmp_path / "ok.wav")) == str(tmp_path / "ok.wav")
    with pytest.raises(InvalidInputError, match=r"slow\.wav\): sample rate 8000 Hz, but the task takes 16000 Hz"):
        check(str(tmp_path / "slow.wav"))
    with pytest.raises(InvalidInputError, match=r"1\.00 s long, over the task's 0\.5 s .*--set item_checks\.max_seconds"):
        item_checker(load_task("audio-captioning", **{"item_checks.max_seconds": 0.5}))((_tone(1.0), 16000))
    anything = item_checker(load_task("audio-captioning", item_checks={"sample_rate": None}))
    assert anything(str(tmp_path / "slow.wav")) == str(tmp_path / "slow.wav")  # null: the encoder resamples


# ---- end to end on generated clips, with bad audio -----------------------------------------------------------


def _write_bad_audio(root: Path) -> None:
    (root / "bad").mkdir()
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00 not really audio")
    sf.write(root / "bad" / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    sf.write(root / "bad" / "silent.wav", np.zeros(16000, dtype=np.int16), 16000)
    nan = _tone(1.0)
    nan[100] = np.nan
    sf.write(root / "bad" / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "bad" / "rate-8k.wav", _tone(1.0, 8000), 8000)
    sf.write(root / "bad" / "long.wav", np.tile((_tone(1.0) * 32767).astype(np.int16), 31), 16000)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Three generated clips per manifest, then one row per bad file (same fields as the first good row)."""
    root = tmp_path_factory.mktemp("audio-scenes")
    generate_audio_scenes(root, GOOD, seed=0)
    _write_bad_audio(root)
    for name in ("classification", "captions", "qa"):
        lines = (root / f"{name}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        if name == "qa":  # one question per clip, so every manifest has GOOD good rows
            rows = [next(r for r in rows if r["audio"] == f"audio/{i:06d}.wav" and r["question_type"] == kind)
                    for i, kind in zip(range(GOOD), ("count", "exists", "first"), strict=True)]
        rows += [{**rows[0], "audio": bad} for bad in BAD]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _assert_bad_rows_failed(results: dict, manifest: str, stage: str) -> None:
    assert results["num_rows"] == GOOD + len(BAD) and results["num_failed"] == len(BAD)
    failures = {f["source"]: f for f in results["failures"]}
    for line, (path, reason) in enumerate(BAD.items(), start=GOOD + 1):
        failure = failures[f"{manifest}:{line}"]
        assert failure["stage"] == stage and reason in failure["error"] and Path(path).name in failure["error"], failure
    assert [r["error"] is None for r in results["rows"]] == [True] * GOOD + [False] * len(BAD)


@pytest.fixture(scope="module")
def clap_like():
    spec = {
        "type": "dual-encoder",
        "towers": {"audio": AUDIO_TOWER},
        "text_tower": {"type": "hf-text", "config": {"model_config": TINY_BERT, "tokenizer": "bundled:tiny-bpe"}},
        "embed_dim": 16,
    }
    return zoo.build(spec).eval()


@pytest.fixture(scope="module")
def audio_lm():
    spec = zoo.card("tiny-test-vlm").spec
    return zoo.build({**spec, "encoders": {"audio": AUDIO_TOWER}, "projectors": {"audio": {"type": "linear", "config": {}}}}).eval()


def _rigged(data: Path, manifest: str, column: str, results: dict, answer: Callable[[Any], Any]) -> Path:
    """A copy of ``manifest`` whose good rows hold ``answer(prediction)`` in ``column``: the model's own
    predictions become the references, so each good row scores 1 and every bad row 0."""
    rows = [json.loads(line) for line in (data / manifest).read_text().splitlines()]
    for row, result in zip(rows[:GOOD], results["rows"], strict=False):
        row[column] = answer(result["prediction"])
    path = data / f"rigged-{manifest}"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_zero_shot_audio_classification_end_to_end(clap_like, data):
    task = data / "zero-shot-all-classes.yaml"  # written by the generator: all 14 classes
    first = evaluate(clap_like, task, data / "classification.jsonl", progress=False, report=False)
    _assert_bad_rows_failed(first, "classification.jsonl", "audio input")
    assert set(first["metrics"]) == {"acc@1", "acc@5", "mean_per_class_recall"}  # 14 classes: acc@5 says something
    rigged = _rigged(data, "classification.jsonl", "label", first, lambda p: p)
    results = evaluate(clap_like, task, rigged, progress=False, report=False)
    assert results["metrics"]["acc@1"] == pytest.approx(GOOD / (GOOD + len(BAD)))  # bad rows in the denominator
    labels = [r["reference"] for r in results["rows"]]
    expected = {c: labels[:GOOD].count(c) / labels.count(c) for c in set(labels)}  # bad rows: right 0 times
    assert results["per_class_accuracy"] == pytest.approx(expected)
    assert results["metrics"]["mean_per_class_recall"] == pytest.approx(sum(expected.values()) / len(expected))


def test_audio_retrieval_end_to_end(clap_like, data):
    captions = 2 * (GOOD + len(BAD))
    results = evaluate(clap_like, "audio-retrieval", data / "captions.jsonl", progress=False, report=False,
                       metric_options={"ks": [1, captions]})
    _assert_bad_rows_failed(results, "captions.jsonl", "audio input")
    share = GOOD / (GOOD + len(BAD))  # within k = every caption each good clip finds its own; bad rows are misses
    assert results["metrics"][f"audio_to_text/recall@{captions}"] == pytest.approx(share)
    assert results["metrics"][f"text_to_audio/recall@{captions}"] == pytest.approx(share)
    assert 0 <= results["metrics"]["audio_to_text/recall@1"] <= share


def test_audio_captioning_end_to_end(audio_lm, data):
    settings = {"progress": False, "report": False, "generation": {"max_new_tokens": 6, "do_sample": False}}
    first = evaluate(audio_lm, "audio-captioning", data / "captions.jsonl", **settings)
    _assert_bad_rows_failed(first, "captions.jsonl", "input")
    assert {"bleu2", "bleu4", "rougeL_f_no_stemming", "meteor_exact"} <= set(first["metrics"])
    assert all(r["prediction"] is None and r["score"] == 0.0 for r in first["rows"][GOOD:])
    rigged = _rigged(data, "captions.jsonl", "captions", first, lambda p: [p, "an unrelated caption"])
    metrics = evaluate(audio_lm, "audio-captioning", rigged, **settings)["metrics"]
    for key in ("rouge1_f_no_stemming", "rougeL_f_no_stemming"):  # means over all rows: each bad row adds a 0
        assert metrics[key] == pytest.approx(GOOD / (GOOD + len(BAD)))


def test_audio_qa_end_to_end_with_answer_type_breakdown(audio_lm, data):
    first = evaluate(audio_lm, "audio-qa", data / "qa.jsonl", progress=False, report=False)
    _assert_bad_rows_failed(first, "qa.jsonl", "input")
    rigged = _rigged(data, "qa.jsonl", "answers", first, lambda p: [p] * 10)
    metrics = evaluate(audio_lm, "audio-qa", rigged, progress=False, report=False)["metrics"]
    assert metrics["vqa_accuracy"] == pytest.approx(GOOD / (GOOD + len(BAD)))
    # the good rows ask one question of each answer type; the bad rows copy the first, a "number" question, and
    # count as misses in that group only
    assert [json.loads(line)["answer_type"] for line in rigged.read_text().splitlines()] == (
        ["number", "yes_no", "other"] + ["number"] * len(BAD)
    )
    assert metrics["vqa_accuracy/number"] == pytest.approx(1 / (1 + len(BAD)))
    assert metrics["vqa_accuracy/yes_no"] == metrics["vqa_accuracy/other"] == 1.0
    assert {k for k in metrics if "/" in k} == {"vqa_accuracy/number", "vqa_accuracy/yes_no", "vqa_accuracy/other"}


def test_training_data_refuses_the_same_bad_clips_as_evaluation(audio_lm, data):
    """``zoo finetune`` reads a manifest through build_examples: the task's item_checks (rate, length) and the
    audio checks fail each bad row with its reason, as ``zoo eval`` does, and the good rows train."""
    from zoo.training.data import build_examples

    training = build_examples(audio_lm, load_task("audio-captioning"), data / "captions.jsonl")
    assert len(training.examples) == GOOD and training.num_rows == GOOD + len(BAD)
    failures = {f["source"]: f for f in training.failed_rows}
    for line, (path, reason) in enumerate(BAD.items(), start=GOOD + 1):
        failure = failures[f"captions.jsonl:{line}"]
        assert reason in failure["error"] and Path(path).name in failure["error"], failure
