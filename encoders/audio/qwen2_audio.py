"""Qwen2-Audio's audio tower (transformers ``Qwen2AudioEncoder``) on Whisper's front-end.

The tower is Whisper-large-v3's encoder with two changes: its self-attention is masked to the frames the real
audio produces (Whisper attends over the whole 30 s window), and after the last layer the frames are
average-pooled by 2 before the final layer norm. So a clip gives a count of tokens that depends on its length:
``ceil(samples / hop)`` mel frames through the two convolutions, then through the pool (``kernel 2, stride 2``),
which is ``(((mel - 1) // 2 + 1) - 2) // 2 + 1``, the count transformers' ``Qwen2AudioProcessor`` expands
``<|AUDIO|>`` to. At 16 kHz that is one token per 40 ms; a full window gives 750.

Preprocessing is exactly Whisper's (:class:`~encoders.audio.whisper.WhisperProcessor`, the checkpoint's
``WhisperFeatureExtractor`` padded to the window with its frame mask), so this config extends Whisper's and
stores the extractor's parameters and the tower's strided stages when built: the processor is rebuilt from
them and cannot drift from what the model was built with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import torch
from torch import nn

from encoders.audio.batching import lengths_to_mask
from encoders.audio.whisper import WhisperAudioEncoderConfig, WhisperProcessor, conv_frames
from encoders.base import EncoderOutput
from encoders.pooling import pool_tokens

# Keys of a whole Qwen2AudioForConditionalGeneration checkpoint that hold the tower, as saved by transformers 4
# (the Hub) and as transformers 5 holds them.
_TOWER_KEYS = {r"^(?:model\.)?audio_tower\.": ""}


@dataclass(frozen=True)
class Qwen2AudioTowerConfig(WhisperAudioEncoderConfig):
    """Whisper's encoder config (``pretrained``: a Qwen2-Audio checkpoint, whose ``audio_config`` is read;
    ``model_config``: ``Qwen2AudioEncoderConfig`` keyword arguments, random init). ``resolved_pooling`` is
    the ``[kernel, stride]`` of the average pool after the layers, filled when the encoder is built."""

    resolved_pooling: list[int] | None = None

    def num_tokens(self, size: int) -> int:
        """Tokens for ``size`` samples: Whisper's encoder frames through the average pool. Raises for a clip
        too short to leave one token."""
        tokens = self._pooled(super().num_tokens(size))
        if tokens < 1:
            hop = int(self.feature_extractor_kwargs()["hop_length"])
            mel = next(m for m in count(1) if self._pooled(conv_frames(m, self.resolved_conv_layers)))
            raise ValueError(f"a clip of {size} samples gives no Qwen2-Audio token; clips need at least "
                             f"{(mel - 1) * hop + 1} samples ({((mel - 1) * hop + 1) / self.sample_rate:.3f} s)")
        return tokens

    def _pooled(self, frames: int) -> int:
        """Encoder frames after the average pool."""
        if self.resolved_pooling is None:
            raise RuntimeError("this needs a resolved config; build the encoder first")
        return int(conv_frames(frames, [[*self.resolved_pooling, 0]]))


def _audio_config(config: Qwen2AudioTowerConfig) -> Any:
    """The tower's transformers config: the checkpoint's ``audio_config`` or ``model_config``."""
    from transformers import AutoConfig, Qwen2AudioEncoderConfig

    if config.model_config is not None:
        return Qwen2AudioEncoderConfig(**{k: v for k, v in config.model_config.items() if k != "model_type"})
    loaded = AutoConfig.from_pretrained(config.pretrained, revision=config.revision)
    audio = getattr(loaded, "audio_config", loaded)
    if not isinstance(audio, Qwen2AudioEncoderConfig):
        raise ValueError(f"{config.pretrained} is a {loaded.model_type!r} checkpoint, not a Qwen2-Audio one "
                         "(model_type 'qwen2_audio'); point 'pretrained' at a Qwen2AudioForConditionalGeneration")
    return audio


def _build(config: Qwen2AudioTowerConfig, load_pretrained: bool) -> tuple[nn.Module, Any]:
    """The tower (weights only when ``pretrained`` and ``load_pretrained``) and its feature extractor."""
    from transformers import Qwen2AudioEncoder, WhisperFeatureExtractor

    audio = _audio_config(config)
    if config.pretrained is None:
        extractor = WhisperFeatureExtractor(**{"feature_size": audio.num_mel_bins, **config.feature_extractor})
        return Qwen2AudioEncoder(audio), extractor
    extractor = WhisperFeatureExtractor.from_pretrained(
        config.pretrained, revision=config.revision, **config.feature_extractor
    )
    if not load_pretrained:
        return Qwen2AudioEncoder(audio), extractor
    model, info = Qwen2AudioEncoder.from_pretrained(
        config.pretrained, config=audio, revision=config.revision, key_mapping=_TOWER_KEYS,
        use_safetensors=True, output_loading_info=True,
    )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{config.pretrained} has no weights for {len(missing)} audio tower parameter(s) "
                         f"({', '.join(missing[:5])}); point 'pretrained' at a Qwen2AudioForConditionalGeneration")
    return model, extractor


class Qwen2AudioTower(nn.Module):
    """Pooled encoder frames ``[B, max_source_positions / 2, d_model]``, masked to each clip's real frames;
    pooled is their masked mean."""

    config_class = Qwen2AudioTowerConfig
    modality = "audio"

    def __init__(self, config: Qwen2AudioTowerConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.model, extractor = _build(config, load_pretrained)
        audio = self.model.config
        if extractor.feature_size != audio.num_mel_bins:
            raise ValueError(
                f"the feature extractor gives {extractor.feature_size} mel bins but the tower takes "
                f"{audio.num_mel_bins}; set feature_extractor.feature_size"
            )
        convs, pool = [self.model.conv1, self.model.conv2], self.model.avg_pooler
        window_frames = audio.max_source_positions * convs[0].stride[0] * convs[1].stride[0]
        self.hidden_size = int(audio.d_model)
        self.config = replace(
            config,
            resolved_feature_extractor=extractor.to_dict(),
            resolved_window_samples=window_frames * extractor.hop_length,
            resolved_conv_layers=[[c.kernel_size[0], c.stride[0], c.padding[0]] for c in convs],
            resolved_pooling=[int(pool.kernel_size[0]), int(pool.stride[0])],
        )
        if self.config.max_samples > self.config.resolved_window_samples:
            raise ValueError(
                f"max_seconds={config.max_seconds} exceeds the window of "
                f"{self.config.resolved_window_samples / extractor.sampling_rate:g} s; lower it"
            )

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_features`` ``[B, n_mels, window frames]``; ``attention_mask`` ``[B, frames]`` marks real frames.
        The layers attend only to the frames of real audio, as Qwen2-Audio was trained."""
        from transformers.masking_utils import create_bidirectional_mask

        frames = conv_frames(attention_mask.sum(-1), self.config.resolved_conv_layers)
        width = self.model.config.max_source_positions
        layout = torch.zeros(frames.shape[0], width, 1, dtype=self.model.conv1.weight.dtype, device=frames.device)
        layer_mask = create_bidirectional_mask(
            config=self.model.config, inputs_embeds=layout, attention_mask=lengths_to_mask(frames, width).long()
        )
        tokens = self.model(input_features, attention_mask=layer_mask).last_hidden_state
        mask = lengths_to_mask(conv_frames(frames, [[*self.config.resolved_pooling, 0]]), tokens.shape[1])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, "mean"))


Qwen2AudioTower.processor_class = WhisperProcessor
