"""A text tower from any Hugging Face encoder checkpoint (BERT, RoBERTa, ALBERT, MiniLM, ...).

Sentence-transformers models (e.g. all-MiniLM-L6-v2) are this tower with ``pooling="mean"`` and
``normalize=True``: their Transformer -> Pooling(mean) -> Normalize pipeline, without the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.pooling import Pooling, check_pooling, pool_tokens
from encoders.text.tokenizers import load_tokenizer


@dataclass(frozen=True)
class HFTextEncoderConfig:
    """Either ``pretrained`` (hub id or directory) or ``model_config`` (random init from a config dict).

    ``tokenizer`` defaults to the checkpoint's own; give ``bundled:<name>`` or a path to override.
    ``normalize`` L2-normalises ``pooled`` (as sentence-transformers' ``Normalize`` module does).
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    tokenizer: str | None = None
    max_length: int = 128
    pooling: Pooling = "mean"
    normalize: bool = False
    trust_remote_code: bool = False
    modality: str = "text"

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        check_pooling(self.pooling)
        if self.pretrained is None and self.tokenizer is None:
            raise ValueError("a text encoder built from 'model_config' needs a 'tokenizer' source")

    def num_tokens(self, size: int) -> int:
        """Tokens for a text of ``size`` token ids (specials included), after truncation."""
        return min(size, self.max_length)


def _auto_config(config: HFTextEncoderConfig) -> Any:
    from transformers import AutoConfig

    if config.model_config is not None:
        params = dict(config.model_config)
        return AutoConfig.for_model(params.pop("model_type"), **params)
    return AutoConfig.from_pretrained(
        config.pretrained, revision=config.revision, trust_remote_code=config.trust_remote_code
    )


class HFTextEncoder(nn.Module):
    """Per-token hidden states of the last layer, mask from the attention mask, mean or CLS pooling."""

    config_class = HFTextEncoderConfig
    modality = "text"

    def __init__(self, config: HFTextEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoModel

        self.config = config
        self.modality = config.modality
        if config.pretrained is not None and load_pretrained:
            self.model = AutoModel.from_pretrained(
                config.pretrained,
                revision=config.revision,
                trust_remote_code=config.trust_remote_code,
            )
        else:
            self.model = AutoModel.from_config(_auto_config(config))
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # trained for NSP/SOP; pooling is ours, and every kept weight gets a gradient
        self.hidden_size = int(self.model.config.hidden_size)

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        pooled = pool_tokens(hidden, mask, self.config.pooling)
        if self.config.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return EncoderOutput(tokens=hidden, mask=mask, pooled=pooled)


@dataclass
class HFTextProcessor:
    """Texts -> padded ``input_ids``/``attention_mask`` with the tower's tokenizer (right padding)."""

    config: HFTextEncoderConfig
    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            source = self.config.tokenizer or self.config.pretrained
            self.tokenizer = load_tokenizer(source, self.config.revision, self.config.trust_remote_code)

    def __call__(self, items: Sequence[str]) -> ProcessedBatch:
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InvalidInputError(f"text item {i} is a {type(text).__name__}, expected str: {text!r:.80}")
        enc = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        sizes = [int(n) for n in enc["attention_mask"].sum(1)]
        return ProcessedBatch(
            inputs={"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, sizes=sizes
        )


HFTextEncoder.processor_class = HFTextProcessor


# A derived buffer (arange) that transformers < 4.31 saved with BERT-family weights; rebuilt from the config.
_DERIVED_BUFFERS = ("embeddings.position_ids",)


def hf_base_model_key_map(state_dict: dict[str, torch.Tensor]) -> dict[str, str | None]:
    """Map a bare ``*Model`` checkpoint (``BertModel`` & co., keys without a base prefix, no task head) onto
    :class:`HFTextEncoder`: ``X -> model.X``.

    Dropped on purpose (``None``): the pooler (trained for NSP; the tower pools itself) and the derived
    ``position_ids`` buffer. A key with a head's or base model's prefix (``bert.``, ``cls.``, ...) is an
    error: such a checkpoint is not a bare base model.
    """
    prefixed = sorted(k for k in state_dict if not k.startswith(("embeddings.", "encoder.", "pooler.")))
    if prefixed:
        raise ValueError(
            f"not a bare base-model checkpoint: {len(prefixed)} key(s) lie outside embeddings./encoder./pooler. "
            f"(e.g. {', '.join(prefixed[:3])}); for a *ForMaskedLM checkpoint use "
            "encoders.smiles.hf_encoder:hf_masked_lm_key_map"
        )
    return {k: None if k.startswith("pooler.") or k in _DERIVED_BUFFERS else "model." + k for k in state_dict}
