"""Property-based tests over data files (hypothesis), for issue 14's target of 0 aborted evaluations and 0 shifted
or uncounted rows:

- fuzzed manifests: no exception escapes evaluation, results.json always holds one row per non-blank line (with
  its ``file:line``), a known-good line never fails, and every failed row counts in the metric's denominator;
- in every task kind, adding a failing row to a data set changes no other row's prediction or score, and the
  metric counts it as a miss.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import zoo
from tests.security.test_evaluation_attacks import write_bomb
from zoo.evaluation.evaluate import evaluate

COLOURS = ("red", "green", "blue", "yellow")
BLANK = b" \t\r"  # a line of only these holds no row
TINY_GCN = {"type": "encoder", "modality": "molecule_graph",
            "encoder": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}}
MULTIPLE_CHOICE = {"modality": "image", "prompt_template": "{placeholder} {question} Answer:",
                   "fields": {"item": "image", "prompt": "question", "options": "options", "answer": "answer"}}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Four scenes, a decompression bomb, a truncated PNG and a folder where an image should be."""
    root = tmp_path_factory.mktemp("fuzz-scenes")
    for i, colour in enumerate(COLOURS):
        image = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(image).rectangle((6, 6, 26, 26), fill=colour)
        image.save(root / f"{i}.png")
    write_bomb(root / "bomb.png")
    (root / "broken.png").write_bytes((root / "0.png").read_bytes()[:40])
    (root / "folder.png").mkdir()
    return root


def good_row(i: int) -> dict[str, Any]:
    """A row every image task can use (VQA, multiple choice, retrieval, zero-shot classification)."""
    colour = COLOURS[i]
    return {"id": f"s{i}", "image": f"{i}.png", "question": "What colour?", "answers": [colour] * 10,
            "options": [colour, "purple"], "answer": 0, "captions": [f"a {colour} square"], "label": colour}


def evaluate_lines(model: Any, task: str, root: Path, lines: list[bytes], report: bool = False, **overrides: Any) -> dict:
    """Write ``lines`` as ``root/manifest.jsonl``, evaluate, and return the results.json that the run wrote."""
    (root / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with tempfile.TemporaryDirectory() as out:
        evaluate(model, task, root / "manifest.jsonl", output_dir=out, progress=False, report=report, **overrides)
        return json.loads((Path(out) / "results.json").read_text())


# --- fuzzed manifests ---

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
IMAGES = st.sampled_from(["0.png", "3.png", "bomb.png", "broken.png", "folder.png", "missing.png", "", "x" * 5000, "a\x00b",
                         "../0.png", "/etc/hostname"])
CAPTIONS = st.sampled_from(["a red square", ["a", "b"], [], [None], 7, "", ["ok", 3]])
LABELS = st.sampled_from(["red", "blue", None, ["red"], 7, "", True])
FUZZED_ROWS = st.fixed_dictionaries(
    {}, optional={"image": IMAGES | JSON_VALUES, "captions": CAPTIONS | JSON_VALUES, "label": LABELS | JSON_VALUES,
                  "id": JSON_VALUES}
).map(lambda fields: json.dumps(fields).encode())
NASTY_LINES = st.sampled_from([
    b"{not json", b"[" * 5000, b"null", b"[1, 2]", b"\xef\xbb\xbf{}", b'{"image": "0.png", "captions": "\\ud800", "label": "red"}',
    b'{"image": "0.png", "captions": "a \xff", "label": "red"}', b"\x00", b"\x0c", "\u2028".encode(), b"1" * 5000,
])
BLANK_LINES = st.sampled_from([b"", b"  ", b"\t\r"])
LINES = st.lists(
    st.one_of(
        st.integers(0, 3).map(lambda i: ("good", json.dumps({**good_row(i), "label": "red"}).encode())),
        FUZZED_ROWS.map(lambda line: ("fuzzed", line)),
        NASTY_LINES.map(lambda line: ("fuzzed", line)),
        st.binary(max_size=40).map(lambda line: ("fuzzed", line.replace(b"\n", b""))),
        BLANK_LINES.map(lambda line: ("blank", line)),
    ),
    min_size=1,
    max_size=8,
).filter(lambda lines: any(line.strip(BLANK) for _, line in lines))


def check_accounting(results: dict, lines: list[tuple[str, bytes]], rate: str) -> None:
    """One row per non-blank line, with its file:line; good lines never fail; ``rate`` counts every failure."""
    numbers = [n for n, (_, line) in enumerate(lines, start=1) if line.strip(BLANK)]
    assert results["num_rows"] == len(numbers) == len(results["rows"])
    assert [r["source"] for r in results["rows"]] == [f"manifest.jsonl:{n}" for n in numbers]
    assert [r["index"] for r in results["rows"]] == list(range(len(numbers)))
    failed = [f["index"] for f in results["failures"]]
    assert len(set(failed)) == len(failed) == results["num_failed"]
    assert all(results["rows"][i]["error"] for i in failed)
    good = [k for k, n in enumerate(numbers) if lines[n - 1][0] == "good"]
    assert not set(good) & set(failed), results["failures"]
    # every scored row is right by construction, so the metric is exactly the share of rows that did not fail
    expected = (results["num_rows"] - results["num_failed"]) / results["num_rows"]
    assert results["metrics"].get(rate, 0.0) == pytest.approx(expected)


@settings(max_examples=25, deadline=None)
@given(lines=LINES)
def test_fuzzed_manifests_never_abort_and_count_every_row(clip, scenes, lines):
    raw = [line for _, line in lines]
    # One class only: each row that is scored is right, each that fails is wrong.
    classified = evaluate_lines(clip, "zero-shot-classification", scenes, raw, report=True, class_names=["red"])
    check_accounting(classified, lines, "acc@1")
    # Within 1000 every scored image finds its own caption.
    retrieved = evaluate_lines(clip, "retrieval", scenes, raw, metric_options={"ks": [1000]})
    check_accounting(retrieved, lines, "image_to_text/recall@1000")


# --- adding a failing row changes no other row's outcome ---

FAILING_ROWS = {  # name -> (the failing line made from a good row, the stage it fails at)
    "malformed JSON": (lambda row: json.dumps(row).encode()[:-5], "read"),
    "non-UTF-8 byte": (lambda row: json.dumps(row).encode().replace(b"What", b"Wh\xfft"), "read"),
    "no item": (lambda row: json.dumps({k: v for k, v in row.items() if k != "image"}).encode(), "fields"),
    "ill-typed fields": (lambda row: json.dumps({**row, "answers": 7, "options": "ab", "captions": [None], "label": None}).encode(), "fields"),
    "decompression bomb": (lambda row: json.dumps({**row, "image": "bomb.png"}).encode(), "input"),
    "truncated image": (lambda row: json.dumps({**row, "image": "broken.png"}).encode(), "input"),
}
TASKS = {  # task kind -> (model fixture, task, overrides, a rate metric over rows)
    "generate": ("vlm", "vqa", {}, "vqa_accuracy"),
    "multiple-choice": ("vlm", "molecule-qa", MULTIPLE_CHOICE, "accuracy"),
    "retrieval": ("clip", "retrieval", {}, "image_to_text/recall@1"),
    "zero-shot-classification": ("clip", "zero-shot-classification", {}, "acc@1"),
}


def assert_unchanged(clean: dict, dirty: dict, position: int, stage: str, rate: str | None) -> None:
    """The failing row (at ``position``) is listed at its stage; every other row kept its outcome; ``rate`` (a
    mean over rows, if the task has one) counts it as a miss."""
    n = clean["num_rows"]
    assert dirty["num_rows"] == n + 1 and dirty["num_failed"] == clean["num_failed"] + 1
    failure = next(f for f in dirty["failures"] if f["index"] == position)
    assert failure["stage"].endswith(stage)
    before = [(r["prediction"], r["score"]) for r in clean["rows"]]
    after = [(r["prediction"], r["score"]) for k, r in enumerate(dirty["rows"]) if k != position]
    assert after == before
    if rate is not None:
        assert dirty["metrics"][rate] * (n + 1) == pytest.approx(clean["metrics"][rate] * n)


class CleanRuns(dict):
    """Results of the clean data sets by (task kind, rows), shared across examples (each run is deterministic)."""

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example: keep that readable
        return f"<{len(self)} clean runs>"


@pytest.fixture(scope="module")
def clean_runs() -> CleanRuns:
    return CleanRuns()


@pytest.mark.parametrize("failure", sorted(FAILING_ROWS))
@pytest.mark.parametrize("kind", list(TASKS))
@settings(max_examples=2, deadline=None)
@given(base=st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True), position=st.integers(0, 4))
def test_a_failing_row_changes_no_other_rows_outcome(request, scenes, clean_runs, kind, failure, base, position):
    model_name, task, overrides, rate = TASKS[kind]
    model = request.getfixturevalue(model_name)
    position = min(position, len(base))
    make, stage = FAILING_ROWS[failure]
    lines = [json.dumps(good_row(i)).encode() for i in base]
    bad = make({**good_row(3), "id": "bad", "label": "purple"})  # a new label: it must not become a class
    if (kind, tuple(base)) not in clean_runs:
        clean_runs[kind, tuple(base)] = evaluate_lines(model, task, scenes, lines, **overrides)
    dirty = evaluate_lines(model, task, scenes, [*lines[:position], bad, *lines[position:]], **overrides)
    assert_unchanged(clean_runs[kind, tuple(base)], dirty, position, stage, rate)
    assert dirty["rows"][position]["source"] == f"manifest.jsonl:{position + 1}"


def molecules_csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["smiles", "active"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


FAILING_MOLECULES = {  # name -> (the failing CSV line, the stage it fails at)
    "invalid SMILES": (b"C1CC,1", "input"),
    "label that is not 0 or 1": (b"CCO,maybe", "fields"),
    "non-UTF-8 byte": (b"CC\xffO,1", "read"),
    "wrong number of columns": (b"CCO,1,0", "read"),
}
SCAFFOLDS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CCOC1", "c1ccsc1", "C1CCNCC1", "c1ccc2ccccc2c1", "C1CC1"]


@pytest.fixture(scope="module")
def gcn():
    return zoo.build(TINY_GCN).eval()


@pytest.mark.parametrize("name", sorted(FAILING_MOLECULES))
@settings(max_examples=2, deadline=None)
@given(position=st.integers(0, 24))
def test_a_failing_molecule_changes_no_other_rows_probe_split(gcn, tmp_path_factory, name, position):
    root = tmp_path_factory.mktemp("probe")
    rows = [{"smiles": f"{s}{'C' * k}", "active": (k + len(s)) % 2} for s in SCAFFOLDS for k in range(1, 4)]
    lines = molecules_csv(rows).splitlines()
    bad, stage = FAILING_MOLECULES[name]
    runs = []
    for data in (lines, [*lines[: position + 1], bad, *lines[position + 1 :]]):
        (root / "mols.csv").write_bytes(b"\n".join(data) + b"\n")
        evaluate(gcn, "linear-probe", root / "mols.csv", output_dir=root / "out", progress=False, report=False)
        runs.append(json.loads((root / "out" / "results.json").read_text()))
    clean, dirty = runs
    assert_unchanged(clean, dirty, position, stage, rate=None)  # ROC-AUC is not a mean over rows
    assert dirty["rows"][position]["source"] == f"mols.csv:{position + 2}"
