"""A card recipe's ``stage: codec-lm``: the Language-Codec route (codec tokens fed to a language model) on a
machine that cannot download a pretrained codec.

The audio encoder's codec (an EnCodec built from ``model_config``) is first fitted on the training clips
(``encoders.audio.codec_fit``: trained as an autoencoder, then its codebooks by residual k-means); then the
code embeddings, projector and language model train with ``zoo.finetune`` (stage ``full``, the codec frozen),
each clip going through the codec once (``CodecTokenEncoder.reusing_codes``). The settings hold the training
settings plus ``codec``, a mapping of :class:`~encoders.audio.codec_fit.CodecFitConfig` fields and ``clips``
(how many distinct clips of the data, in file order, fit the codec); ``--set codec.steps=20`` overrides one.
``codec_fit.json`` in the output folder records the fit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zoo.io import atomic_write
from zoo.spec import SpecError

FIT_FILE = "codec_fit.json"
PREFIX = "codec."


def codec_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split recipe settings into the codec fit's (``codec`` and ``codec.<key>`` overrides) and the rest."""
    from encoders.audio.codec_fit import CodecFitConfig

    codec = dict(settings.get("codec") or {})
    codec.update({key[len(PREFIX) :]: value for key, value in settings.items() if key.startswith(PREFIX)})
    rest = {key: value for key, value in settings.items() if key != "codec" and not key.startswith(PREFIX)}
    allowed = ["clips", *(f.name for f in dataclasses.fields(CodecFitConfig))]
    unknown = sorted(set(codec) - set(allowed))
    if unknown:
        raise SpecError(f"codec-lm recipe: unknown codec setting(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return codec, rest


def _codec_encoder(model: Any, modality: str | None) -> Any:
    from encoders.audio.codec import CodecTokenEncoder

    encoders = getattr(model, "encoders", {})
    encoder = encoders[modality] if modality in encoders else None
    if not isinstance(encoder, CodecTokenEncoder) or encoder.codec is None:
        raise SpecError(
            f"stage codec-lm fits the codec of a MultimodalLM's audio-codec encoder for the task's {modality!r} items "
            "(inputs: audio); this model has none there. Use stage full for other encoders"
        )
    if encoder.config.pretrained is not None:
        raise SpecError(
            f"the codec is pretrained ({encoder.config.pretrained}); fitting would overwrite it. Train with stage full "
            f"and frozen: [encoders.{modality}.codec] instead"
        )
    return encoder


def training_clips(task: Any, data: Path, sample_rate: int, limit: int | None) -> list[Any]:
    """The first ``limit`` distinct audio files of ``data`` (all if None), as waveforms at ``sample_rate``."""
    from encoders.audio.io import load_audio
    from tasks.data.manifest import read_rows

    paths: dict[str, None] = {}
    for row in read_rows(task.reader, data, task.column("item"), task.modality):
        if row.ok and isinstance(row.fields.get(task.column("item")), str):
            paths.setdefault(row.fields[task.column("item")])
    chosen = list(paths)[:limit]
    if not chosen:
        raise SpecError(f"{data} names no audio file to fit the codec on")
    return [load_audio(path, sample_rate, path) for path in chosen]


def train_from_recipe(model: Any, task: Any, data: Path, settings: dict[str, Any], output_dir: Path) -> Any:
    """Fit the codec on ``data``'s clips, then train the rest on ``data``'s rows; returns the trained model."""
    from encoders.audio.codec_fit import CodecFitConfig, fit_codec
    from zoo.training import finetune

    codec, rest = codec_settings(settings)
    encoder = _codec_encoder(model, task.modality)
    clips = training_clips(task, data, encoder.config.sample_rate, codec.pop("clips", None))
    summary = fit_codec(encoder.codec, clips, CodecFitConfig(**codec))
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**summary, "settings": codec}, indent=2) + "\n"
    atomic_write(output_dir / FIT_FILE, lambda tmp: tmp.write_text(text))
    frozen = list(dict.fromkeys([*(rest.pop("frozen", None) or []), f"encoders.{task.modality}.codec"]))
    with encoder.reusing_codes():
        return finetune(model, task, data, "full", output_dir, frozen=frozen, **rest).model
