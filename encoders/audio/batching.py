"""What every audio processor and encoder shares: load a batch of clips at one rate and length policy, pad
them into one tensor, and turn per-item lengths into a token mask."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from encoders.audio.crop import CropPolicy
from encoders.audio.io import load_audio
from encoders.base import InvalidInputError


def seconds_to_samples(seconds: float | None, sample_rate: int) -> int | None:
    """``seconds`` of audio at ``sample_rate`` as a sample count (None stays None: no limit)."""
    return None if seconds is None else round(seconds * sample_rate)


def load_clips(
    items: Sequence[Any],
    sample_rate: int,
    max_samples: int | None,
    crop: CropPolicy,
    pad_to_max: bool = False,
    allow_silence: bool = False,
    min_samples: int = 1,
) -> list[torch.Tensor]:
    """Mono waveforms at ``sample_rate``, each cut by ``crop`` to ``max_samples`` (and zero-padded to it with
    ``pad_to_max``). Items shorter than ``min_samples`` (what the front-end needs) raise naming the item."""
    if not items:
        raise InvalidInputError("no audio items to process")
    clips = []
    for i, item in enumerate(items):
        name = f"audio item {i}"
        waveform = crop(load_audio(item, sample_rate, name, allow_silence), max_samples, pad_to_max)
        if waveform.shape[0] < min_samples:
            where = f"{name} ({item})" if isinstance(item, (str, os.PathLike)) else name
            raise InvalidInputError(
                f"{where}: {waveform.shape[0]} samples at {sample_rate} Hz is too short; this encoder needs at "
                f"least {min_samples} ({min_samples / sample_rate:.4f} s)"
            )
        clips.append(waveform)
    return clips


def pad_clips(clips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[B, T_max]`` waveforms (zeros) and their lengths ``[B]``."""
    lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
    return pad_sequence(list(clips), batch_first=True), lengths


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B, max_len]`` bool, True for the first ``lengths[b]`` positions."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
