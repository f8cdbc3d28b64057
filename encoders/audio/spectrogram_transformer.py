"""A small spectrogram transformer trained from scratch: log-mel (or Kaldi fbank) frames grouped into patches
of ``patch_frames`` frames -> a stem (``linear``: one Linear over each patch's frames and bins; ``frequency-conv``:
:class:`~encoders.audio.frequency_stem.FrequencyConvStem`) -> sinusoidal positions -> ``nn.TransformerEncoder``
-> one token per patch."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from encoders.audio.batching import lengths_to_mask, load_clips, seconds_to_samples
from encoders.audio.crop import CropPolicy
from encoders.audio.features import FrontEndConfig, LogMelConfig, front_end_config
from encoders.audio.frequency_stem import FrequencyConvStem
from encoders.base import EncoderOutput, ProcessedBatch
from encoders.pooling import pool_tokens


@dataclass(frozen=True)
class SpectrogramTransformerConfig:
    """Architecture and front-end. ``front_end`` is a :class:`LogMelConfig`/:class:`FbankConfig` or a mapping
    with ``type`` (``log-mel``, ``kaldi-fbank``); its ``sample_rate`` is the rate audio is resampled to.

    Audio longer than ``max_seconds`` is cut (its start kept unless the processor's crop policy says otherwise);
    ``pad_to_max`` zero-pads shorter audio to ``max_seconds`` so every item gives the same token count.
    ``stem`` turns each patch into a token (:data:`STEMS`); ``stem_channels`` is the frequency-conv stem's width.
    """

    front_end: FrontEndConfig | Mapping[str, Any] = field(default_factory=LogMelConfig)
    patch_frames: int = 4
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ffn_size: int = 1024
    dropout: float = 0.0
    max_seconds: float | None = 30.0
    pad_to_max: bool = False
    allow_silence: bool = False
    stem: str = "linear"
    stem_channels: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "front_end", front_end_config(self.front_end))
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; allowed: {', '.join(STEMS)}")
        if min(self.patch_frames, self.num_layers, self.num_heads, self.ffn_size) < 1:
            raise ValueError("patch_frames, num_layers, num_heads and ffn_size must be positive")
        if self.hidden_size < 2 or self.hidden_size % 2 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be even (sinusoidal positions) and divisible by num_heads "
                f"{self.num_heads}"
            )
        if self.pad_to_max and self.max_seconds is None:
            raise ValueError("pad_to_max needs max_seconds")

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    def num_tokens(self, size: int) -> int:
        """Tokens for ``size`` samples at ``sample_rate``: ``ceil(frames / patch_frames)``."""
        return math.ceil(self.front_end.num_frames(size) / self.patch_frames)


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[length, dim]`` fixed sine/cosine position encodings (Vaswani et al.), so any length is accepted."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * inv_freq
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).to(dtype)


class LinearPatchEmbedding(nn.Linear):
    """The ``linear`` stem: each patch of frames, all bins, through one Linear."""

    def __init__(self, num_bins: int, patch_frames: int, hidden_size: int) -> None:
        super().__init__(patch_frames * num_bins, hidden_size)
        self.patch_frames = patch_frames

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        batch, frames, bins = features.shape
        return super().forward(features.reshape(batch, frames // self.patch_frames, self.patch_frames * bins))


STEMS: dict[str, Callable[[SpectrogramTransformerConfig], nn.Module]] = {
    "linear": lambda c: LinearPatchEmbedding(c.front_end.num_bins, c.patch_frames, c.hidden_size),
    "frequency-conv": lambda c: FrequencyConvStem(c.front_end.num_bins, c.patch_frames, c.hidden_size, c.stem_channels),
}


class SpectrogramTransformerEncoder(nn.Module):
    """Patch tokens ``[B, N, D]`` (mask from each item's real frames) and their masked mean as ``pooled``."""

    config_class = SpectrogramTransformerConfig
    modality = "audio"

    def __init__(self, config: SpectrogramTransformerConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.patch_embed = STEMS[config.stem](config)
        layer = nn.TransformerEncoderLayer(
            config.hidden_size,
            config.num_heads,
            dim_feedforward=config.ffn_size,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden_size)

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> EncoderOutput:
        batch, frames, bins = features.shape
        p = self.config.patch_frames
        if frames % p:
            raise ValueError(f"features have {frames} frames, not a multiple of patch_frames={p}; use the processor")
        tokens = self.patch_embed(features, num_frames)
        tokens = tokens + sinusoidal_positions(tokens.shape[1], self.hidden_size, tokens.device, tokens.dtype)
        mask = lengths_to_mask(torch.div(num_frames + p - 1, p, rounding_mode="floor"), tokens.shape[1])
        tokens = self.norm(self.encoder(tokens, src_key_padding_mask=~mask))
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, "mean"))


class SpectrogramProcessor:
    """Items -> front-end ``features`` ``[B, F, bins]`` (each item's frames zero-padded to whole patches, then to
    the longest item) and ``num_frames`` ``[B]``; sizes are samples. ``crop`` may be replaced by a seeded
    ``CropPolicy("random", seed=...)`` for training."""

    def __init__(self, config: SpectrogramTransformerConfig) -> None:
        self.config = config
        self.crop = CropPolicy()

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        config, front_end = self.config, self.config.front_end
        clips = load_clips(
            items,
            front_end.sample_rate,
            seconds_to_samples(config.max_seconds, front_end.sample_rate),
            self.crop,
            pad_to_max=config.pad_to_max,
            allow_silence=config.allow_silence,
            min_samples=front_end.min_samples,
        )
        feats = [front_end(clip) for clip in clips]
        p = config.patch_frames
        width = max(math.ceil(f.shape[0] / p) for f in feats) * p
        features = torch.zeros(len(feats), width, front_end.num_bins)
        for i, f in enumerate(feats):
            features[i, : f.shape[0]] = f
        num_frames = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        return ProcessedBatch(
            inputs={"features": features, "num_frames": num_frames}, sizes=[int(c.shape[0]) for c in clips]
        )


SpectrogramTransformerEncoder.processor_class = SpectrogramProcessor
