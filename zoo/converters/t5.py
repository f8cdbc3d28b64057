"""``T5ForConditionalGeneration`` checkpoints (T5, MolT5) onto a text-only zoo ``MultimodalSeq2SeqLM``.

A T5 is an encoder–decoder text-to-text model with no modality encoders: the zoo model is an
``hf-seq2seq-lm`` backbone (a transformers ``T5ForConditionalGeneration``, kept as ``language_model``) with
``encoders: {}`` and ``projectors: {}``, whose prompt is the encoder's input and whose answer comes from the
decoder (MolT5: a SMILES in, its caption out, or the reverse).

Every checkpoint key is ``shared.*``, ``encoder.*``, ``decoder.*`` or ``lm_head.*`` and becomes
``language_model.<key>``. transformers ties the input embeddings of encoder and decoder and the LM head to
``shared.weight``; checkpoints saved by transformers 4 store those copies too, so a copy equal to
``shared.weight`` is dropped (the built model holds the tie), and a copy that differs is kept, which strict
loading then refuses by name. Anything else fits no rule and is an error listing it.
:func:`t5_family` is the ``t5`` model family: a checkpoint's config.json as a zoo spec
(``zoo.load("hf:org/repo")``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zoo.converters.families import (
    Conversion,
    check_text_to_text_architectures,
    text_to_text_key_map,
    text_to_text_spec,
)

_KEY = re.compile(r"(?:shared|encoder|decoder|lm_head)\..+")
# the names of T5's one tied embedding matrix, in the order a copy is kept
_TIED = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


def t5_key_map(state_dict: Mapping[str, Any]) -> dict[str, str | None]:
    """``{checkpoint key: zoo key, or None for a dropped copy of the tied embeddings}`` for every key of one
    T5ForConditionalGeneration checkpoint file."""
    return text_to_text_key_map(state_dict, _KEY, _TIED, "T5", "T5ForConditionalGeneration")


# The T5Config fields a t5 spec writes out, with T5Config's defaults: a checkpoint's config.json may omit any
# of these (transformers saves only the values that differ). ``num_decoder_layers`` None means ``num_layers``;
# ``tie_word_embeddings`` false is how a T5 v1.1 config says its decoder output is not rescaled (transformers 4;
# transformers 5 writes ``scale_decoder_outputs`` false instead).
_T5_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": None,
    "num_heads": 8, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "feed_forward_proj": "relu",
    "tie_word_embeddings": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": None,
}
_ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel")


def t5_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``T5ForConditionalGeneration`` checkpoint, as the MolT5 cards write it: no modality
    encoders, the T5 config spelled out, the checkpoint's tokenizer; its weights load through
    :func:`t5_key_map`."""
    where = f"{pretrained} config.json"
    check_text_to_text_architectures(config, _ARCHITECTURES, "T5", "t5", where)
    t5 = {key: config.get(key, default) for key, default in _T5_DEFAULTS.items()}
    if config.get("scale_decoder_outputs") is False:  # transformers 5's spelling of the same T5 v1.1 setting
        t5["tie_word_embeddings"] = False
    if t5["num_decoder_layers"] is None:
        t5["num_decoder_layers"] = t5["num_layers"]
    if t5["decoder_start_token_id"] is None:  # T5 starts decoding from its pad token
        t5["decoder_start_token_id"] = t5["pad_token_id"]
    spec = text_to_text_spec({"model_type": "t5", **t5}, pretrained, revision)
    return Conversion("t5", spec, "t5")
