"""CLAP's audio tower (HTSAT, transformers ``ClapAudioModelWithProjection``) with a deterministic
``ClapFeatureExtractor``.

LAION-CLAP and the stock extractor crop long audio at random (``rand_trunc``) or stack random chunks
(``fusion``, which also flags a random item as "longer" when none is), so the same clip embeds differently run
to run. Here audio is first cut to the extractor's window (``max_length_s``, 10 s) by our crop policy (keep the
start unless a seeded random policy is set), so the extractor's random branches never run, and ``is_longer`` is
always False. Shorter audio is padded as CLAP was trained (``repeatpad`` by default).

Tokens are the final HTSAT feature map read time-major (a fixed count: every item fills the window); pooled is
the projected audio embedding (``projection_dim`` wide, reported as ``pooled_size``).

A pretrained tower reads the audio half of a ``ClapModel`` checkpoint strictly (``encoders.clap_checkpoint``):
the text half and the temperatures are claimed as another tower's, and every audio tensor must be filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from encoders.audio.batching import load_clips, seconds_to_samples
from encoders.audio.crop import CropPolicy
from encoders.base import EncoderOutput, ProcessedBatch
from encoders.clap_checkpoint import load_tower

PADDINGS: tuple[str, ...] = ("repeatpad", "repeat", "pad")


@dataclass(frozen=True)
class ClapAudioEncoderConfig:
    """Either ``pretrained`` (hub id or directory of a CLAP checkpoint with its preprocessor config) or
    ``model_config`` (``ClapAudioConfig`` keyword arguments, random init). ``feature_extractor`` overrides
    ``ClapFeatureExtractor`` arguments; ``padding`` is how audio shorter than the window is filled.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    feature_extractor: dict[str, Any] = field(default_factory=dict)
    padding: str = "repeatpad"
    max_seconds: float | None = None
    allow_silence: bool = False
    resolved_feature_extractor: dict[str, Any] | None = None
    resolved_num_tokens: int | None = None
    resolved_fusion: bool | None = None

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; allowed: {', '.join(PADDINGS)}")

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor_kwargs()["sampling_rate"])

    @property
    def max_samples(self) -> int:
        """The longest audio kept: ``max_seconds`` or the extractor's window."""
        window = int(self.feature_extractor_kwargs()["nb_max_samples"])
        return window if self.max_seconds is None else seconds_to_samples(self.max_seconds, self.sample_rate)

    def feature_extractor_kwargs(self) -> dict[str, Any]:
        """The resolved feature extractor's settings (what the processor rebuilds it from)."""
        if self.resolved_feature_extractor is None or self.resolved_num_tokens is None:
            raise RuntimeError("this needs a resolved config; build the encoder first")
        return self.resolved_feature_extractor

    def num_tokens(self, size: int) -> int:
        """The fixed HTSAT token count (every item is padded to the window), for any ``size`` >= 1 samples."""
        self.feature_extractor_kwargs()
        if size < 1:
            raise ValueError(f"an audio item has at least one sample, got {size}")
        return self.resolved_num_tokens


def _build(config: ClapAudioEncoderConfig, load_pretrained: bool) -> tuple[nn.Module, Any]:
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    if config.pretrained is not None:
        extractor = ClapFeatureExtractor.from_pretrained(
            config.pretrained, revision=config.revision, **config.feature_extractor
        )
        model = ClapAudioModelWithProjection(ClapAudioConfig.from_pretrained(config.pretrained, revision=config.revision))
        if load_pretrained:
            load_tower(model, config.pretrained, config.revision, "audio")
        return model, extractor
    model_config = ClapAudioConfig(**{k: v for k, v in config.model_config.items() if k != "model_type"})
    extractor = ClapFeatureExtractor(**{"feature_size": model_config.num_mel_bins, **config.feature_extractor})
    return ClapAudioModelWithProjection(model_config), extractor


class ClapAudioEncoder(nn.Module):
    """HTSAT tokens ``[B, N, hidden]`` (all real) and the projected embedding ``[B, projection_dim]`` as pooled."""

    config_class = ClapAudioEncoderConfig
    modality = "audio"

    def __init__(self, config: ClapAudioEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.model, extractor = _build(config, load_pretrained)
        audio = self.model.config
        if extractor.feature_size != audio.num_mel_bins:
            raise ValueError(
                f"the feature extractor gives {extractor.feature_size} mel bins but CLAP takes {audio.num_mel_bins}; "
                "set feature_extractor.feature_size"
            )
        encoder = self.model.audio_model.audio_encoder
        scale = 2 ** (len(audio.depths) - 1)
        stride = encoder.patch_stride
        self.hidden_size = int(encoder.num_features)
        self.pooled_size = int(audio.projection_dim)
        self.config = replace(
            config,
            resolved_feature_extractor=extractor.to_dict(),
            resolved_num_tokens=(audio.spec_size // scale // stride[0]) * (audio.spec_size // scale // stride[1]),
            resolved_fusion=bool(audio.enable_fusion),
        )
        if self.config.max_samples > extractor.nb_max_samples:
            raise ValueError(
                f"max_seconds={config.max_seconds} exceeds CLAP's window of {extractor.max_length_s} s; lower it"
            )

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> EncoderOutput:
        out = self.model(input_features=input_features, is_longer=is_longer)
        feature_map = out.last_hidden_state  # [B, hidden, freq, time]
        tokens = feature_map.permute(0, 3, 2, 1).flatten(1, 2)  # time-major: [B, time * freq, hidden]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=out.audio_embeds)


class ClapProcessor:
    """Items -> ``input_features`` from ``ClapFeatureExtractor`` (never random, see the module docstring) and an
    all-False ``is_longer``; sizes are samples after cutting to the window."""

    def __init__(self, config: ClapAudioEncoderConfig) -> None:
        from transformers import ClapFeatureExtractor

        self.config = config
        self.extractor = ClapFeatureExtractor(**config.feature_extractor_kwargs())
        self.crop = CropPolicy()

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        config = self.config
        clips = load_clips(items, config.sample_rate, config.max_samples, self.crop, allow_silence=config.allow_silence)
        features = self.extractor(
            [clip.numpy() for clip in clips],
            sampling_rate=config.sample_rate,
            max_length=self.extractor.nb_max_samples,
            truncation="fusion" if config.resolved_fusion else "rand_trunc",  # fusion models take 4 mel views
            padding=config.padding,
            return_tensors="pt",
        )
        return ProcessedBatch(
            inputs={
                "input_features": features["input_features"].float(),
                "is_longer": torch.zeros(len(clips), 1, dtype=torch.bool),  # nothing exceeds the window
            },
            sizes=[int(clip.shape[0]) for clip in clips],
        )


ClapAudioEncoder.processor_class = ClapProcessor
