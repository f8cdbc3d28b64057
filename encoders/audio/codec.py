"""Neural-codec tokens for an LLM (the Language-Codec / WavTokenizer route): a frozen EnCodec or DAC from
transformers turns audio into discrete codes ``[n_q, T]``; one learned embedding table per codebook, summed over
codebooks, gives one token per codec frame. With ``inputs="codes"`` the items are precomputed codes and the
encoder's modality is ``audio_codec``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from encoders.audio.batching import lengths_to_mask, load_clips, pad_clips, seconds_to_samples
from encoders.audio.crop import CropPolicy
from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.pooling import pool_tokens

CODECS: tuple[str, ...] = ("encodec", "dac")
INPUTS: dict[str, str] = {"audio": "audio", "codes": "audio_codec"}


@dataclass(frozen=True)
class CodecTokenEncoderConfig:
    """Either ``pretrained`` (hub id or directory of an EnCodec/DAC checkpoint) or ``model_config`` (a
    transformers config dict with ``model_type`` ``encodec`` or ``dac``, random init).

    ``bandwidth`` (kbps, EnCodec only; one of the model's ``target_bandwidths``, default its smallest) or
    ``num_quantizers`` (DAC only; default all) fixes the number of codebooks. ``inputs="codes"`` takes
    precomputed int codes ``[n_q, T]`` instead of audio (modality ``audio_codec``; the codec is not built).
    The ``resolved_*`` fields are read from the codec's config when the encoder is built.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    inputs: str = "audio"
    bandwidth: float | None = None
    num_quantizers: int | None = None
    hidden_size: int = 512
    max_seconds: float | None = 30.0
    pad_to_max: bool = False
    allow_silence: bool = False
    resolved_codec: str | None = None
    resolved_sample_rate: int | None = None
    resolved_hop_length: int | None = None
    resolved_num_codebooks: int | None = None
    resolved_codebook_size: int | None = None

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown inputs {self.inputs!r}; allowed: {', '.join(INPUTS)}")
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if self.pad_to_max and self.max_seconds is None:
            raise ValueError("pad_to_max needs max_seconds")

    @property
    def sample_rate(self) -> int:
        """The codec's rate, the rate audio is resampled to."""
        if self.resolved_sample_rate is None:
            raise RuntimeError("sample_rate needs a resolved config; build the encoder first")
        return self.resolved_sample_rate

    def num_tokens(self, size: int) -> int:
        """Tokens for an item: one per codec frame. Audio: ``ceil(samples / hop_length)`` (EnCodec pads each
        strided conv to whole frames; DAC input is zero-padded to a multiple of the hop). Codes: ``T``."""
        if size < 1:
            raise ValueError(f"an audio item has at least one sample or frame, got {size}")
        if self.inputs == "codes":
            return size
        if self.resolved_hop_length is None:
            raise RuntimeError("num_tokens needs a resolved config; build the encoder first")
        return math.ceil(size / self.resolved_hop_length)


def _codec_config(config: CodecTokenEncoderConfig) -> Any:
    from transformers import AutoConfig

    if config.model_config is not None:
        params = dict(config.model_config)
        if "model_type" not in params:
            raise ValueError(f"model_config needs a 'model_type' ({' or '.join(CODECS)})")
        codec_config = AutoConfig.for_model(params.pop("model_type"), **params)
    else:
        codec_config = AutoConfig.from_pretrained(config.pretrained, revision=config.revision)
    if codec_config.model_type not in CODECS:
        raise ValueError(f"{codec_config.model_type!r} is not a supported codec; use one of {', '.join(CODECS)}")
    if codec_config.model_type == "encodec" and (codec_config.audio_channels != 1 or codec_config.chunk_length_s):
        raise ValueError(
            "only mono, unchunked EnCodec models are supported (e.g. facebook/encodec_24khz), not the 48 kHz stereo one"
        )
    return codec_config


def _num_codebooks(config: CodecTokenEncoderConfig, codec_config: Any) -> int:
    """Codebooks used: from EnCodec's bandwidth, or DAC's ``num_quantizers``."""
    if codec_config.model_type == "encodec":
        from transformers.models.encodec.modeling_encodec import EncodecResidualVectorQuantizer

        if config.num_quantizers is not None:
            raise ValueError("EnCodec picks its codebooks by 'bandwidth'; drop 'num_quantizers'")
        if config.bandwidth is not None and config.bandwidth not in codec_config.target_bandwidths:
            raise ValueError(
                f"bandwidth {config.bandwidth} is not one of this EnCodec's {list(codec_config.target_bandwidths)}"
            )
        with torch.device("meta"):  # the bandwidth rule lives on the quantizer; no weights needed
            quantizer = EncodecResidualVectorQuantizer(codec_config)
        return quantizer.get_num_quantizers_for_bandwidth(config.bandwidth or codec_config.target_bandwidths[0])
    if config.bandwidth is not None:
        raise ValueError("DAC has no bandwidth setting; use 'num_quantizers'")
    n = config.num_quantizers or codec_config.n_codebooks
    if not 1 <= n <= codec_config.n_codebooks:
        raise ValueError(f"num_quantizers must be in 1..{codec_config.n_codebooks}, got {n}")
    return n


class CodecTokenEncoder(nn.Module):
    """Codes -> sum of per-codebook embeddings -> tokens ``[B, T, D]``; the codec (if any) is frozen in eval mode."""

    config_class = CodecTokenEncoderConfig
    modality = "audio"

    def __init__(self, config: CodecTokenEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoModel

        codec_config = _codec_config(config)
        self.modality = INPUTS[config.inputs]
        self.codec = None
        if config.inputs == "audio":
            if config.pretrained is not None and load_pretrained:
                self.codec = AutoModel.from_pretrained(config.pretrained, revision=config.revision)
            else:
                self.codec = AutoModel.from_config(codec_config)
            self.codec.requires_grad_(False).eval()
        self.config = replace(
            config,
            resolved_codec=codec_config.model_type,
            resolved_sample_rate=int(codec_config.sampling_rate),
            resolved_hop_length=int(codec_config.hop_length),
            resolved_num_codebooks=_num_codebooks(config, codec_config),
            resolved_codebook_size=int(codec_config.codebook_size),
        )
        n_q, size = self.config.resolved_num_codebooks, self.config.resolved_codebook_size
        self.hidden_size = config.hidden_size
        self.embed = nn.Embedding(n_q * size, config.hidden_size)  # n_q tables of codebook_size rows, stacked
        self.register_buffer("offsets", torch.arange(n_q).unsqueeze(1) * size, persistent=False)
        self._reused: dict[bytes, torch.Tensor] | None = None

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def train(self, mode: bool = True) -> CodecTokenEncoder:
        """Train the embeddings; the codec stays in eval mode (no quantizer dropout, no batch statistics)."""
        super().train(mode)
        if self.codec is not None:
            self.codec.eval()
        return self

    @contextmanager
    def reusing_codes(self) -> Iterator[None]:
        """Inside this block each distinct waveform is run through the codec once and its codes are reused.

        Training visits every clip once per question and once per epoch; the frozen codec would give the same
        codes each time, and running it costs far more than the language model's step. The codec must not change
        inside the block (fit it first); the codes are forgotten when the block ends.
        """
        self._reused = {}
        try:
            yield
        finally:
            self._reused = None

    @torch.no_grad()
    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """One item's waveform ``[T]`` -> codes ``[n_q, frames]``, encoded at its own length so no padding leaks in."""
        if self._reused is None:
            return self._encode_audio(waveform)
        key = hashlib.sha256(waveform.detach().float().cpu().contiguous().numpy().tobytes()).digest()
        if key not in self._reused:
            self._reused[key] = self._encode_audio(waveform)
        return self._reused[key]

    def _encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.to(next(self.codec.parameters()).dtype).view(1, 1, -1)
        if self.config.resolved_codec == "encodec":
            # audio_codes: [chunks, batch, n_q, frames]; one chunk for unchunked models
            return self.codec.encode(x, bandwidth=self.config.bandwidth).audio_codes[0, 0]
        x = nn.functional.pad(x, (0, -x.shape[-1] % self.config.resolved_hop_length))
        return self.codec.encode(x, n_quantizers=self.config.resolved_num_codebooks).audio_codes[0]

    def forward(
        self, lengths: torch.Tensor, input_values: torch.Tensor | None = None, codes: torch.Tensor | None = None
    ) -> EncoderOutput:
        """``input_values`` ``[B, T]`` (audio) or ``codes`` ``[B, n_q, T]`` (precomputed), with per-item lengths."""
        if (input_values is None) == (codes is None):
            raise ValueError("pass exactly one of input_values (audio) or codes")
        if input_values is not None:
            if self.codec is None:
                raise ValueError("this encoder takes codes (inputs='codes'), not audio")
            per_item = [self.encode_audio(input_values[i, :n]) for i, n in enumerate(lengths.tolist())]
            lengths = torch.tensor([c.shape[-1] for c in per_item], device=input_values.device)
            codes = pad_sequence([c.transpose(0, 1) for c in per_item], batch_first=True).transpose(1, 2)
        tokens = self.embed(codes + self.offsets).sum(dim=1)
        mask = lengths_to_mask(lengths, tokens.shape[1])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, "mean"))


def _check_codes(item: Any, i: int, num_codebooks: int, codebook_size: int) -> torch.Tensor:
    name = f"audio_codes item {i}"
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    array = np.asarray(item)
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(f"{name}: codes must be integers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] != num_codebooks or array.shape[1] == 0:
        raise InvalidInputError(
            f"{name}: codes of shape {tuple(array.shape)}; expected ({num_codebooks}, frames) with frames >= 1"
        )
    if array.min() < 0 or array.max() >= codebook_size:
        raise InvalidInputError(f"{name}: code values must lie in [0, {codebook_size}), got [{array.min()}, {array.max()}]")
    return torch.from_numpy(array.astype(np.int64))


class CodecProcessor:
    """Audio items -> ``input_values`` ``[B, T]`` at the codec's rate + ``lengths`` (sizes: samples); or, with
    ``inputs="codes"``, int code arrays -> ``codes`` ``[B, n_q, T]`` + ``lengths`` (sizes: frames)."""

    def __init__(self, config: CodecTokenEncoderConfig) -> None:
        if config.resolved_codec is None:
            raise ValueError("CodecProcessor needs a resolved config; build the encoder first")
        self.config = config
        self.crop = CropPolicy()

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        config = self.config
        if config.inputs == "codes":
            if not items:
                raise InvalidInputError("no audio codes to process")
            codes = [
                _check_codes(item, i, config.resolved_num_codebooks, config.resolved_codebook_size)
                for i, item in enumerate(items)
            ]
            lengths = torch.tensor([c.shape[1] for c in codes], dtype=torch.long)
            padded = pad_sequence([c.transpose(0, 1) for c in codes], batch_first=True).transpose(1, 2)
            return ProcessedBatch(inputs={"codes": padded, "lengths": lengths}, sizes=lengths.tolist())
        clips = load_clips(
            items,
            config.sample_rate,
            seconds_to_samples(config.max_seconds, config.sample_rate),
            self.crop,
            pad_to_max=config.pad_to_max,
            allow_silence=config.allow_silence,
        )
        input_values, lengths = pad_clips(clips)
        return ProcessedBatch(inputs={"input_values": input_values, "lengths": lengths}, sizes=lengths.tolist())


CodecTokenEncoder.processor_class = CodecProcessor
