"""``BartForConditionalGeneration`` checkpoints (``facebook/bart-*``, chemistry BARTs) onto a text-only zoo
``MultimodalSeq2SeqLM``.

A BART is an encoder–decoder text-to-text model with no modality encoders: the zoo model is an
``hf-seq2seq-lm`` backbone (a transformers ``BartForConditionalGeneration``, kept as ``language_model``) with
``encoders: {}`` and ``projectors: {}``, whose prompt (``<s> text </s>``, as BART's tokenizer frames it) is the
encoder's input and whose answer comes from the decoder, which starts from ``decoder_start_token_id`` (``</s>``).

Every checkpoint key is ``model.*``, ``lm_head.weight`` or the ``final_logits_bias`` buffer and becomes
``language_model.<key>``. A ``BartModel`` file holds the same ``model.*`` tensors without the ``model.`` prefix and
no ``final_logits_bias``: its keys get the prefix, and the bias is zero, as transformers leaves it when it reads
such a file into ``BartForConditionalGeneration``. transformers ties the encoder's and decoder's input embeddings
and the LM head to ``model.shared.weight``; a file may hold several of those names (transformers 4 saved every
copy, the Hub's safetensors conversions keep one, not always ``shared``): the first present is kept, a copy equal
to it is dropped (the built model holds the tie), and a copy that differs is kept, which strict loading then
refuses by name. Anything else fits no rule and is an error listing it.

BART checkpoints keep their generation defaults (``forced_bos_token_id``, ``num_beams``, ``length_penalty``,
``no_repeat_ngram_size`` ...) in config.json, where transformers 5's model config drops them: :func:`bart_family`
moves them into the spec's ``generation`` (a ``generation_config.json`` beside the checkpoint replaces them, as
in transformers). :func:`bart_family` is the ``bart`` model family (``zoo.load("hf:org/repo")``).
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
from zoo.spec import SpecError, generation_from_checkpoint

_KEY = re.compile(r"model\.(?:shared|encoder|decoder)\..+|lm_head\.weight|final_logits_bias")
# a BartModel file: the same tensors as BartForConditionalGeneration's ``model.*``, without the prefix
_BASE_MODEL_KEY = re.compile(r"(?:shared|encoder|decoder)\..+")
# the names of BART's one tied embedding matrix, in the order a copy is kept
_TIED = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
         "lm_head.weight")


def bart_key_map(state_dict: Mapping[str, Any]) -> dict[str, str | None]:
    """``{checkpoint key: zoo key, or None for a dropped copy of the tied embeddings}`` for every key of one
    BartForConditionalGeneration or BartModel checkpoint file (a file mixing the two layouts is refused)."""
    if state_dict and all(_BASE_MODEL_KEY.fullmatch(key) for key in state_dict):
        prefixed = text_to_text_key_map({f"model.{key}": value for key, value in state_dict.items()}, _KEY, _TIED,
                                        "BART", "BartModel")
        return {key: prefixed[f"model.{key}"] for key in state_dict}
    return text_to_text_key_map(state_dict, _KEY, _TIED, "BART", "BartForConditionalGeneration")


# The BartConfig fields a bart spec writes out, with BartConfig's defaults: a checkpoint's config.json may omit
# any of these (transformers saves only the values that differ).
_BART_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50265, "max_position_embeddings": 1024, "d_model": 1024, "encoder_layers": 12,
    "encoder_ffn_dim": 4096, "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096,
    "decoder_attention_heads": 16, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "activation_function": "gelu",
    "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": 0.02, "classifier_dropout": 0.0,
    "scale_embedding": False, "tie_word_embeddings": True, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    "decoder_start_token_id": 2, "forced_eos_token_id": 2,
}
# Settings of transformers 3's BartConfig (still in facebook/bart-* config.json files) with the one value that
# BartForConditionalGeneration computes; another value describes another model (mBART's pre-LayerNorm, static
# sinusoidal positions, a logits bias) that loading as BART would compute wrongly without a word.
_FIXED_LAYOUT: dict[str, Any] = {
    "normalize_before": False, "add_final_layer_norm": False, "static_position_embeddings": False,
    "add_bias_logits": False, "normalize_embedding": True,
}
# BartModel: facebook/bart-base and bart-large name it, and transformers reads them with their tied LM head.
_ARCHITECTURES = ("BartForConditionalGeneration", "BartModel")


def bart_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``BartForConditionalGeneration`` checkpoint: no modality encoders, the BART config
    spelled out, its generation defaults, the checkpoint's tokenizer; its weights load through
    :func:`bart_key_map`."""
    where = f"{pretrained} config.json"
    check_text_to_text_architectures(config, _ARCHITECTURES, "BART", "bart", where)
    for key, value in _FIXED_LAYOUT.items():
        if key in config and config[key] != value:
            raise SpecError(f"{where}: {key} {config[key]!r} is not BART's layout ({key} {value!r}), which is what "
                            "BartForConditionalGeneration computes; this checkpoint is another model (mBART, "
                            "Marian or Blenderbot set these) — load it as that model_type")
    bart = {key: config.get(key, default) for key, default in _BART_DEFAULTS.items()}
    # the generation settings config.json holds beside the model's own fields (those stay in model_config)
    generation = generation_from_checkpoint({k: v for k, v in config.items() if k not in bart}, where)
    spec = text_to_text_spec({"model_type": "bart", **bart}, pretrained, revision, generation)
    return Conversion("bart", spec, "bart", zero_when_absent=("language_model.final_logits_bias",))
