"""Whisper's audio encoder (transformers) with its own ``WhisperFeatureExtractor``.

Whisper only accepts a full window (30 s, 3000 mel frames, 1500 encoder frames for the released models): every
item is zero-padded to it, as in training, and the encoder attends over the whole window. The mask keeps the
encoder frames that the real audio produces: ``ceil(samples / hop)`` mel frames through the two convolutions
(``ceil(samples / 320)`` at 16 kHz). With ``pad_to_max`` the audio is padded to ``max_seconds`` first and
those frames count too (with ``max_seconds=None``: all 1500).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encoders.audio.batching import lengths_to_mask, load_clips, seconds_to_samples
from encoders.audio.crop import CropPolicy
from encoders.base import EncoderOutput, ProcessedBatch
from encoders.pooling import pool_tokens


def conv_frames(frames: Any, conv_layers: Sequence[Sequence[int]]) -> Any:
    """Output length of ``frames`` (int or tensor) through 1-D convs given as ``[kernel, stride, padding]``."""
    for kernel, stride, padding in conv_layers:
        frames = (frames + 2 * padding - kernel) // stride + 1
    return frames


@dataclass(frozen=True)
class WhisperAudioEncoderConfig:
    """Either ``pretrained`` (hub id or directory with a Whisper checkpoint and its preprocessor config) or
    ``model_config`` (``WhisperConfig`` keyword arguments, random init). ``feature_extractor`` overrides
    ``WhisperFeatureExtractor`` arguments. ``max_seconds`` (default: the window) must fit in the window.
    The ``resolved_*`` fields are filled when the encoder is built and are what the processor uses.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    feature_extractor: dict[str, Any] = field(default_factory=dict)
    max_seconds: float | None = None
    pad_to_max: bool = False
    allow_silence: bool = False
    resolved_feature_extractor: dict[str, Any] | None = None
    resolved_window_samples: int | None = None
    resolved_conv_layers: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor_kwargs()["sampling_rate"])

    @property
    def max_samples(self) -> int:
        """The longest audio kept: ``max_seconds`` or the whole window."""
        window = self.resolved_window_samples
        return window if self.max_seconds is None else seconds_to_samples(self.max_seconds, self.sample_rate)

    def feature_extractor_kwargs(self) -> dict[str, Any]:
        """The resolved feature extractor's settings (what the processor rebuilds it from)."""
        if self.resolved_feature_extractor is None or self.resolved_conv_layers is None:
            raise RuntimeError("this needs a resolved config; build the encoder first")
        return self.resolved_feature_extractor

    def num_tokens(self, size: int) -> int:
        """Encoder frames for ``size`` samples: ``ceil(size / hop_length)`` mel frames through conv1 and conv2."""
        hop = int(self.feature_extractor_kwargs()["hop_length"])
        if not 1 <= size <= self.resolved_window_samples:
            raise ValueError(f"Whisper takes 1..{self.resolved_window_samples} samples per item, got {size}")
        return int(conv_frames(math.ceil(size / hop), self.resolved_conv_layers))


def _build(config: WhisperAudioEncoderConfig, load_pretrained: bool) -> tuple[nn.Module, Any]:
    """The Whisper encoder (weights only when ``pretrained`` and ``load_pretrained``) and its feature extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if config.pretrained is not None:
        extractor = WhisperFeatureExtractor.from_pretrained(
            config.pretrained, revision=config.revision, **config.feature_extractor
        )
        if load_pretrained:  # Whisper checkpoints hold the whole seq2seq model; keep its encoder
            return WhisperModel.from_pretrained(config.pretrained, revision=config.revision).get_encoder(), extractor
        model_config = WhisperConfig.from_pretrained(config.pretrained, revision=config.revision)
    else:
        model_config = WhisperConfig(**{k: v for k, v in config.model_config.items() if k != "model_type"})
        extractor = WhisperFeatureExtractor(
            **{"feature_size": model_config.num_mel_bins, **config.feature_extractor}
        )
    return WhisperEncoder(model_config), extractor


class WhisperAudioEncoder(nn.Module):
    """Encoder frames ``[B, max_source_positions, d_model]``; mask from each item's real mel frames; masked mean."""

    config_class = WhisperAudioEncoderConfig
    modality = "audio"

    def __init__(self, config: WhisperAudioEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.model, extractor = _build(config, load_pretrained)
        if extractor.feature_size != self.model.config.num_mel_bins:
            raise ValueError(
                f"the feature extractor gives {extractor.feature_size} mel bins but the encoder takes "
                f"{self.model.config.num_mel_bins}; set feature_extractor.feature_size"
            )
        convs = [self.model.conv1, self.model.conv2]
        frames = self.model.config.max_source_positions * math.prod(c.stride[0] for c in convs)
        self.hidden_size = int(self.model.config.d_model)
        self.config = replace(
            config,
            resolved_feature_extractor=extractor.to_dict(),
            resolved_window_samples=frames * extractor.hop_length,
            resolved_conv_layers=[[c.kernel_size[0], c.stride[0], c.padding[0]] for c in convs],
        )
        if self.config.max_samples > self.config.resolved_window_samples:
            raise ValueError(
                f"max_seconds={config.max_seconds} exceeds Whisper's window of "
                f"{self.config.resolved_window_samples / extractor.sampling_rate:g} s; lower it"
            )

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_features`` ``[B, n_mels, window frames]``; ``attention_mask`` ``[B, frames]`` marks real frames."""
        tokens = self.model(input_features).last_hidden_state
        lengths = conv_frames(attention_mask.sum(-1), self.config.resolved_conv_layers)
        mask = lengths_to_mask(lengths, tokens.shape[1])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, "mean"))


class WhisperProcessor:
    """Items -> ``input_features`` padded to the full window and the frame-level ``attention_mask``; sizes are
    samples (after cutting to ``max_seconds``, and padding to it with ``pad_to_max``)."""

    def __init__(self, config: WhisperAudioEncoderConfig) -> None:
        from transformers import WhisperFeatureExtractor

        self.config = config
        self.extractor = WhisperFeatureExtractor(**config.feature_extractor_kwargs())
        self.crop = CropPolicy()

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        config = self.config
        clips = load_clips(
            items,
            config.sample_rate,
            config.max_samples,
            self.crop,
            pad_to_max=config.pad_to_max,
            allow_silence=config.allow_silence,
        )
        features = self.extractor(
            [clip.numpy() for clip in clips],
            sampling_rate=config.sample_rate,
            padding="max_length",
            max_length=self._computed_samples(max(clip.shape[0] for clip in clips)),
            return_attention_mask=True,
            return_tensors="pt",
        )
        input_features, attention_mask = features["input_features"], features["attention_mask"]
        missing = config.resolved_window_samples // self.extractor.hop_length - input_features.shape[-1]
        if missing:  # frames over padding alone, each equal to the last computed one (itself all padding)
            input_features = torch.cat([input_features, input_features[..., -1:].expand(-1, -1, missing)], dim=-1)
            attention_mask = F.pad(attention_mask, (0, missing))
        return ProcessedBatch(
            inputs={"input_features": input_features, "attention_mask": attention_mask},
            sizes=[int(clip.shape[0]) for clip in clips],
        )

    def _computed_samples(self, longest: int) -> int:
        """How much of the window the extractor has to see: the longest clip, then enough padding that the last
        frame (``n_fft`` samples centred one hop before the end, reflected at the end) holds padding alone.

        Every later frame of the full window is the same all-padding frame, and Whisper's scaling (log10, floor
        at the item's maximum - 8) gives it the same value, so those frames are copied instead of computed: a
        5 s clip costs a sixth of the STFT of the 30 s window. With ``dither`` the padding gets random noise and
        no two frames are alike, so the whole window is computed."""
        window, hop = self.config.resolved_window_samples, self.extractor.hop_length
        if self.extractor.dither:
            return window
        needed = longest + self.extractor.n_fft // 2 + hop
        return min(window, -(-needed // hop) * hop)


WhisperAudioEncoder.processor_class = WhisperProcessor
