"""The bad rows of issue 14 (a hostile-input probe aborted 14 of 38 evaluations and shifted retrieval scores).

Each case inserts one bad row as line 3 of an otherwise clean data file and asserts that the run finished with a
results.json, that the row is listed as a failure with its ``file:line`` and reason, that the metric counts it
in its denominator (the clean rows are rigged to score 1 each, so the metric is exactly 4/5), and that no
other row's prediction or score moved.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from encoders.base import InvalidInputError
from zoo.evaluation.evaluate import evaluate

COLOURS = ("red", "green", "blue", "yellow")
QUESTION = "What colour is it?"
RETRIEVAL = {"metric_options": {"ks": [1, 1000]}}  # every scored image finds its caption within 1000


def write_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with no pixel data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("attack-scenes")
    for i, colour in enumerate(COLOURS):
        image = Image.new("RGB", (48, 48), "white")
        ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill=colour)
        image.save(root / f"{i}.png")
    write_bomb(root / "bomb.png")
    return root


@pytest.fixture(scope="module")
def good_rows(vlm, scenes) -> list[dict[str, Any]]:
    """Four clean rows, rigged so each scores 1: one class ("red") for zero-shot, a unique caption each for
    retrieval, and VQA answers equal to what the tiny model says about the image."""
    rows = [{"id": f"s{i}", "image": f"{i}.png", "captions": [f"a {c} circle"], "label": "red", "question": QUESTION}
            for i, c in enumerate(COLOURS)]
    probe = scenes / "probe.jsonl"
    probe.write_text("".join(json.dumps({**r, "answers": ["x", "y"]}) + "\n" for r in rows))
    said = evaluate(vlm, "vqa", probe, progress=False, report=False)
    return [{**r, "answers": [said["rows"][i]["prediction"]] * 10} for i, r in enumerate(rows)]


def run(model: Any, task: str, root: Path, out: Path, lines: list[bytes], name: str = "manifest.jsonl", **overrides: Any) -> dict:
    """Write ``lines`` as the data file, evaluate with a report, and return the results.json it wrote."""
    (root / name).write_bytes(b"\n".join(lines) + b"\n")
    evaluate(model, task, root / name, output_dir=out, progress=False, **overrides)
    assert (out / "report.html").is_file()
    return json.loads((out / "results.json").read_text())


def assert_counted(clean: dict, dirty: dict, source: str, reason: str, metric: str) -> None:
    """The bad row is listed (file:line, reason), counts in ``metric``'s denominator, and moves no other row."""
    assert dirty["num_rows"] == clean["num_rows"] + 1 == 5
    failures = {f["source"]: f["error"] for f in dirty["failures"]}
    assert list(failures) == [source], dirty["failures"]
    assert reason in failures[source]
    assert clean["metrics"][metric] == pytest.approx(1.0)
    assert dirty["metrics"][metric] == pytest.approx(4 / 5)
    outcome = {r["id"]: (r["prediction"], r["score"]) for r in clean["rows"]}
    assert {r["id"]: (r["prediction"], r["score"]) for r in dirty["rows"] if r["id"] in outcome} == outcome


def case(model: Any, task: str, scenes: Path, tmp_path: Path, rows: list[dict], bad: bytes, **overrides: Any) -> tuple[dict, dict]:
    """Results without and with ``bad`` as line 3."""
    lines = [json.dumps(r).encode() for r in rows]
    clean = run(model, task, scenes, tmp_path / "clean", lines, **overrides)
    dirty = run(model, task, scenes, tmp_path / "dirty", [*lines[:2], bad, *lines[2:]], **overrides)
    return clean, dirty


def row(base: dict, **changes: Any) -> bytes:
    """``base`` as a JSON line with ``changes`` (a value of ``...`` removes the field)."""
    fields = {**base, "id": "bad", **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


# --- decompression bomb: a PNG whose header claims 100000 x 100000 pixels ---


def test_bomb_image_in_a_generation_task(vlm, scenes, good_rows, tmp_path):
    clean, dirty = case(vlm, "vqa", scenes, tmp_path, good_rows, row(good_rows[0], image="bomb.png"))
    assert_counted(clean, dirty, "manifest.jsonl:3", "over the limit of 67,108,864 pixels", "vqa_accuracy")
    assert dirty["failures"][0]["stage"] == "input" and "MODALZOO_MAX_IMAGE_PIXELS" in dirty["failures"][0]["error"]


def test_bomb_image_in_retrieval(clip, scenes, good_rows, tmp_path):
    clean, dirty = case(clip, "retrieval", scenes, tmp_path, good_rows, row(good_rows[0], image="bomb.png"), **RETRIEVAL)
    assert_counted(clean, dirty, "manifest.jsonl:3", "decompression-bomb guard", "image_to_text/recall@1000")


# --- one byte that is not UTF-8, in each reader ---


def test_non_utf8_byte_in_a_jsonl_manifest(clip, scenes, good_rows, tmp_path):
    bad = row(good_rows[0]).replace(b"a red circle", b"a r\xffd circle")
    clean, dirty = case(clip, "zero-shot-classification", scenes, tmp_path, good_rows, bad)
    assert_counted(clean, dirty, "manifest.jsonl:3", "byte 0xff at column", "acc@1")
    assert dirty["failures"][0]["stage"] == "read"


def test_non_utf8_byte_in_a_csv(clip, scenes, good_rows, tmp_path):
    lines = [b"id,image,captions"] + [f"{r['id']},{r['image']},{r['captions'][0]}".encode() for r in good_rows]
    options = {"reader": "csv", **RETRIEVAL}
    clean = run(clip, "retrieval", scenes, tmp_path / "clean", lines, "m.csv", **options)
    dirty = run(clip, "retrieval", scenes, tmp_path / "dirty", [*lines[:2], b"bad,0.png,a r\xffd circle", *lines[2:]], "m.csv", **options)
    assert_counted(clean, dirty, "m.csv:3", "byte 0xff in column 'captions' is not valid UTF-8", "image_to_text/recall@1000")


def test_non_utf8_byte_in_uspto50k_names_file_and_line(vlm, tmp_path):
    (tmp_path / "src-test.txt").write_bytes(b"<RX_1> C C O\n<RX_2> C \xff C\n<RX_1> c 1 c c c c c 1\n")
    (tmp_path / "tgt-test.txt").write_bytes(b"C C . O\nC . C\nC 1 = C C = C C = C 1\n")
    evaluate(vlm, "retro-uspto50k", tmp_path, output_dir=tmp_path / "out", progress=False, modality=None,
             prompt_template="Product: {item} Reactants:",
             **{"generation.max_new_tokens": 4, "generation.num_beams": 1, "generation.num_return_sequences": 1})
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_rows"] == 3 and results["num_failed"] == 1
    failure = results["failures"][0]
    assert failure["source"] == "src-test.txt:2" and "src-test.txt:2: byte 0xff at column 10 is not valid UTF-8" in failure["error"]
    assert results["metrics"]["scored_fraction"] == pytest.approx(2 / 3)  # the failed row stays in the denominator


# --- a row missing its item, caption or label field ---


def test_row_without_its_item_in_retrieval(clip, scenes, good_rows, tmp_path):
    clean, dirty = case(clip, "retrieval", scenes, tmp_path, good_rows, row(good_rows[0], image=...), **RETRIEVAL)
    assert_counted(clean, dirty, "manifest.jsonl:3", "row has no 'image' field", "image_to_text/recall@1000")


def test_row_without_its_item_in_a_generation_task(vlm, scenes, good_rows, tmp_path):
    clean, dirty = case(vlm, "vqa", scenes, tmp_path, good_rows, row(good_rows[0], image=...))
    assert_counted(clean, dirty, "manifest.jsonl:3", "row has no 'image' field", "vqa_accuracy")


def test_row_without_captions(clip, scenes, good_rows, tmp_path):
    clean, dirty = case(clip, "retrieval", scenes, tmp_path, good_rows, row(good_rows[0], captions=...), **RETRIEVAL)
    assert_counted(clean, dirty, "manifest.jsonl:3", "row has no 'captions' field", "image_to_text/recall@1000")


def test_row_without_a_label(clip, scenes, good_rows, tmp_path):
    clean, dirty = case(clip, "zero-shot-classification", scenes, tmp_path, good_rows, row(good_rows[0], label=...))
    assert_counted(clean, dirty, "manifest.jsonl:3", "row has no 'label' field", "acc@1")


# --- captions that give an item no positive ---


@pytest.mark.parametrize(
    "captions, reason",
    [([], "'captions' lists 0 entries"), ([None], "'captions'[0] must be a string, got null"),
     (7, "'captions' must be a string or a list of strings, got int 7")],
    ids=["empty", "null", "number"],
)
def test_captions_without_a_usable_positive(clip, scenes, good_rows, tmp_path, captions, reason):
    clean, dirty = case(clip, "retrieval", scenes, tmp_path, good_rows, row(good_rows[0], captions=captions), **RETRIEVAL)
    assert_counted(clean, dirty, "manifest.jsonl:3", reason, "image_to_text/recall@1000")
    assert dirty["metrics"]["text_to_image/recall@1000"] == pytest.approx(4 / 5)  # its captions count too


# --- labels that are not class names ---


@pytest.mark.parametrize(
    "label, reason",
    [(None, "'label' is null"), (["red", "blue"], "'label' must be a class name")],
    ids=["null", "list"],
)
def test_label_that_is_not_a_class_name(clip, scenes, good_rows, tmp_path, label, reason):
    clean, dirty = case(clip, "zero-shot-classification", scenes, tmp_path, good_rows, row(good_rows[0], label=label))
    assert_counted(clean, dirty, "manifest.jsonl:3", reason, "acc@1")
    assert {r["prediction"] for r in dirty["rows"]} == {"red", None}  # never a class "None" or "['red', 'blue']"


# --- a manifest that names a file outside its folder ---


@pytest.mark.parametrize(
    "name, reason",
    [("../outside.png", "contains '..'"), ("/etc/hostname", "is absolute"), ("link.png", "outside")],
    ids=["dotdot", "absolute", "symlink"],
)
def test_item_path_leaving_the_manifest_folder(clip, scenes, good_rows, tmp_path, name, reason):
    outside = scenes.parent / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    (scenes / "link.png").unlink(missing_ok=True)
    (scenes / "link.png").symlink_to(outside)
    clean, dirty = case(clip, "zero-shot-classification", scenes, tmp_path, good_rows, row(good_rows[0], image=name))
    assert_counted(clean, dirty, "manifest.jsonl:3", reason, "acc@1")
    assert dirty["failures"][0]["stage"] == "read" and dirty["rows"][2]["item"] is None  # refused, never opened


# --- finding 3: a caption that fails shifts no other caption's image ---


class RejectingText:
    """A processor that refuses one caption, as a tokenizer may refuse a hostile string."""

    def __init__(self, inner: Any, refused: str) -> None:
        self.inner, self.refused = inner, refused

    def __call__(self, modality: str, items: list[Any]) -> Any:
        if modality == "text" and self.refused in items:
            raise InvalidInputError(f"caption {self.refused!r} refused")
        return self.inner(modality, items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_caption_that_fails_to_embed_shifts_no_other_pair(clip, scenes, good_rows, tmp_path, monkeypatch):
    bad = row(good_rows[0], image="3.png", captions=["a yellow circle again", "poison"])
    clean = run(clip, "retrieval", scenes, tmp_path / "clean", [json.dumps(r).encode() for r in good_rows])
    monkeypatch.setattr(clip, "processor", RejectingText(clip.processor, "poison"))
    lines = [json.dumps(r).encode() for r in good_rows]
    dirty = run(clip, "retrieval", scenes, tmp_path / "dirty", [*lines[:2], bad, *lines[2:]])
    failure = dirty["failures"][0]
    assert (failure["source"], failure["stage"]) == ("manifest.jsonl:3", "text input") and "poison" in failure["error"]
    outcome = {r["id"]: (r["prediction"], r["score"]) for r in clean["rows"]}
    assert {r["id"]: (r["prediction"], r["score"]) for r in dirty["rows"] if r["id"] != "bad"} == outcome
    for key in ("image_to_text/recall@1", "image_to_text/mAP@10"):
        assert dirty["metrics"][key] == pytest.approx(clean["metrics"][key] * 4 / 5)
    assert dirty["metrics"]["text_to_image/recall@1"] == pytest.approx(clean["metrics"]["text_to_image/recall@1"] * 4 / 6)
