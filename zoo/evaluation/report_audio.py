"""The audio cell of ``report.html``: a player for the row's clip with its log-mel spectrogram under it, or the
reason the clip cannot be played (unreadable, empty, NaN) instead of a player that would not play.

A clip is embedded in the page as a data URI when it is small (``MAX_INLINE_AUDIO_BYTES``) and the page's
budget for embedded audio (``MAX_INLINE_AUDIO_TOTAL``) is not spent, so a typical report stays one file that
plays anywhere; other clips are linked by their path relative to the report, and play while the report sits
where it was written. The spectrogram is always inline: a small PNG in a matplotlib colour map.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from urllib.parse import quote

MAX_INLINE_AUDIO_BYTES = 400_000  # about 12 s of 16 kHz 16-bit mono
MAX_INLINE_AUDIO_TOTAL = 15_000_000  # per page (20 MB as base64): 500 rows of large clips would be 270 MB
MAX_DRAWN_SECONDS = 120.0  # a longer clip is played but not decoded for its picture
DRAW_RATE = 16000  # spectrograms show 0-8 kHz whatever the clip's rate
DRAW_MELS = 64
DRAW_COLUMNS = 240  # longer spectrograms are averaged down to this many time columns
DYNAMIC_RANGE = 18.42  # of the natural-log mel power shown: 80 dB
AUDIO_MIME = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}


class AudioCells:
    """Renders the audio cells of one page, counting the bytes embedded so far against the page's budget.
    Links are relative to ``report_dir`` (the folder the page is written to), or absolute ``file:`` URIs
    when the page has no folder yet."""

    def __init__(self, report_dir: Path | None) -> None:
        self.report_dir = report_dir
        self.inlined = 0

    def __call__(self, path: str) -> str:
        from encoders.audio.io import audio_length
        from encoders.base import InvalidInputError

        file = Path(path)
        try:
            rate, frames = audio_length(path, "clip")
            picture = (_spectrogram(path) if frames / rate <= MAX_DRAWN_SECONDS
                       else f"<div>({frames / rate:.0f} s: not drawn)</div>")
        except InvalidInputError as err:
            return f'<span class="err">unplayable audio: {html.escape(str(err))}</span>'
        return (f'<audio controls preload="metadata" src="{self._source(file)}"></audio>{picture}'
                f"<code>{html.escape(file.name)}</code>")

    def _source(self, file: Path) -> str:
        """A data URI for the clip while it fits the budgets, else a link to the file."""
        size = file.stat().st_size
        if size <= MAX_INLINE_AUDIO_BYTES and self.inlined + size <= MAX_INLINE_AUDIO_TOTAL:
            self.inlined += size
            mime = AUDIO_MIME.get(file.suffix.lower(), "audio/wav")
            return f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode()}"
        if self.report_dir is None:
            return html.escape(file.resolve().as_uri())
        return html.escape(quote(Path(os.path.relpath(file.resolve(), self.report_dir.resolve())).as_posix()))


def _spectrogram(path: str) -> str:
    """The clip's log-mel spectrogram (low frequencies at the bottom, the loudest 80 dB shown) as an inline PNG
    in matplotlib's magma colours. A palette PNG: a third of the bytes of RGB and quick to compress, which
    matters at hundreds of rows. Silence is drawn (flat and dark); unreadable, empty or NaN audio raises
    ``InvalidInputError``."""
    import matplotlib
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from encoders.audio.features import LogMelConfig
    from encoders.audio.io import load_audio

    front_end = LogMelConfig(sample_rate=DRAW_RATE, n_mels=DRAW_MELS)
    waveform = load_audio(path, DRAW_RATE, "clip", allow_silence=True)
    seconds = waveform.shape[0] / DRAW_RATE
    waveform = F.pad(waveform, (0, max(0, front_end.min_samples - waveform.shape[0])))
    mel = front_end(waveform).T  # [mels, frames]
    if mel.shape[1] > DRAW_COLUMNS:
        mel = F.adaptive_avg_pool1d(mel.unsqueeze(0), DRAW_COLUMNS)[0]
    level = ((mel - mel.max()) / DYNAMIC_RANGE + 1).clamp(0, 1).flip(0)  # 0 = 80 dB below the loudest
    image = Image.frombytes("P", (mel.shape[1], mel.shape[0]), (level * 255).round().byte().numpy().tobytes())
    image.putpalette(matplotlib.colormaps["magma"](np.arange(256), bytes=True)[:, :3].tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    title = f"log-mel spectrogram, 0-{DRAW_RATE // 2000} kHz, {seconds:.2f} s"
    return (f'<img class="spec" alt="{title}" title="{title}" '
            f'src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">')
