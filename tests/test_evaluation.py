"""zoo.evaluate / zoo eval: every task kind end to end on tiny models, with failed rows counted, not dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import zoo
from tasks.config import TaskConfigError, load_task
from tasks.data.manifest import Row, read_rows
from tests.helpers import dual_encoder_spec, image_molecule_lm_spec
from zoo.evaluation.evaluate import evaluate
from zoo.evaluation.fields import check_rows
from zoo.evaluation.report import render_report
from zoo.evaluation.retrieval import Caption, score_retrieval

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}


def _scene(path: Path, colour: str, shape: str) -> str:
    image = Image.new("RGB", (48, 48), "white")
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((12, 12, 36, 36), fill=COLOURS[colour])
    image.save(path)
    return path.name


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Six generated scenes, a corrupt image and a malformed line, in one JSONL manifest."""
    root = tmp_path_factory.mktemp("scenes")
    rows = []
    for i, (colour, shape) in enumerate([(c, s) for c in COLOURS for s in ("circle", "square")]):
        name = _scene(root / f"{i}.png", colour, shape)
        rows.append({
            "id": f"s{i}", "image": name, "question": f"What colour is the {shape}?", "answers": [colour] * 10,
            "captions": [f"a {colour} {shape}", f"one {colour} {shape} on white"], "label": colour,
            "expression": f"the {colour} {shape}", "box": [0.25, 0.25, 0.75, 0.75],
        })
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows.append({**rows[0], "id": "corrupt", "image": "broken.png"})
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def vlm():
    return zoo.build("tiny-test-vlm").eval()


@pytest.fixture(scope="module")
def clip():
    return zoo.build(dual_encoder_spec()).eval()


def test_generation_task_counts_failed_rows_in_the_denominator(vlm, scenes, tmp_path):
    first = evaluate(vlm, "vqa", scenes / "manifest.jsonl", batch_size=4, progress=False, report=False)
    assert first["num_rows"] == 8 and first["num_failed"] == 2
    stages = {f["source"]: f["stage"] for f in first["failures"]}
    assert stages == {"manifest.jsonl:4": "read", "manifest.jsonl:8": "input"}
    assert "broken.png" in next(f["error"] for f in first["failures"] if f["stage"] == "input")
    # Make every readable reference equal the model's own answer: the score must be 6/8, not 6/6.
    rows = [json.loads(line) for line in (scenes / "manifest.jsonl").read_text().splitlines() if line.startswith("{\"")]
    answers = {r["id"]: r["prediction"] for r in first["rows"] if r["prediction"] is not None}
    for row in rows:
        row["answers"] = [answers.get(row["id"], "x")] * 10
    rigged = tmp_path / "manifest.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    rigged.write_text("\n".join(lines) + "\n")
    for png in scenes.glob("*.png"):
        shutil.copy(png, tmp_path / png.name)
    second = evaluate(vlm, "vqa", rigged, batch_size=4, progress=False, report=False)
    assert second["metrics"]["vqa_accuracy"] == pytest.approx(6 / 8)


def test_scores_do_not_depend_on_batch_size(vlm, scenes):
    one = evaluate(vlm, "captioning", scenes / "manifest.jsonl", batch_size=1, progress=False, report=False)
    many = evaluate(vlm, "captioning", scenes / "manifest.jsonl", batch_size=32, progress=False, report=False)
    assert [r["prediction"] for r in one["rows"]] == [r["prediction"] for r in many["rows"]]
    assert one["metrics"] == many["metrics"]


def test_grounding_lists_unparsable_generations(vlm, scenes):
    results = evaluate(vlm, "grounding", scenes / "manifest.jsonl", progress=False, report=False)
    unparsable = [f for f in results["failures"] if f["stage"] == "generation"]
    assert len(unparsable) == 6 and "unparsable box" in unparsable[0]["error"]  # an untrained model emits no box
    assert results["metrics"]["accuracy_at_iou_0.5"] == 0.0


def test_retrieval_and_zero_shot_classification_on_a_dual_encoder(clip, scenes):
    retrieval = evaluate(clip, "retrieval", scenes / "manifest.jsonl", progress=False, report=False,
                         metric_options={"ks": [1, 14]})
    assert retrieval["num_failed"] == 2
    # 14 captions: within 14 every loaded image finds its caption; the corrupt and the malformed rows cannot
    assert retrieval["metrics"]["image_to_text/recall@14"] == pytest.approx(6 / 8)
    assert retrieval["metrics"]["text_to_image/recall@14"] == pytest.approx(12 / 14 * 7 / 8)
    zsc = evaluate(clip, "zero-shot-classification", scenes / "manifest.jsonl", progress=False, report=False)
    assert set(zsc["metrics"]) == {"acc@1", "mean_per_class_recall"}  # three classes: acc@5 would always hit
    assert [r["reference"] for r in zsc["rows"]] == ["red", "red", "green", None, "green", "blue", "blue", "red"]
    matrix = zsc["confusion_matrix"]
    assert matrix["classes"] == matrix["true_classes"] == ["blue", "green", "red"]
    assert matrix["columns"] == ["blue", "green", "red", "failed"]
    # the malformed line has no label; the corrupt image is a red scene that failed
    assert [sum(row) for row in matrix["counts"]] == [2, 2, 3] and [row[3] for row in matrix["counts"]] == [0, 0, 1]
    right = sum(matrix["counts"][k][k] for k in range(3))
    assert zsc["metrics"]["acc@1"] == pytest.approx(right / 8)
    page = render_report(zsc)
    assert '<table id="confusion"' in page and "1 of the 8 rows failed before classification" in page
    six = evaluate(clip, "zero-shot-classification", scenes / "manifest.jsonl", progress=False, report=False,
                   class_names=["red", "green", "blue", "cyan", "magenta", "yellow"])
    assert set(six["metrics"]) == {"acc@1", "acc@5", "mean_per_class_recall"}  # more classes than 5: acc@5 says something
    assert six["confusion_matrix"]["columns"][-1] == "failed" and len(six["confusion_matrix"]["counts"]) == 6


def test_multiple_choice_scores_options_by_log_likelihood(tmp_path):
    model = zoo.build(image_molecule_lm_spec()).eval()
    rows = [
        {"smiles": "CCO", "question": "Which group?", "options": ["alcohol", "amine", "ketone", "acid"], "answer": 0, "aspect": "groups"},
        {"smiles": "CC(=O)O", "question": "Which group?", "options": ["alcohol", "acid"], "answer": 1, "aspect": "groups"},
        {"smiles": "C1CC", "question": "Broken?", "options": ["yes", "no"], "answer": 0, "aspect": "other"},
    ]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    results = evaluate(model, "molecule-qa", tmp_path / "qa.jsonl", progress=False, report=False)
    assert results["num_failed"] == 1 and "C1CC" in results["failures"][0]["error"]
    assert set(results["metrics"]) == {"accuracy", "accuracy/groups", "accuracy/other"}
    assert results["metrics"]["accuracy/other"] == 0.0
    assert all(r["prediction"].startswith("option ") for r in results["rows"][:2])
    assert [r["reference"] for r in results["rows"]] == ["option 0: alcohol", "option 1: acid", "option 0: yes"]


def test_reaction_task_with_beam_top_k(vlm, tmp_path):
    (tmp_path / "src-test.txt").write_text("<RX_1> C C O\n<RX_2> c 1 c c c c c 1\n")
    (tmp_path / "tgt-test.txt").write_text("C C . O\nC 1 = C C = C C = C 1\n")
    results = evaluate(
        vlm, "retro-uspto50k", tmp_path, progress=False, report=False, modality=None,
        prompt_template="Product: {item} Reactants:", **{"generation.max_new_tokens": 6, "generation.num_beams": 3,
                                                           "generation.num_return_sequences": 3},
    )
    assert all(len(r["prediction"]) == 3 for r in results["rows"])
    assert {"top1_exact_match_stereo_aware", "top3_exact_match_stereo_agnostic", "top1_validity"} <= set(results["metrics"])


def test_results_carry_provenance_and_are_written_atomically(vlm, scenes, tmp_path):
    evaluate(vlm, "vqa", scenes / "manifest.jsonl", output_dir=tmp_path / "out", progress=False)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    prov = written["provenance"]
    assert prov["spec"]["type"] == "multimodal-lm" and prov["prompt_template"].startswith("{placeholder}")
    assert len(prov["data"]["sha256"]) == 64 and prov["packages"]["torch"].startswith("2.")
    assert "resolved_data_config" in prov["processor"]["encoders"]["image"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "results.json"]


def test_report_renders_in_headless_chromium(vlm, scenes, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (CI installs it: apt-get install chromium)")
    evaluate(vlm, "vqa", scenes / "manifest.jsonl", output_dir=tmp_path, progress=False)
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = out.stdout
    assert 'data-rendered="yes"' in dom, out.stderr[-2000:]
    total = int(dom.split('data-images-total="')[1].split('"')[0])
    loaded = int(dom.split('data-images-loaded="')[1].split('"')[0])
    assert total >= 8 and loaded == total  # 6 thumbnails + 2 plots, all decoded
    assert "manifest.jsonl:4" in dom and "not a readable image" in dom


def test_cli_eval_writes_results(scenes, tmp_path):
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["eval", "tiny-test-vlm", "--task", "vqa", "--data", str(scenes / "manifest.jsonl"),
                                      "-o", str(tmp_path), "--set", "generation.max_new_tokens=2"])
    assert result.exit_code == 0, result.output
    assert "8 rows, 2 failed (counted as wrong)" in result.output
    assert json.loads((tmp_path / "results.json").read_text())["task"]["generation"]["max_new_tokens"] == 2


def test_task_yaml_include_and_strict_keys(tmp_path):
    (tmp_path / "mine.yaml").write_text("include: vqa\nprompt_template: '{placeholder} Q: {question} A:'\n")
    task = load_task(tmp_path / "mine.yaml")
    assert task.metric == "vqa" and task.prompt_template.startswith("{placeholder} Q:") and task.name == "mine"
    (tmp_path / "bad.yaml").write_text("include: vqa\nmetrc: vqa\n")
    with pytest.raises(TaskConfigError, match="unknown key 'metrc'"):
        load_task(tmp_path / "bad.yaml")
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(TaskConfigError, match="include cycle"):
        load_task(tmp_path / "a.yaml")


def test_task_template_must_name_row_fields():
    with pytest.raises(TaskConfigError, match="prompt_template is not a format string"):
        load_task("vqa", prompt_template="{placeholder} {question")
    with pytest.raises(TaskConfigError, match="fields must be named after row fields"):
        load_task("vqa", prompt_template="{placeholder} {}")


def test_jsonl_reader_keeps_every_non_blank_line_as_one_row(tmp_path):
    lines = [
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark is not part of the first row
        b"  \t\r",  # blank: no row
        b'{"a": "x\xe2\x80\xa8y"}',  # U+2028 inside a string does not split the row
        b'{"a": "\xff"}',
        b"[" * 5000,
        b'{"a": "\\ud800"}',
        b"[1]",
    ]
    (tmp_path / "m.jsonl").write_bytes(b"\n".join(lines))
    rows = read_rows("jsonl", tmp_path / "m.jsonl")
    assert [r.source for r in rows] == [f"m.jsonl:{n}" for n in (1, 3, 4, 5, 6, 7)]
    assert rows[0].fields == {"a": 1} and rows[1].fields == {"a": "x\u2028y"}
    errors = [r.error for r in rows[2:]]
    assert "m.jsonl:4: byte 0xff at column 8 is not valid UTF-8" in errors[0]
    assert "nested too deeply" in errors[1] and "unpaired surrogate" in errors[2] and "expected a JSON object" in errors[3]


def test_csv_reader_names_the_line_each_record_starts_on(tmp_path):
    text = b'id,text\n1,"two\nlines"\n\n2,caf\xe9\n3,' + b"x" * 200_000 + b"\n4,ok,extra\n5,fine\n"
    (tmp_path / "m.csv").write_bytes(text)
    rows = read_rows("csv", tmp_path / "m.csv")
    assert [r.source for r in rows] == ["m.csv:2", "m.csv:5", "m.csv:6", "m.csv:7", "m.csv:8"]
    assert rows[0].fields == {"id": "1", "text": "two\nlines"} and rows[4].fields == {"id": "5", "text": "fine"}
    assert "byte 0xe9 in column 'text' is not valid UTF-8" in rows[1].error
    assert "unreadable record (field larger than field limit" in rows[2].error
    assert "the header has 2, this row has 3" in rows[3].error
    (tmp_path / "h.csv").write_bytes(b"id,t\xe9xt\n1,a\n")
    assert "byte 0xe9 in the header (line 1)" in read_rows("csv", tmp_path / "h.csv")[0].error


@pytest.mark.parametrize(
    "task, overrides, fields, reason",
    [
        ("vqa", {}, {"image": "a.png", "answers": ["red"]}, "a field of the prompt template"),
        ("vqa", {}, {"image": "a.png", "question": "q", "answers": ["red"]}, "'answers' lists 1 entries; give at least 2"),
        ("vqa", {}, {"image": ["a.png"], "question": "q", "answers": ["a", "b"]}, "'image' must be a file path (string)"),
        ("grounding", {}, {"image": "a.png", "expression": "e", "box": [0, 1]}, "'box' must be a box [x1, y1, x2, y2]"),
        ("grounding", {}, {"image": "a.png", "expression": "e", "box": [0, 0, 1, 10**400]}, "four finite numbers"),
        ("retro-uspto50k", {}, {"item": "CCO", "reaction_class": 1, "reference": ""}, "'reference' is empty"),
        ("molecule-qa", {}, {"smiles": "C", "question": "q", "options": "ab", "answer": 0}, "'options' must be a list of at least two"),
        ("molecule-qa", {}, {"smiles": "C", "question": "q", "options": ["a", "b"], "answer": 2}, "index of the right option, 0..1"),
        ("molecule-qa", {}, {"smiles": "C", "question": "q", "options": ["a", "b"], "answer": True}, "got bool True"),
        ("zero-shot-classification", {"class_names": ["cat"]}, {"image": "a.png", "label": "dog"}, "not one of the task's class_names"),
        ("linear-probe", {}, {"smiles": "C", "active": "yes"}, "'active' holds str 'yes'; a label must be 0, 1 or empty"),
        ("linear-probe", {}, {"smiles": "C", "active": 10**400}, "a label must be 0, 1 or empty"),
    ],
)
def test_row_checks_say_which_field_is_wrong(task, overrides, fields, reason):
    problems = check_rows(load_task(task, **overrides), [Row(0, fields, source="m.jsonl:1")])
    assert reason in problems[0]


def test_row_checks_pass_good_rows():
    good = {
        "vqa": {"image": "a.png", "question": "q", "answers": ["a", "b"]},
        "molecule-qa": {"smiles": "C", "question": "q", "options": ["a", 2], "answer": "1"},
        "retrieval": {"image": "a.png", "captions": "one caption"},
        "zero-shot-classification": {"image": "a.png", "label": 3},
        "linear-probe": {"smiles": "C", "active": "1", "toxic": "", "other": 0.0},
    }
    for task, fields in good.items():
        assert check_rows(load_task(task), [Row(0, fields)]) == {}, task


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_retrieval_ids_stay_stable_when_items_or_captions_fail(sizes, seed, data):
    """Removing failed items or captions from the embeddings changes no other row's top-1 or metric share."""
    generator = torch.Generator().manual_seed(seed)
    rows = list(range(len(sizes)))
    captions = [Caption(k, owner, f"c{k}") for k, owner in enumerate(o for o, n in enumerate(sizes) for _ in range(n))]
    items = {i: torch.nn.functional.normalize(torch.randn(8, generator=generator), dim=0) for i in rows}
    texts = {c.id: torch.nn.functional.normalize(torch.randn(8, generator=generator), dim=0) for c in captions}
    dropped_items = data.draw(st.sets(st.sampled_from(rows)), label="failed items")
    dropped_texts = data.draw(st.sets(st.sampled_from([c.id for c in captions])), label="failed captions")
    failed_rows = dropped_items | {c.owner for c in captions if c.id in dropped_texts}
    options = {"ks": [1, 2]}
    full = score_retrieval(rows, captions, {i: v for i, v in items.items() if i not in dropped_items},
                           {k: v for k, v in texts.items() if k not in dropped_texts}, "image", options)
    kept = [i for i in rows if i not in failed_rows]
    alone = score_retrieval(kept, [c for c in captions if c.owner in kept], items, texts, "image", options)
    assert {i: full.per_row[i] for i in kept} == alone.per_row and full.top1 == alone.top1
    assert all(full.per_row[i] == 0.0 for i in failed_rows)
    if kept:
        share = len(kept) / len(rows)
        assert full.metrics["image_to_text/recall@1"] == pytest.approx(alone.metrics["image_to_text/recall@1"] * share)
        assert full.metrics["image_to_text/median_rank"] == alone.metrics["image_to_text/median_rank"]
    else:
        assert full.metrics == {}


def test_equal_captions_are_embedded_once_and_tie_by_gallery_index(clip, scenes, tmp_path):
    """Two rows with the same caption text: the text is embedded once, so both captions score exactly alike and
    the earlier one ranks first for every image (the tie rule), whatever batch each would have sat in."""
    rows = [json.loads(line) for line in (scenes / "manifest.jsonl").read_text().splitlines() if line.startswith('{"')]
    rows = [r for r in rows if r["image"] != "broken.png"][:4]
    for r in rows:
        r["captions"] = ["the same words"] if r is rows[0] or r is rows[2] else [f"caption of {r['id']}"]
        shutil.copy(scenes / r["image"], tmp_path / r["image"])
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    seen: list[str] = []
    processor = clip.processor

    class Recording:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, modality, values):
            seen.extend(values if modality == "text" else [])
            return processor(modality, values)

    clip.processor = Recording()
    try:
        results = evaluate(clip, "retrieval", tmp_path / "manifest.jsonl", batch_size=1, progress=False, report=False,
                           metric_options={"ks": [1, 4]})
    finally:
        clip.processor = processor
    assert sorted(seen) == sorted(["the same words", f"caption of {rows[1]['id']}", f"caption of {rows[3]['id']}"])
    # image 2's caption scores exactly as row 0's, which comes first in the gallery: image 2 cannot be a hit at 1
    assert results["num_failed"] == 0 and results["metrics"]["image_to_text/recall@1"] <= 3 / 4
