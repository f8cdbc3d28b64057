"""``report.html``: one self-contained page per evaluation — summary, plots, and every row with its input
(image thumbnail, molecule drawing, audio player), prediction, reference, score and error."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

MAX_ROWS = 500
MAX_AUDIO_BYTES = 4_000_000
MAX_DRAWN_SMILES = 500  # longer SMILES are shown as text: a drawing of them is unreadable and slow to make
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}
th{background:#f3f3f3}.ok{background:#e8f6e8}.partial{background:#fff6dc}.bad{background:#fbe4e4}
.err{color:#a00;font-size:.85em}code{font-size:.85em;word-break:break-all}img.thumb{max-width:128px;max-height:128px}
.plots img{max-width:48%;margin-right:1%}
"""
SCRIPT = """
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
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
        ax.barh(list(metrics), list(metrics.values()), color="#4c78a8")
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


def _image_cell(path: str) -> str:
    """A thumbnail, decoded under the same pixel limit as evaluation, or why there is none."""
    from encoders.base import InvalidInputError
    from encoders.image.io import load_image

    try:
        image = load_image(path)
    except InvalidInputError as err:
        return f'<span class="err">unreadable image: {html.escape(str(err))}</span>'
    image.thumbnail((128, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f'<img class="thumb" alt="input" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _molecule_cell(smiles: str) -> str:
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Draw import rdMolDraw2D

    if len(smiles) > MAX_DRAWN_SMILES:
        return f"<code>{html.escape(smiles[:MAX_DRAWN_SMILES])}...</code>"
    RDLogger.DisableLog("rdApp.*")
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return f'<code>{html.escape(smiles)}</code><div class="err">not a valid molecule</div>'
    drawer = rdMolDraw2D.MolDraw2DSVG(180, 130)
    drawer.DrawMolecule(molecule)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    svg = svg[svg.index("<svg") :]
    return f'{svg}<br><code>{html.escape(smiles)}</code>'


def _audio_cell(path: str) -> str:
    file = Path(path)
    if not _is_file(path) or file.stat().st_size > MAX_AUDIO_BYTES:
        return f"<code>{html.escape(path)}</code>"
    mime = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}.get(file.suffix, "audio/wav")
    data = base64.b64encode(file.read_bytes()).decode()
    return f'<audio controls preload="none" src="data:{mime};base64,{data}"></audio><br><code>{html.escape(file.name)}</code>'


def _input_cell(modality: str | None, item: Any) -> str:
    if item is None:
        return ""
    if modality == "image" and isinstance(item, str) and _is_file(item):
        return _image_cell(item)
    if modality in ("molecule_graph", "smiles") and isinstance(item, str) and ">" not in item:
        return _molecule_cell(item)
    if modality == "audio" and isinstance(item, str):
        return _audio_cell(item)
    return f"<code>{html.escape(str(item))[:300]}</code>"


def _score_class(score: float | None, error: str | None) -> str:
    if error:
        return "bad"
    if score is None:
        return ""
    return "ok" if score >= 1 else "partial" if score > 0 else "bad"


def render_report(results: dict[str, Any]) -> str:
    """The HTML page for ``results`` (as returned by ``zoo.evaluate``)."""
    task = results["task"]
    prov = results["provenance"]
    esc = html.escape
    metric_rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.4f}</td></tr>" if isinstance(v, float) else f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>"
        for k, v in results["metrics"].items()
    )
    body_rows = []
    for row in results["rows"][:MAX_ROWS]:
        prediction = row["prediction"]
        prediction_text = "<br>".join(esc(str(p)) for p in prediction) if isinstance(prediction, list) else esc(str(prediction or ""))
        error = row.get("error")
        body_rows.append(
            f'<tr class="{_score_class(row["score"], error)}"><td>{esc(str(row["id"]))}</td>'
            f'<td>{_input_cell(task.get("modality"), row["item"])}</td><td>{esc(str(row.get("prompt") or ""))}</td>'
            f"<td>{prediction_text}</td><td>{esc(str(row['reference']))}</td>"
            f"<td>{'-' if row['score'] is None else format(row['score'], '.3f')}</td>"
            f'<td class="err">{esc(error or "")}</td></tr>'
        )
    more = len(results["rows"]) - MAX_ROWS
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
<h2>Failures</h2><ul id="failures">{failures or "<li>none</li>"}</ul>
<h2>Rows</h2>
<table id="rows"><tr><th>id</th><th>input</th><th>prompt</th><th>prediction</th><th>reference</th><th>score</th><th>error</th></tr>
{''.join(body_rows)}</table>
{f"<p>{more} more rows in results.json</p>" if more > 0 else ""}
<h2>Provenance</h2>
<p>prompt template: <code>{esc(task['prompt_template'])}</code> · generation: <code>{esc(str(prov['generation']))}</code>
· data sha256 <code>{esc(prov['data']['sha256'])}</code></p>
<p>{esc(', '.join(f'{k} {v}' for k, v in prov['packages'].items()))}</p>
<script>{SCRIPT}</script>
</body></html>
"""
