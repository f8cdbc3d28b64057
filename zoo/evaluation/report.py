"""``report.html``: one self-contained page per evaluation — summary, plots, a confusion matrix for
classification, and every row with its input (image thumbnail, molecule drawing, audio player with its
spectrogram), prediction, reference, score and error. Grounding rows draw both boxes on the image;
molecule-generating tasks draw the top prediction beside the reference. Everything is inline (no network) but
audio too large to embed, which is linked relative to the report (``report_audio``); tables wrap instead of
overflowing sideways."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from zoo.evaluation.report_audio import AudioCells

MAX_ROWS = 500
MAX_DRAWN_SMILES = 500  # longer SMILES are shown as text: a drawing of them is unreadable and slow to make
MAX_MATRIX_TABLE = 20  # a confusion matrix with more classes is drawn as a heatmap image instead of a table
MOLECULE_METRICS = ("reaction_topk", "molecule_generation")  # tasks whose predictions and references are SMILES
REFERENCE_COLOUR, PREDICTION_COLOUR = "#00a000", "#e00000"  # grounding boxes
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:1rem 0;max-width:100%}table.wide{width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3}.ok{background:#e8f6e8}.partial{background:#fff6dc}.bad{background:#fbe4e4}
.err{color:#a00;font-size:.85em}code{font-size:.85em;word-break:break-all}img.thumb{max-width:128px;max-height:128px}
td img,td svg{max-width:100%;height:auto}td.num{white-space:nowrap}.plots img{max-width:48%;margin-right:1%}img.heatmap{max-width:100%}
audio{width:100%;height:2.2rem}img.spec{display:block;width:100%;height:4rem;margin:.2rem 0}
ol.ranked{margin:.3rem 0;padding-left:1.5rem}.legend b{padding:0 .3rem}
#confusion td{text-align:right}#confusion th{font-weight:normal}#confusion td,#confusion th{padding:.2rem;font-size:.8em}#confusion .diag{font-weight:bold;outline:2px solid #4c78a8}
"""
SCRIPT = """
const audios = [...document.querySelectorAll('audio')];
const countAudio = () => {
  document.body.dataset.audiosTotal = audios.length;
  document.body.dataset.audiosPlayable = audios.filter(a => a.readyState >= 1 && a.duration > 0).length;
  document.body.dataset.audiosFailed = audios.filter(a => a.error !== null).length;
};
audios.forEach(a => ['loadedmetadata', 'error'].forEach(e => a.addEventListener(e, countAudio)));
window.addEventListener('load', () => {
  countAudio();
  const images = [...document.images];
  const root = document.documentElement;
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.scrollWidth = root.scrollWidth;
  document.body.dataset.clientWidth = root.clientWidth;
  document.body.dataset.overflow = root.scrollWidth > root.clientWidth;
  document.body.dataset.rendered = 'yes';
});
"""


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(results: dict[str, Any]) -> str:
    """Bar chart of the summary metrics and a histogram of per-row scores, as inline PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {k: v for k, v in results["metrics"].items() if isinstance(v, (int, float)) and 0 <= v <= 1}
    scores = [row["score"] for row in results["rows"] if row["score"] is not None]
    images = []
    if metrics:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(metrics) + 1))
        ax.barh([k if len(k) <= 40 else k[:39] + "…" for k in metrics], list(metrics.values()), color="#4c78a8")
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title("metrics")
        images.append(_png(fig))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores, bins=20, range=(0, 1), color="#f58518")
    ax.set_xlabel("per-row score")
    ax.set_ylabel("rows")
    ax.set_title(f"{len(scores)} rows, {results['num_failed']} failed")
    images.append(_png(fig))
    plt.close(fig)
    return "".join(f'<img alt="plot" src="data:image/png;base64,{b64}">' for b64 in images)


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def _inline_png(image: Any, css_class: str, alt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f'<img class="{css_class}" alt="{alt}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _image_cell(path: str) -> str:
    """A thumbnail, decoded under the same pixel limit as evaluation, or why there is none."""
    from encoders.base import InvalidInputError
    from encoders.image.io import load_image

    try:
        image = load_image(path)
    except InvalidInputError as err:
        return f'<span class="err">unreadable image: {html.escape(str(err))}</span>'
    image.thumbnail((128, 128))
    return _inline_png(image, "thumb", "input")


def _as_box(value: Any) -> list[float] | None:
    """Four finite numbers ``x1 y1 x2 y2`` with x1 <= x2 and y1 <= y2, or None."""
    import math

    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        return None
    return box


def _predicted_box(prediction: Any, bins: int) -> list[float] | None:
    """The normalised xyxy box a grounding prediction decodes to (position tokens, as the metric reads them),
    or None when it has none."""
    from tasks.metrics import decode_box_tokens

    if isinstance(prediction, list) and prediction and not isinstance(prediction[0], (int, float)):
        prediction = prediction[0]  # a ranked list: the metric scores the first
    if isinstance(prediction, str):
        try:
            return decode_box_tokens(prediction, bins=bins)
        except ValueError:
            return None
    return _as_box(prediction)


def _grounding_cell(path: str, reference: list[float] | None, predicted: list[float] | None) -> str:
    """The image with the reference box (green) and the predicted box (red) drawn on it. Boxes are normalised
    xyxy (the grounding metric's units); a box with a coordinate above 1 is taken to be in pixels."""
    from PIL import ImageDraw, ImageOps

    from encoders.base import InvalidInputError
    from encoders.image.io import load_image

    try:
        image = load_image(path)
    except InvalidInputError as err:
        return f'<span class="err">unreadable image: {html.escape(str(err))}</span>'
    width, height = image.size
    image = ImageOps.contain(image, (256, 256))  # small images too, so that the boxes can be seen
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 80))
    for box, colour in ((reference, REFERENCE_COLOUR), (predicted, PREDICTION_COLOUR)):
        if box is None:
            continue
        scale = (1.0, 1.0) if max(box) > 1.0 else (width, height)
        sx, sy = image.width / width * scale[0], image.height / height * scale[1]
        draw.rectangle((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy), outline=colour, width=line)
    return _inline_png(image, "boxes", "input with boxes")


def _box_text(box: list[float] | None) -> str:
    return "" if box is None else f"<code>[{', '.join(format(v, '.3g') for v in box)}]</code>"


def _molecule_cell(smiles: Any) -> str:
    """An RDKit drawing of ``smiles`` with its text, the text marked invalid when it does not parse, or the
    (cut) text alone when it is too long to draw."""
    from rdkit.Chem.Draw import rdMolDraw2D

    from tasks.metrics.smiles import parse_smiles

    if not isinstance(smiles, str):
        return f"<code>{html.escape(str(smiles))}</code>"
    if len(smiles) > MAX_DRAWN_SMILES:
        return f'<code>{html.escape(smiles[:MAX_DRAWN_SMILES])}...</code><div>({len(smiles)} characters: not drawn)</div>'
    molecule = parse_smiles(smiles)
    if molecule is None:
        return f'<code>{html.escape(smiles)}</code><div class="err">not a valid molecule</div>'
    drawer = rdMolDraw2D.MolDraw2DSVG(180, 130)
    drawer.DrawMolecule(molecule)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    svg = svg[svg.index("<svg") :]
    return f'{svg}<br><code>{html.escape(smiles)}</code>'


def _input_cell(modality: str | None, item: Any, audio_cell: AudioCells) -> str:
    if item is None:
        return ""
    if modality == "image" and isinstance(item, str) and _is_file(item):
        return _image_cell(item)
    if modality in ("molecule_graph", "smiles") and isinstance(item, str) and ">" not in item:
        return _molecule_cell(item)
    if modality == "audio" and isinstance(item, str):
        return audio_cell(item)
    return f"<code>{html.escape(str(item))[:300]}</code>"


def _molecule_prediction_cell(prediction: Any) -> str:
    """The top prediction drawn, then the rest of a ranked list as text."""
    if prediction is None:
        return ""
    ranked = prediction if isinstance(prediction, list) else [prediction]
    if not ranked:
        return '<div class="err">no candidates</div>'
    rest = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in ranked[1:])
    return _molecule_cell(ranked[0]) + (f'<ol class="ranked" start="2">{rest}</ol>' if rest else "")


def _confusion_section(results: dict[str, Any]) -> str:
    """True class x predicted class counts (the last column: rows that failed), as a shaded table, or as a
    heatmap image when there are too many classes for a readable table."""
    matrix = results.get("confusion_matrix")
    if not isinstance(matrix, dict) or not matrix.get("counts"):
        return ""
    esc = html.escape
    counts = matrix["counts"]
    true_classes = matrix.get("true_classes") or matrix.get("classes") or [str(k) for k in range(len(counts))]
    columns = matrix.get("columns") or [*(matrix.get("classes") or []), "failed"]
    counted = sum(map(sum, counts))
    missing = results["num_rows"] - counted
    note = (f"Rows: true class; columns: predicted class, and <b>failed</b> for rows that could not be classified. "
            f"{counted} rows counted" + (f"; {missing} of the {results['num_rows']} rows failed before classification "
                                         "(unreadable, bad fields), have no usable label and are not counted here."
                                         if missing > 0 else "."))
    if len(columns) - 1 > MAX_MATRIX_TABLE:
        return f"<h2>Confusion matrix</h2><p>{note}</p>{_confusion_heatmap(true_classes, columns, counts)}"
    cells = []
    for k, (label, row) in enumerate(zip(true_classes, counts, strict=True)):
        total = sum(row) or 1
        tds = []
        for j, count in enumerate(row):
            colour = "224,60,60" if j == len(columns) - 1 else "76,120,168"
            style = f' style="background:rgba({colour},{0.75 * count / total:.2f})"' if count else ""
            diag = ' class="diag"' if j == k and j < len(columns) - 1 else ""
            tds.append(f"<td{diag}{style}>{count}</td>")
        cells.append(f"<tr><th>{esc(str(label))}</th>{''.join(tds)}</tr>")
    head = "".join(f"<th>{esc(str(c))}</th>" for c in columns)
    first = max(12, 100 // (len(columns) + 2))
    return (f'<h2>Confusion matrix</h2><p>{note}</p><table id="confusion" class="wide"><colgroup><col style="width:{first}%">'
            f'</colgroup><tr><th>true ↓ predicted →</th>{head}</tr>{"".join(cells)}</table>')


def _confusion_heatmap(true_classes: list[Any], columns: list[Any], counts: list[list[int]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(counts, dtype=float)
    values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 8 * len(true_classes) / len(columns) + 0.5))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel(f"predicted class (last column: failed), {len(columns) - 1} classes")
    ax.set_ylabel("true class")
    if len(columns) <= 60:
        ax.set_xticks(range(len(columns)), [str(c)[:12] for c in columns], rotation=90, fontsize=6)
        ax.set_yticks(range(len(true_classes)), [str(c)[:12] for c in true_classes], fontsize=6)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    b64 = _png(fig)
    plt.close(fig)
    return f'<img class="heatmap" alt="confusion matrix" src="data:image/png;base64,{b64}">'


def _score_class(score: float | None, error: str | None) -> str:
    if error:
        return "bad"
    if score is None:
        return ""
    return "ok" if score >= 1 else "partial" if score > 0 else "bad"


def render_report(results: dict[str, Any], report_dir: Path | None = None) -> str:
    """The HTML page for ``results`` (as returned by ``zoo.evaluate``), to be written into ``report_dir``: audio
    too large to embed is linked relative to it (without it, by absolute ``file:`` URI)."""
    task = results["task"]
    prov = results["provenance"]
    esc = html.escape
    metric_rows = "".join(
        f'<tr><td>{esc(k)}</td><td class="num">{v:.4f}</td></tr>' if isinstance(v, float) else f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>"
        for k, v in results["metrics"].items()
    )
    grounding = task.get("metric") == "grounding"
    molecules = task.get("metric") in MOLECULE_METRICS
    bins = (task.get("metric_options") or {}).get("bins", 512)
    bins = bins if isinstance(bins, int) and bins > 0 else 512
    audio_cell = AudioCells(report_dir)
    body_rows = []
    for row in results["rows"][:MAX_ROWS]:
        prediction, reference = row["prediction"], row["reference"]
        prediction_text = "<br>".join(esc(str(p)) for p in prediction) if isinstance(prediction, list) else esc(str(prediction or ""))
        reference_text = esc(str(reference))
        input_cell = None
        if grounding:
            reference_box, predicted_box = _as_box(reference), _predicted_box(prediction, bins)
            if row["item"] is not None and isinstance(row["item"], str) and _is_file(row["item"]):
                input_cell = _grounding_cell(row["item"], reference_box, predicted_box)
            prediction_text += f"<br>{_box_text(predicted_box)}" if predicted_box else ("<br><i>no box</i>" if prediction else "")
            reference_text = _box_text(reference_box) or reference_text
        elif molecules:
            prediction_text = _molecule_prediction_cell(prediction)
            reference_text = _molecule_cell(reference) if isinstance(reference, str) else reference_text
        error = row.get("error")
        body_rows.append(
            f'<tr class="{_score_class(row["score"], error)}"><td>{esc(str(row["id"]))}</td>'
            f'<td>{input_cell or _input_cell(task.get("modality"), row["item"], audio_cell)}</td><td>{esc(str(row.get("prompt") or ""))}</td>'
            f"<td>{prediction_text}</td><td>{reference_text}</td>"
            f"<td>{'-' if row['score'] is None else format(row['score'], '.3f')}</td>"
            f'<td class="err">{esc(error or "")}</td></tr>'
        )
    more = len(results["rows"]) - MAX_ROWS
    legend = (f'<p class="legend">Boxes: <b style="color:{REFERENCE_COLOUR}">reference</b>'
              f'<b style="color:{PREDICTION_COLOUR}">prediction</b></p>' if grounding else "")
    failures = "".join(
        f"<li>row {f['index']} ({esc(f['source'])}, {esc(f['stage'])}): {esc(f['error'])}</li>" for f in results["failures"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(task['name'])} — modalzoo evaluation</title>
<style>{STYLE}</style></head>
<body>
<h1>{esc(task['name'])}</h1>
<p>Model <b>{esc(str(prov['model']))}</b> · {results['num_rows']} rows · <b>{results['num_failed']} failed</b>
(counted as wrong) · {esc(prov['started_at'])} · {prov['duration_s']} s on {esc(prov['device'])}</p>
<h2>Metrics</h2><table id="metrics"><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>
<div class="plots">{_plots(results)}</div>
{_confusion_section(results)}
<h2>Failures</h2><ul id="failures">{failures or "<li>none</li>"}</ul>
<h2>Rows</h2>
{legend}
<table id="rows" class="wide"><colgroup><col style="width:7%"><col style="width:17%"><col style="width:14%"><col style="width:21%">
<col style="width:21%"><col style="width:6%"><col style="width:14%"></colgroup>
<tr><th>id</th><th>input</th><th>prompt</th><th>prediction</th><th>reference</th><th>score</th><th>error</th></tr>
{''.join(body_rows)}</table>
{f"<p>{more} more rows in results.json</p>" if more > 0 else ""}
<h2>Provenance</h2>
<p>prompt template: <code>{esc(task['prompt_template'])}</code> · generation: <code>{esc(str(prov['generation']))}</code>
· data sha256 <code>{esc(prov['data']['sha256'])}</code></p>
<p>{esc(', '.join(f'{k} {v}' for k, v in prov['packages'].items()))}</p>
<script>{SCRIPT}</script>
</body></html>
"""
