"""Turn one audio item (file path, ``(array, rate)``, or ``{"array", "sampling_rate"}``) into a checked mono
waveform at the encoder's sample rate, or say why not.

Sample rates are always explicit: a bare array is refused, because guessing the rate silently changes pitch and
token counts. Silent (all-zero) audio is refused unless ``allow_silence``: it usually means a broken file or a
muted channel, and every encoder would still turn it into confident-looking tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF

from encoders.base import InvalidInputError

MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 16
# Resampling kernels with at most this many (input phase x output phase) rows are kept between clips: 44.1 ->
# 16 kHz has 441 x 160 = 70,560. An odd pair of rates (e.g. 44,099 Hz) needs gigabytes; that one is not kept.
MAX_CACHED_KERNEL_PHASES = 2**20


def _check_rate(rate: Any, name: str) -> int:
    """The sample rate as an int in (0, MAX_SAMPLE_RATE], else an error naming the item."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name}: sample rate must be a number of Hz, got {rate!r}")
    if not 0 < rate <= MAX_SAMPLE_RATE or float(rate) != int(rate):
        raise InvalidInputError(
            f"{name}: sample rate {rate!r} Hz is not a whole number in (0, {MAX_SAMPLE_RATE}]; pass the real rate"
        )
    return int(rate)


def _as_float(array: np.ndarray, name: str) -> np.ndarray:
    """Float32 samples; signed integer PCM is scaled to [-1, 1)."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.signedinteger):
        return (array / float(np.iinfo(array.dtype).max + 1)).astype(np.float32)
    raise InvalidInputError(f"{name}: samples of dtype {array.dtype} are not audio; use float or signed int PCM")


def _channel_mean(channels: np.ndarray) -> np.ndarray:
    """The mean of the rows of ``(channels, samples)``, added row by row. A file is read as (samples, channels),
    so its channels are a short strided axis, across which numpy's ``mean(axis=0)`` is about 10x slower (4 ms
    for 5 s of 44.1 kHz stereo, as long as the rest of the front end); one channel is returned as it is."""
    if len(channels) == 0:
        return channels.mean(axis=0)  # no channels: NaN samples, refused as such
    total = channels[0]
    for row in channels[1:]:
        total = total + row
    return total / len(channels) if len(channels) > 1 else total


def _to_mono(array: np.ndarray, name: str) -> np.ndarray:
    """Mean over channels. 2-D arrays are (channels, samples), or (samples, channels) as soundfile returns them."""
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise InvalidInputError(
            f"{name}: audio array has {array.ndim} dims {tuple(array.shape)}; give (samples,) or (channels, samples)"
        )
    if array.shape[0] <= MAX_CHANNELS:
        return _channel_mean(array)
    if array.shape[1] <= MAX_CHANNELS:
        return _channel_mean(array.T)
    raise InvalidInputError(
        f"{name}: audio array of shape {tuple(array.shape)} has no channel axis of at most {MAX_CHANNELS}; "
        "give (samples,) or (channels, samples)"
    )


def _opened(path: Path, name: str, read: Callable[[str], Any]) -> Any:
    """``read(path)`` with every way a path can fail turned into an error naming the item."""
    try:
        found = path.is_file()
    except OSError as err:  # e.g. a name longer than the file system allows
        raise InvalidInputError(f"{name}: not a usable path ({err.strerror})") from err
    if not found:
        raise InvalidInputError(f"{name}: file not found")
    try:
        return read(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise InvalidInputError(
            f"{name}: not a readable audio file ({err}); use a format libsndfile reads (wav, flac, ogg, mp3)"
        ) from err


def _mono(samples: Any, name: str) -> np.ndarray:
    """In-memory samples (array, list or tensor) as one float32 channel."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    array = np.asarray(samples)
    if array.ndim == 0:
        raise InvalidInputError(f"{name}: a scalar is not a waveform; give (samples,) or (channels, samples)")
    return _to_mono(_as_float(array, name), name)


def _read_file(path: Path, name: str) -> tuple[np.ndarray, int]:
    """Samples as ``(channels, frames)``, so a file of few or no frames is never mistaken for a channel axis."""
    data, rate = _opened(path, name, lambda p: sf.read(p, dtype="float32", always_2d=True))
    return data.T, rate


def _split_item(item: Any, name: str) -> tuple[Any, Any, str]:
    """``(samples, rate, name)`` from any supported item form."""
    if isinstance(item, (str, Path)):
        name = f"{name} ({item})"
        data, rate = _read_file(Path(item), name)
        return data, rate, name
    if isinstance(item, Mapping):
        missing = [k for k in ("array", "sampling_rate") if k not in item]
        if missing:
            raise InvalidInputError(f"{name}: audio dict lacks {', '.join(missing)}; give {{'array', 'sampling_rate'}}")
        return item["array"], item["sampling_rate"], name
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1], name
    if isinstance(item, (np.ndarray, torch.Tensor)) or hasattr(item, "__array__"):
        raise InvalidInputError(f"{name}: a bare array has no sample rate; pass (array, sample_rate)")
    raise InvalidInputError(
        f"{name}: a {type(item).__name__} is not audio; pass a file path, (array, sample_rate) or "
        "{'array': ..., 'sampling_rate': ...}"
    )


def audio_length(item: Any, name: str = "audio") -> tuple[int, int]:
    """``(native sample rate, samples per channel)`` of an audio item, a file's read from its header alone, so
    a task can refuse a clip by rate or length before anything decodes it. Errors name the item."""
    if isinstance(item, (str, Path)):
        info = _opened(Path(item), f"{name} ({item})", sf.info)
        return _check_rate(info.samplerate, f"{name} ({item})"), int(info.frames)
    samples, rate, name = _split_item(item, name)
    return _check_rate(rate, name), int(_mono(samples, name).shape[0])


@lru_cache(maxsize=8)
def _resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """torchaudio's resampler from one rate to another, its sinc kernel built once instead of on every clip as
    ``torchaudio.functional.resample`` does (about 40% of resampling a 6 s clip from 44.1 kHz). The kernel is
    float32, as the functional builds it for float32 audio, so the samples are the same."""
    return torchaudio.transforms.Resample(orig_rate, new_rate, dtype=torch.float32)


def _resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    gcd = math.gcd(orig_rate, new_rate)
    if (orig_rate // gcd) * (new_rate // gcd) > MAX_CACHED_KERNEL_PHASES:
        return AF.resample(waveform, orig_rate, new_rate)
    return _resampler(orig_rate, new_rate)(waveform)


def load_audio(item: Any, sample_rate: int, name: str = "audio", allow_silence: bool = False) -> torch.Tensor:
    """A float32 mono waveform ``[T]`` at ``sample_rate`` (mixed down by channel mean, resampled by torchaudio).

    Raises :class:`InvalidInputError` naming ``name`` (and the file) for unreadable files, missing or absurd
    sample rates, arrays of the wrong rank, zero length, NaN/Inf samples, and all-zero audio (unless
    ``allow_silence``).
    """
    samples, rate, name = _split_item(item, name)
    rate = _check_rate(rate, name)
    mono = _mono(samples, name)
    if mono.size == 0:
        raise InvalidInputError(f"{name}: audio has zero length")
    if not np.isfinite(mono).all():
        raise InvalidInputError(f"{name}: audio contains NaN or Inf samples")
    if not allow_silence and not mono.any():
        raise InvalidInputError(
            f"{name}: audio is silent (all zeros); pass a real recording, or set allow_silence=True in the encoder config"
        )
    waveform = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if rate != sample_rate:
        waveform = _resample(waveform, rate, sample_rate)
    return waveform
