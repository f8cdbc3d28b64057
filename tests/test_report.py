"""report.html shows the truth: grounding boxes drawn on the image, predicted molecules beside the true ones,
a confusion matrix for classification, audio that plays beside its spectrogram (bad clips showing why not), and
tables that wrap instead of running off the page (checked in headless chromium)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageDraw

import zoo
from tasks.data.audio_scenes import generate_audio_scenes
from tests.helpers import TINY_BERT
from tests.test_audio_tasks import AUDIO_TOWER
from zoo.evaluation import report_audio
from zoo.evaluation.report import MAX_DRAWN_SMILES, render_report

LONG = "C" * 120 + "N" * 120 + "O" * 120  # one unbroken word far wider than the page
LONG_CAPTION = "an-unbroken-caption-" * 40


def _results(task: dict[str, Any], rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A results dict as ``zoo.evaluate`` returns it, without running a model."""
    full_task = {"name": "report-check", "modality": None, "metric": "exact_match", "metric_options": {},
                 "prompt_template": "{prompt}", **task}
    return {
        "task": full_task,
        "metrics": {"accuracy": 0.5, "a_metric_with_a_very_long_name_" * 4: 0.25},
        "num_rows": len(rows),
        "num_failed": sum(bool(r.get("error")) for r in rows),
        "failures": [{"index": r["index"], "source": f"data.jsonl:{r['index'] + 1}", "stage": "generation", "error": r["error"]}
                     for r in rows if r.get("error")],
        "rows": [{"id": r["index"], "source": f"data.jsonl:{r['index'] + 1}", "prompt": None, "score": 0.0, "error": None, **r}
                 for r in rows],
        "provenance": {"model": "tiny", "started_at": "2024-01-01T00:00:00+00:00", "duration_s": 1.0, "device": "cpu",
                       "generation": {}, "data": {"sha256": "0" * 64}, "packages": {"torch": "2"}},
        **extra,
    }


def _image_with_square(path: Path) -> str:
    image = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(image).rectangle((16, 12, 48, 36), fill=(30, 30, 220))
    image.save(path)
    return str(path)


def _inline_pngs(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")
            for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _has_colour(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    return bool((np.abs(np.asarray(image, dtype=int) - colour) < 40).all(axis=-1).any())


def _grounding_results(tmp_path: Path) -> dict[str, Any]:
    image = _image_with_square(tmp_path / "scene.png")
    matrix = {
        "classes": [f"class-{k}-" + "x" * 40 for k in range(8)],
        "true_classes": [f"class-{k}-" + "x" * 40 for k in range(8)],
        "columns": [*(f"class-{k}-" + "x" * 40 for k in range(8)), "failed"],
        "counts": [[5 if j == k else 1 for j in range(9)] for k in range(8)],
    }
    return _results(
        {"name": "grounding", "modality": "image", "metric": "grounding", "metric_options": {"bins": 512, "threshold": 0.5}},
        [
            {"index": 0, "item": image, "prompt": LONG_CAPTION, "reference": [0.25, 0.25, 0.75, 0.75],
             "prediction": "<pos_0><pos_0><pos_100><pos_100>"},
            {"index": 1, "item": image, "prompt": "the square", "reference": [0.25, 0.25, 0.75, 0.75],
             "prediction": LONG, "error": f"unparsable box: {LONG}"},
        ],
        confusion_matrix=matrix,
    )


def test_grounding_rows_draw_the_reference_and_the_predicted_box(tmp_path):
    page = render_report(_grounding_results(tmp_path))
    drawn = [image for image in _inline_pngs(page) if image.size == (256, 192)]  # the 64x48 scene, scaled up
    assert len(drawn) == 2
    assert _has_colour(drawn[0], (0, 160, 0)) and _has_colour(drawn[0], (224, 0, 0))  # reference and prediction
    assert _has_colour(drawn[1], (0, 160, 0)) and not _has_colour(drawn[1], (224, 0, 0))  # unparsable: no red box
    assert "no box" in page and "[0.25, 0.25, 0.75, 0.75]" in page


def test_confusion_matrix_is_a_table_with_a_failed_column(tmp_path):
    page = render_report(_grounding_results(tmp_path))
    table = page.split('<table id="confusion"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 9 and "<th>failed</th>" in table  # header + 8 true classes
    assert table.count('class="diag"') == 8
    assert "104 rows counted" in page  # 8 true classes x (5 right + 8 others at 1 each)


def test_a_large_confusion_matrix_is_a_heatmap():
    classes = [str(k) for k in range(40)]
    matrix = {"classes": classes, "true_classes": classes, "columns": [*classes, "failed"],
              "counts": [[int(j == k) for j in range(41)] for k in range(40)]}
    page = render_report(_results({}, [{"index": 0, "item": None, "reference": "0", "prediction": "0"}], confusion_matrix=matrix))
    assert 'alt="confusion matrix"' in page and '<table id="confusion"' not in page


def test_molecule_tasks_draw_the_top_prediction_beside_the_reference():
    rows = [
        {"index": 0, "item": "CCO", "reference": "CC.O", "prediction": ["CC.O", "CCC"]},
        {"index": 1, "item": "CCO", "reference": "c1ccccc1", "prediction": "C1CC"},  # does not parse
        {"index": 2, "item": "CCO", "reference": "C" * (MAX_DRAWN_SMILES + 1), "prediction": None, "error": "failed"},
    ]
    page = render_report(_results({"metric": "reaction_topk", "modality": "smiles"}, rows))
    body = page.split('<table id="rows"', 1)[1]
    cells = re.findall(r"<tr class=\"[a-z]*\">(.*?)</tr>", body, flags=re.S)
    first, second, third = (re.findall(r"<td[^>]*>(.*?)</td>", c, flags=re.S) for c in cells)
    assert first[3].count("<svg") == 1 and "CCC" in first[3]  # the top one drawn, the rest listed
    assert first[4].count("<svg") == 1  # the reference drawn
    assert "<svg" not in second[3] and "not a valid molecule" in second[3] and second[4].count("<svg") == 1
    assert "<svg" not in third[4] and "not drawn" in third[4]


# ---- audio ----------------------------------------------------------------------------------------------

GOOD_CLIPS = 3
BIG_CLIP = "big/quiet-then-loud.wav"  # 20 s of 16-bit 16 kHz, over the inline cap: linked, not embedded
BAD_CLIPS = {  # file -> the reason shown in its cell instead of a player, and as its row's error
    "bad/corrupt.wav": "not a readable audio file",
    "bad/nan.wav": "audio contains NaN or Inf samples",
    "bad/empty.wav": "audio has zero length",
}


def _write_audio_data(data: Path) -> None:
    """Generated scenes, then the big clip and the bad ones appended to the classification manifest."""
    generate_audio_scenes(data, GOOD_CLIPS, seed=0)
    (data / "bad").mkdir()
    (data / "big").mkdir()
    (data / "bad" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00 not really audio")
    nan = np.full(16000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(data / "bad" / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(data / "bad" / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    noise = 0.3 * np.random.default_rng(0).standard_normal(10 * 16000)
    sf.write(data / BIG_CLIP, np.concatenate([np.zeros(10 * 16000), noise]).clip(-1, 1), 16000, subtype="PCM_16")
    rows = [json.loads(line) for line in (data / "classification.jsonl").read_text().splitlines()]
    rows += [{**rows[0], "audio": name} for name in (BIG_CLIP, *BAD_CLIPS)]
    (data / "classification.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def audio_report(tmp_path_factory) -> Path:
    """The folder ``zoo.evaluate`` wrote for a tiny CLAP-like model on zero-shot audio classification: the
    report sits in ``report/`` beside ``data/``, so the big clip is linked as ``../data/...``."""
    root = tmp_path_factory.mktemp("audio-report")
    _write_audio_data(root / "data")
    spec = {
        "type": "dual-encoder",
        "towers": {"audio": AUDIO_TOWER},
        "text_tower": {"type": "hf-text", "config": {"model_config": TINY_BERT, "tokenizer": "bundled:tiny-bpe"}},
        "embed_dim": 16,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: thread fan-out only costs time on a shared machine
    try:
        zoo.evaluate(zoo.build(spec), root / "data" / "zero-shot-all-classes.yaml", root / "data" / "classification.jsonl",
                     output_dir=root / "report", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "report"


def _row_cells(page: str) -> list[list[str]]:
    body = page.split('<table id="rows"', 1)[1]
    rows = re.findall(r'<tr class="[a-z]*">(.*?)</tr>', body, flags=re.S)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in rows]


def _spectrogram(cell: str) -> Image.Image:
    (png,) = re.findall(r'<img class="spec"[^>]* src="data:image/png;base64,([^"]+)"', cell)
    return Image.open(io.BytesIO(base64.b64decode(png))).convert("L")


def test_audio_rows_play_their_clip_beside_its_spectrogram_and_bad_clips_say_why(audio_report):
    results = json.loads((audio_report / "results.json").read_text())
    cells = _row_cells((audio_report / "report.html").read_text(encoding="utf-8"))
    assert len(cells) == len(results["rows"]) == GOOD_CLIPS + 1 + len(BAD_CLIPS)
    for row, cell in zip(results["rows"][:GOOD_CLIPS], cells[:GOOD_CLIPS], strict=True):  # small clips: embedded
        (data,) = re.findall(r'<audio controls preload="metadata" src="data:audio/wav;base64,([^"]+)"', cell[1])
        clip = base64.b64decode(data)
        assert clip == Path(row["item"]).read_bytes() and row["error"] is None
        samples, rate = sf.read(io.BytesIO(clip))
        picture = _spectrogram(cell[1])
        columns = min(len(samples) // 160 + 1, report_audio.DRAW_COLUMNS)  # a column per 10 ms frame, or averaged
        assert picture.size == (columns, report_audio.DRAW_MELS)
        assert np.asarray(picture).std() > 10  # the clip's events, not a flat picture

    big = cells[GOOD_CLIPS][1]
    (link,) = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', big)
    assert link == f"../data/{BIG_CLIP}" and (audio_report / link).resolve() == Path(results["rows"][GOOD_CLIPS]["item"]).resolve()
    picture = np.asarray(_spectrogram(big), dtype=float)
    assert picture.shape == (report_audio.DRAW_MELS, report_audio.DRAW_COLUMNS)  # 2,001 frames averaged down
    half = report_audio.DRAW_COLUMNS // 2
    assert picture[:, half + 2 :].mean() > picture[:, : half - 2].mean() + 100  # silence, then loud noise

    for row, cell, (name, reason) in zip(results["rows"][GOOD_CLIPS + 1 :], cells[GOOD_CLIPS + 1 :], BAD_CLIPS.items(), strict=True):
        assert "<audio" not in cell[1] and "<img" not in cell[1], name
        assert "unplayable audio" in cell[1] and reason in cell[1] and Path(name).name in cell[1]
        assert reason in row["error"] and reason in cell[-1]  # the row's own error column


def test_embedded_audio_stops_at_the_page_budget_and_the_rest_is_linked(tmp_path, monkeypatch):
    clips = []
    for k in range(3):
        clips.append(tmp_path / f"tone {k}#.wav")  # a space and a '#' to be escaped in the link
        sf.write(clips[-1], 0.3 * np.sin(np.arange(16000) * 0.1 * (k + 1)), 16000, subtype="PCM_16")
    monkeypatch.setattr(report_audio, "MAX_INLINE_AUDIO_TOTAL", int(1.5 * clips[0].stat().st_size))
    rows = [{"index": k, "item": str(path), "reference": "a", "prediction": "a"} for k, path in enumerate(clips)]
    results = _results({"modality": "audio"}, rows)
    sources = [re.findall(r'<audio[^>]* src="([^"]+)"', cell[1])[0] for cell in _row_cells(render_report(results))]
    assert sources[0].startswith("data:audio/wav;base64,")
    assert sources[1:] == [path.resolve().as_uri() for path in clips[1:]]  # no report folder: absolute
    linked = [re.findall(r'<audio[^>]* src="([^"]+)"', cell[1])[0]
              for cell in _row_cells(render_report(results, report_dir=tmp_path / "out"))]
    assert linked[1:] == ["../tone%201%23.wav", "../tone%202%23.wav"]


def test_a_clip_too_long_to_draw_still_plays(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", 0.3 * np.sin(np.arange(32000) * 0.1), 16000, subtype="PCM_16")
    monkeypatch.setattr(report_audio, "MAX_DRAWN_SECONDS", 1.5)
    rows = [{"index": 0, "item": str(tmp_path / "long.wav"), "reference": "a", "prediction": "a"}]
    (cell,) = (cells[1] for cells in _row_cells(render_report(_results({"modality": "audio"}, rows))))
    assert "(2 s: not drawn)" in cell and "<img" not in cell and '<audio controls preload="metadata" src="data:' in cell


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not on PATH, so the page cannot be rendered (Debian: apt-get install chromium)")
    return found


def _chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1200,2000", "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_report_fits_the_page_in_chromium(chromium, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(_grounding_results(tmp_path)), encoding="utf-8")
    out = _chromium(chromium, tmp_path, "--dump-dom", page.as_uri())
    dom = out.stdout
    assert 'data-rendered="yes"' in dom, out.stderr[-2000:]
    widths = {k: re.search(rf'data-{k}="([^"]*)"', dom).group(1) for k in ("overflow", "scroll-width", "client-width")}
    assert widths["overflow"] == "false", f"the page overflows sideways: {widths}"
    assert re.search(r'data-images-loaded="(\d+)"', dom).group(1) == re.search(r'data-images-total="(\d+)"', dom).group(1)

    shot = tmp_path / "report.png"
    out = _chromium(chromium, tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), out.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200)
    assert pixels.var() > 100, f"the screenshot is blank (pixel variance {pixels.var():.1f})"


def test_audio_report_plays_in_chromium(chromium, audio_report, tmp_path):
    """Every player (three embedded, one linked) has loaded its clip's duration; no image is broken."""
    out = _chromium(chromium, tmp_path, "--dump-dom", (audio_report / "report.html").as_uri())
    body = re.search(r"<body([^>]*)>", out.stdout)
    assert body and 'data-rendered="yes"' in body.group(1), out.stderr[-2000:]
    data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert (data["audios-total"], data["audios-playable"], data["audios-failed"]) == (str(GOOD_CLIPS + 1), str(GOOD_CLIPS + 1), "0")
    assert data["images-loaded"] == data["images-total"] and data["overflow"] == "false", data
