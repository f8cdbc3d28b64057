"""report.html shows the truth: grounding boxes drawn on the image, predicted molecules beside the true ones,
a confusion matrix for classification, and tables that wrap instead of running off the page (checked in
headless chromium)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

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
    import io

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
