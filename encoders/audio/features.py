"""Spectrogram front-ends, each a frozen config that knows its exact frame count and computes its features.

``log-mel`` is ``torchaudio.transforms.MelSpectrogram`` followed by ``log(max(mel, log_floor))``; ``log-frequency``
is the same with triangular filters spaced evenly in log frequency (a constant-Q-like axis, on which a pitch change
is a shift: a harmonic sound keeps its pattern at every pitch); ``kaldi-fbank``
is ``torchaudio.compliance.kaldi.fbank`` without dither (so features are deterministic). ``num_frames(n)`` is
the frame count for ``n`` samples, the basis of every spectrogram encoder's token count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torchaudio
from torchaudio.compliance import kaldi


def _check_type(given: str, expected: str) -> None:
    if given != expected:
        raise ValueError(f"a {expected} front-end config has type {expected!r}, not {given!r}")


class _StftFrames:
    """Frame counting shared by the STFT front ends (``n_fft``, ``hop_length``, ``center`` fields): ``center``
    pads ``n_fft // 2`` by reflection on both sides."""

    type: str
    n_fft: int
    hop_length: int
    center: bool

    @property
    def min_samples(self) -> int:
        """The shortest input the STFT accepts (reflection padding needs more samples than it pads)."""
        return self.n_fft // 2 + 1 if self.center else self.n_fft

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.min_samples:
            raise ValueError(f"{self.type} needs at least {self.min_samples} samples, got {num_samples}")
        if self.center:
            return num_samples // self.hop_length + 1
        return (num_samples - self.n_fft) // self.hop_length + 1


@dataclass(frozen=True)
class LogMelConfig(_StftFrames):
    """Log mel spectrogram (power 2, HTK mel scale); ``center`` pads ``n_fft // 2`` by reflection on both sides."""

    type: str = "log-mel"
    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    center: bool = True
    log_floor: float = 1e-10

    def __post_init__(self) -> None:
        _check_type(self.type, "log-mel")
        if min(self.sample_rate, self.n_fft, self.hop_length, self.n_mels) < 1 or self.log_floor <= 0:
            raise ValueError("log-mel sample_rate, n_fft, hop_length, n_mels and log_floor must be positive")

    @property
    def num_bins(self) -> int:
        return self.n_mels


    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[T]`` waveform -> ``[frames, n_mels]`` log-mel features."""
        mel = _mel_transform(self)(waveform)
        return torch.log(torch.clamp(mel, min=self.log_floor)).transpose(0, 1)


@lru_cache(maxsize=8)
def _mel_transform(config: LogMelConfig) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        f_min=config.f_min,
        f_max=config.f_max,
        center=config.center,
    )


@dataclass(frozen=True)
class LogFrequencyConfig(_StftFrames):
    """Log power spectrogram through ``n_bins`` triangular filters whose centres are evenly spaced in log frequency
    from ``f_min`` to ``f_max`` (each filter spans its two neighbours' centres, as mel filters do). Below the
    STFT's resolution (``sample_rate / n_fft``) neighbouring filters see the same FFT bins, so ``f_min`` should
    sit a few bins above it."""

    type: str = "log-frequency"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_bins: int = 64
    f_min: float = 100.0
    f_max: float = 8000.0
    center: bool = True
    log_floor: float = 1e-10

    def __post_init__(self) -> None:
        _check_type(self.type, "log-frequency")
        if min(self.sample_rate, self.n_fft, self.hop_length, self.n_bins) < 1 or self.log_floor <= 0:
            raise ValueError("log-frequency sample_rate, n_fft, hop_length, n_bins and log_floor must be positive")
        if not 0 < self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"log-frequency needs 0 < f_min < f_max <= sample_rate / 2, got f_min {self.f_min}, f_max "
                f"{self.f_max}, sample_rate {self.sample_rate}"
            )

    @property
    def num_bins(self) -> int:
        return self.n_bins


    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[T]`` waveform -> ``[frames, n_bins]`` log filterbank energies."""
        spectrogram, filters = _log_frequency_transform(self)
        power = spectrogram(waveform).transpose(0, 1)  # [frames, n_fft // 2 + 1]
        return torch.log(torch.clamp(power @ filters.to(power.dtype), min=self.log_floor))


@lru_cache(maxsize=8)
def _log_frequency_transform(config: LogFrequencyConfig) -> tuple[torchaudio.transforms.Spectrogram, torch.Tensor]:
    """The STFT and the ``[n_fft // 2 + 1, n_bins]`` triangular filterbank on a log-frequency axis."""
    spectrogram = torchaudio.transforms.Spectrogram(n_fft=config.n_fft, hop_length=config.hop_length, center=config.center)
    fft_freqs = torch.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1, dtype=torch.float64)
    edges = torch.logspace(
        math.log10(config.f_min), math.log10(config.f_max), config.n_bins + 2, dtype=torch.float64
    )  # filter k rises from edges[k] to edges[k + 1] and falls to edges[k + 2]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (fft_freqs[:, None] - lower) / (centre - lower)
    falling = (upper - fft_freqs[:, None]) / (upper - centre)
    return spectrogram, torch.clamp(torch.minimum(rising, falling), min=0.0).float()


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi-compatible log mel filterbank (``torchaudio.compliance.kaldi.fbank``, dither 0)."""

    type: str = "kaldi-fbank"
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = 0.0
    window_type: str = "povey"
    snip_edges: bool = True

    def __post_init__(self) -> None:
        _check_type(self.type, "kaldi-fbank")
        if self.window_shift < 1 or self.window_size < 2 or self.num_mel_bins < 1:
            raise ValueError("kaldi-fbank frame_length_ms, frame_shift_ms and num_mel_bins give an empty frame")

    @property
    def num_bins(self) -> int:
        return self.num_mel_bins

    @property
    def window_size(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)  # Kaldi's own rounding

    @property
    def window_shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def min_samples(self) -> int:
        """Kaldi refuses inputs shorter than one window."""
        return self.window_size

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.min_samples:
            raise ValueError(f"kaldi-fbank needs at least {self.min_samples} samples, got {num_samples}")
        if self.snip_edges:
            return (num_samples - self.window_size) // self.window_shift + 1
        return (num_samples + self.window_shift // 2) // self.window_shift

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[T]`` waveform -> ``[frames, num_mel_bins]`` log filterbank features."""
        return kaldi.fbank(
            waveform.unsqueeze(0),
            sample_frequency=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms,
            low_freq=self.low_freq,
            high_freq=self.high_freq,
            window_type=self.window_type,
            snip_edges=self.snip_edges,
            dither=0.0,
        )


FrontEndConfig = LogMelConfig | LogFrequencyConfig | FbankConfig
FRONT_ENDS: dict[str, type] = {"log-mel": LogMelConfig, "log-frequency": LogFrequencyConfig, "kaldi-fbank": FbankConfig}


def front_end_config(value: FrontEndConfig | Mapping[str, Any]) -> FrontEndConfig:
    """A front-end config from itself or from a mapping with ``type`` (``log-mel`` or ``kaldi-fbank``)."""
    if isinstance(value, (LogMelConfig, LogFrequencyConfig, FbankConfig)):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"a front-end must be a mapping with 'type', got {type(value).__name__}")
    kind = value.get("type", "log-mel")
    if kind not in FRONT_ENDS:
        raise ValueError(f"unknown front-end type {kind!r}; allowed: {', '.join(FRONT_ENDS)}")
    cls = FRONT_ENDS[kind]
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"unknown {kind} front-end keys {unknown}; allowed: {', '.join(sorted(allowed))}")
    return cls(**value)
