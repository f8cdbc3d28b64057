"""Any Hugging Face BERT/ALBERT/RoBERTa-family checkpoint as a SMILES encoder, e.g. rxnmapper's reaction ALBERT.

The checkpoint is loaded with ``transformers.AutoModel`` (a hub id or a local folder), or built at random
init from a ``model_config`` dict. SMILES checkpoints in the rxnfp/rxnmapper convention ship only a BERT
``vocab.txt`` (their ``tokenizer_config.json`` is empty, so ``AutoTokenizer`` would wrongly pick a
SentencePiece ALBERT tokenizer); ``tokenizer="regex"`` pairs that vocab with our SMILES regex. Checkpoints
with their own tokenizer (BPE ChemBERTa, or one saved from :meth:`SmilesTokenizer.to_transformers`) use
``tokenizer="auto"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import cached_file

from encoders.base import EncoderOutput
from encoders.pooling import Pooling, check_pooling, pool_tokens
from encoders.smiles.processor import SmilesProcessor
from encoders.smiles.tokenizer import SmilesTokenizer

RXNMAPPER_ALBERT = "rxnmapper:albert"
RXNMAPPER_ALBERT_DIR = "rxnmapper/models/transformers/albert_heads_8_uspto_all_1310k"


@dataclass(frozen=True)
class HFSmilesConfig:
    """Which checkpoint, how to tokenize for it, and how to pool.

    pretrained:   hub id, local folder, or ``"rxnmapper:albert"`` (the ALBERT inside the installed
                  rxnmapper package; a name rather than a path, so saved configs stay portable).
    revision:     hub revision (branch, tag or commit) of ``pretrained``.
    model_config: ``AutoConfig.for_model`` kwargs (must include ``model_type``) to build at random init;
                  ``vocab_size`` and ``pad_token_id`` default to the vocabulary's.
    vocab_file:   BERT-format ``vocab.txt`` for ``tokenizer="regex"``; default: the checkpoint's own.
    tokenizer:    ``"regex"`` (our SMILES regex + vocab.txt) or ``"auto"`` (the checkpoint's AutoTokenizer).
    max_length:   tokens per item, special tokens included; longer items are truncated.
    pooling:      ``"cls"`` (first token, as rxnfp fingerprints) or ``"mean"`` (masked mean).
    trust_remote_code: passed to ``transformers``; only set it for checkpoints whose code you trust.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    vocab_file: str | None = None
    tokenizer: Literal["regex", "auto"] = "regex"
    max_length: int = 512
    pooling: Pooling = "cls"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError(
                "give exactly one of 'pretrained' (a checkpoint) or 'model_config' (random init)"
            )
        if self.model_config is not None and "model_type" not in self.model_config:
            raise ValueError(
                "model_config needs a 'model_type' key, e.g. {'model_type': 'bert', 'hidden_size': 256}"
            )
        if self.tokenizer not in ("regex", "auto"):
            raise ValueError(f"tokenizer must be 'regex' or 'auto', got {self.tokenizer!r}")
        if self.pretrained is None and (self.tokenizer != "regex" or self.vocab_file is None):
            raise ValueError(
                "a model built from 'model_config' has no tokenizer of its own: pass 'vocab_file'"
            )
        if self.max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {self.max_length}")
        check_pooling(self.pooling)

    def num_tokens(self, size: int) -> int:
        """Encoder tokens for an item of ``size`` tokens (special tokens included): capped at ``max_length``."""
        return min(size, self.max_length)


def find_rxnmapper_albert() -> Path:
    """Folder of the ALBERT that the ``rxnmapper`` package ships, found without importing rxnmapper.

    (Importing it would run its ``transformers<5`` code; we only need the files.)
    """
    try:
        dist = distribution("rxnmapper")
    except PackageNotFoundError:
        raise FileNotFoundError(
            "rxnmapper is not installed; install it without its dependencies (it pins transformers<5): "
            "pip install --no-deps rxnmapper"
        ) from None
    folder = Path(dist.locate_file(RXNMAPPER_ALBERT_DIR))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"rxnmapper {dist.version} has no ALBERT at {folder}; reinstall it: pip install --no-deps rxnmapper"
        )
    return folder


def checkpoint_source(config: HFSmilesConfig) -> str:
    """Where ``config.pretrained`` lives: ``"rxnmapper:albert"`` resolved to its folder, anything else as is."""
    return str(find_rxnmapper_albert()) if config.pretrained == RXNMAPPER_ALBERT else config.pretrained


def load_vocab(config: HFSmilesConfig) -> SmilesTokenizer:
    """The regex tokenizer's vocabulary: ``config.vocab_file``, else the checkpoint's ``vocab.txt``."""
    if config.vocab_file is not None:
        return SmilesTokenizer.from_file(config.vocab_file)
    source = checkpoint_source(config)
    path = cached_file(
        source, "vocab.txt", revision=config.revision, _raise_exceptions_for_missing_entries=False
    )
    if path is None:
        raise FileNotFoundError(
            f"{source} has no vocab.txt for the SMILES regex tokenizer; pass vocab_file=..., "
            "or tokenizer='auto' if the checkpoint ships its own tokenizer"
        )
    return SmilesTokenizer.from_file(path)


def load_tokenizer(config: HFSmilesConfig) -> PreTrainedTokenizerBase:
    """The ``transformers`` tokenizer for ``config`` (see :class:`HFSmilesConfig` ``tokenizer``)."""
    if config.tokenizer == "regex":
        return load_vocab(config).to_transformers(model_max_length=config.max_length)
    return AutoTokenizer.from_pretrained(
        checkpoint_source(config), revision=config.revision, trust_remote_code=config.trust_remote_code
    )


class HFSmilesProcessor(SmilesProcessor):
    """SMILES strings to ``input_ids``/``attention_mask`` with the checkpoint's tokenizer (or a saved one)."""

    def __init__(self, config: HFSmilesConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        super().__init__(tokenizer if tokenizer is not None else load_tokenizer(config), config)


def _build_model(config: HFSmilesConfig, load_pretrained: bool) -> PreTrainedModel:
    remote = config.trust_remote_code
    if config.pretrained is not None:
        source = checkpoint_source(config)
        if load_pretrained:
            return AutoModel.from_pretrained(source, revision=config.revision, trust_remote_code=remote)
        hf_config = AutoConfig.from_pretrained(source, revision=config.revision, trust_remote_code=remote)
    else:
        vocab = load_vocab(config)
        kwargs = {"vocab_size": len(vocab), "pad_token_id": vocab.pad_token_id, **config.model_config}
        hf_config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    return AutoModel.from_config(hf_config, trust_remote_code=remote)


def _check_fits(model: PreTrainedModel, config: HFSmilesConfig) -> None:
    """Fail at construction, not deep in an embedding lookup, when inputs cannot fit the model."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None:
        # RoBERTa-family embeddings number positions from padding_idx + 1.
        padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
        usable = positions - (padding_idx + 1 if padding_idx is not None else 0)
        if config.max_length > usable:
            raise ValueError(
                f"max_length={config.max_length} exceeds the {usable} positions the model has; lower it"
            )
    if config.tokenizer == "regex":
        vocab = load_vocab(config)
        if len(vocab) > model.config.vocab_size:
            raise ValueError(
                f"vocabulary has {len(vocab)} tokens but the model embeds only {model.config.vocab_size}; "
                "use the vocab.txt the checkpoint was trained with"
            )
        pad = model.config.pad_token_id
        if pad is not None and pad != vocab.pad_token_id:
            raise ValueError(
                f"vocabulary puts [PAD] at id {vocab.pad_token_id} but the model expects {pad}; "
                "use the checkpoint's vocab.txt or set pad_token_id in model_config"
            )


class HFSmilesEncoder(nn.Module):
    """A ``transformers`` encoder over SMILES tokens: features of every token plus a pooled vector.

    The checkpoint's pooler (a tanh layer trained for next-sentence/sentence-order prediction) is dropped:
    pooling is ``config.pooling``, and every kept parameter receives a gradient. ``load_pretrained=False``
    builds the checkpoint's architecture without its weights (the caller loads a full state dict).
    """

    modality = "smiles"
    config_class = HFSmilesConfig
    processor_class = HFSmilesProcessor

    def __init__(self, config: HFSmilesConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.model = _build_model(config, load_pretrained)
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None
        _check_fits(self.model, config)
        self.hidden_size = int(self.model.config.hidden_size)

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_ids``/``attention_mask`` ``[B, N]`` from the processor to per-token and pooled features."""
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, self.config.pooling))


_PRETRAINING_HEADS = ("predictions.", "lm_head.", "cls.", "generator_predictions.", "generator_lm_head.")


def hf_masked_lm_key_map(state_dict: dict[str, torch.Tensor]) -> dict[str, str | None]:
    """Map a ``*ForMaskedLM`` checkpoint onto :class:`HFSmilesEncoder`: ``<base>.X -> model.X``.

    The masked-LM head and the NSP/SOP pooler are dropped on purpose (``None``): the encoder pools itself.
    Any key outside ``<base>.`` or a known head is an error, so an unexpected layout never half-loads.
    """
    bases = {k.split(".", 1)[0] for k in state_dict if not k.startswith(_PRETRAINING_HEADS)}
    if len(bases) != 1:
        raise ValueError(f"expected one base-model prefix (e.g. 'albert.'), found {sorted(bases)}")
    base = bases.pop() + "."
    renames: dict[str, str | None] = {}
    for key in state_dict:
        if key.startswith(_PRETRAINING_HEADS) or key.startswith(base + "pooler."):
            renames[key] = None
        else:
            renames[key] = "model." + key[len(base) :]
    return renames
