"""CLAP's text tower: RoBERTa, its pooler and CLAP's projection (transformers ``ClapTextModelWithProjection``),
with the checkpoint's own tokenizer.

CLAP pools text the BERT way, dense + tanh on the first token (``<s>``), then projects it with a two-layer MLP
(linear, ReLU, linear) into the space it shares with the audio tower. ``hf-text`` drops that pooler and pools by
mean or first token, so CLAP's text embeddings need this tower. ``pooled`` is the projected embedding
(``projection_dim`` wide, reported as ``pooled_size``), unnormalised like transformers' ``text_embeds``; a dual
encoder normalises it. ``tokens`` are RoBERTa's last hidden states, masked by the attention mask.

A pretrained tower reads the text half of a ``ClapModel`` checkpoint strictly (``encoders.clap_checkpoint``) and
keeps the checkpoint's two temperatures for the dual encoder built on it, as the open_clip towers keep theirs:
``logit_scale_a`` (audio -> text logits) as ``logit_scale_init``, ``logit_scale_t`` (text -> audio) as
``text_logit_scale_init``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput
from encoders.clap_checkpoint import load_tower
from encoders.text.hf_encoder import HFTextProcessor
from encoders.text.tokenizers import load_tokenizer

# the checkpoint's temperature -> the attribute a dual encoder reads its initial value from
SCALE_ATTRIBUTES: dict[str, str] = {"logit_scale_a": "logit_scale_init", "logit_scale_t": "text_logit_scale_init"}


@dataclass(frozen=True)
class ClapTextEncoderConfig:
    """Either ``pretrained`` (hub id or directory of a ``ClapModel`` checkpoint with its tokenizer) or
    ``model_config`` (``ClapTextConfig`` keyword arguments, random init), which needs a ``tokenizer`` source
    (``bundled:<name>``, a directory or a hub id; it also overrides a checkpoint's own). Texts are cut to
    ``max_length`` tokens, 77 by default as LAION-CLAP trained (transformers' ``ClapProcessor`` cuts nothing
    unless asked; prompts and captions are shorter).
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    tokenizer: str | None = None
    max_length: int = 77

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.pretrained is None and self.tokenizer is None:
            raise ValueError("a CLAP text tower built from 'model_config' needs a 'tokenizer' source")

    def num_tokens(self, size: int) -> int:
        """Tokens for a text of ``size`` token ids (specials included), after truncation."""
        return min(size, self.max_length)


class ClapTextEncoder(nn.Module):
    """RoBERTa tokens ``[B, T, hidden]`` and CLAP's projected text embedding ``[B, projection_dim]`` as pooled."""

    config_class = ClapTextEncoderConfig
    modality = "text"

    def __init__(self, config: ClapTextEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import ClapTextConfig, ClapTextModelWithProjection

        if config.pretrained is not None:
            model_config = ClapTextConfig.from_pretrained(config.pretrained, revision=config.revision)
        else:
            model_config = ClapTextConfig(**{k: v for k, v in config.model_config.items() if k != "model_type"})
        self.model = ClapTextModelWithProjection(model_config)
        if config.pretrained is not None and load_pretrained:
            for name, value in load_tower(self.model, config.pretrained, config.revision, "text").items():
                setattr(self, SCALE_ATTRIBUTES[name], value)
        self.config = config
        self.hidden_size = int(model_config.hidden_size)
        self.pooled_size = int(model_config.projection_dim)

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return EncoderOutput(tokens=out.last_hidden_state, mask=attention_mask.bool(), pooled=out.text_embeds)


@dataclass
class ClapTextProcessor(HFTextProcessor):
    """Texts -> padded ``input_ids``/``attention_mask`` with the checkpoint's RoBERTa tokenizer (or
    ``config.tokenizer``); the same batching and checks as ``hf-text``."""

    config: ClapTextEncoderConfig

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.config.tokenizer or self.config.pretrained, self.config.revision)


ClapTextEncoder.processor_class = ClapTextProcessor
