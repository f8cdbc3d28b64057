"""``Blip2ForConditionalGeneration`` checkpoints (``Salesforce/blip2-opt-*``, ``Salesforce/blip2-flan-t5-*``)
onto a zoo ``MultimodalLM`` (OPT) or ``MultimodalSeq2SeqLM`` (Flan-T5).

The zoo model for BLIP-2 is:

- an ``hf-vision`` image encoder holding transformers' ``Blip2VisionModel`` (``encoders.image.model``), its
  tokens the last layer after the tower's ``post_layernorm`` with the CLS token kept: what transformers feeds
  the Q-Former (``last_hidden_state``). That LayerNorm is LAVIS's ``ln_vision``;
- a ``qformer`` projector: transformers' ``Blip2QFormerModel`` over learned queries is the zoo Q-Former's
  math (LayerNorm on the queries, BERT post-norm layers, cross-attention every ``cross_attention_frequency``-th
  layer, the query feed-forward), so its weights map by name; ``input_norm: false`` (the norm is the tower's)
  and ``batched_queries: true`` (queries stored ``[1, Q, D]``), then ``language_projection`` to the LM width;
- the language model, its config spelled out: an ``hf-causal-lm`` OPT (``OPTForCausalLM``), or an
  ``hf-seq2seq-lm`` Flan-T5 (``T5ForConditionalGeneration``, the config as the ``t5`` family writes it) whose
  encoder reads the queries and the prompt, as transformers does.

As in transformers 5, the ``num_query_tokens`` projected queries replace a run of ``<image>`` tokens
(``image_token_index``) in the LM input, so a checkpoint whose config.json lacks that id (one saved before the
Hub repos gained the ``<image>`` token) is refused. Every checkpoint key must match one rule; anything else is
an error listing it; a T5's copies of its tied input embeddings are dropped as the ``t5`` key map drops them.
:func:`blip2_family` is the ``blip-2`` model family (``zoo.load("hf:org/repo")``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zoo.converters.families import Conversion, rename_by_rules, rename_rules
from zoo.converters.t5 import t5_family, t5_key_map
from zoo.spec import SpecError, generation_from_checkpoint

_QFORMER = "projectors.image.qformer"
_LAYER = r"qformer\.encoder\.layer\.(\d+)\."
_RULES = rename_rules(
    (r"vision_model\.(.+)", r"encoders.image.model.\1"),
    (r"query_tokens", f"{_QFORMER}.query_tokens"),
    (r"qformer\.layernorm\.(weight|bias)", rf"{_QFORMER}.norm.\1"),
    *(
        rule
        for theirs, ours in (("attention", "self_attention"), ("crossattention", "cross_attention"))
        for rule in (
            (_LAYER + theirs + r"\.attention\.(query|key|value)\.(weight|bias)",
             rf"{_QFORMER}.layers.\1.{ours}.\2.\3"),
            (_LAYER + theirs + r"\.output\.dense\.(weight|bias)", rf"{_QFORMER}.layers.\1.{ours}.dense.\2"),
            (_LAYER + theirs + r"\.output\.LayerNorm\.(weight|bias)", rf"{_QFORMER}.layers.\1.{ours}.norm.\2"),
        )
    ),
    (_LAYER + r"intermediate_query\.dense\.(weight|bias)", rf"{_QFORMER}.layers.\1.intermediate.0.\2"),
    (_LAYER + r"output_query\.dense\.(weight|bias)", rf"{_QFORMER}.layers.\1.output.\2"),
    (_LAYER + r"output_query\.LayerNorm\.(weight|bias)", rf"{_QFORMER}.layers.\1.norm.\2"),
    (r"language_projection\.(weight|bias)", r"projectors.image.language_projection.\1"),
    (r"language_model\.(model\..+|lm_head\..+)", r"language_model.\1"),
)
_T5_LM = "language_model."
_T5_KEY = re.compile(r"language_model\.(?:shared|encoder|decoder)\..+")


def blip2_key_map(state_dict: Mapping[str, Any]) -> dict[str, str | None]:
    """``{checkpoint key: zoo model key, or None for a dropped copy of a T5's tied embeddings}`` for every key
    of one BLIP-2 checkpoint file (or shard)."""
    t5_part = {key.removeprefix(_T5_LM): value for key, value in state_dict.items() if _T5_KEY.fullmatch(key)}
    renames: dict[str, str | None] = {_T5_LM + key: target for key, target in t5_key_map(t5_part).items()}
    rest = [key for key in state_dict if key not in renames]
    renames.update(rename_by_rules(rest, _RULES, "BLIP-2", "Blip2ForConditionalGeneration checkpoint with queries only"))
    return renames


# The OPT fields a BLIP-2 spec writes out, with OPTConfig's defaults: transformers saves only the values that
# differ from them, so a checkpoint's ``text_config`` may omit any of these.
_OPT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50272, "hidden_size": 768, "num_hidden_layers": 12, "ffn_dim": 3072, "num_attention_heads": 12,
    "max_position_embeddings": 2048, "do_layer_norm_before": True, "_remove_final_layer_norm": False,
    "word_embed_proj_dim": None, "activation_function": "relu", "enable_bias": True,
    "layer_norm_elementwise_affine": True, "tie_word_embeddings": True,
}
# The Q-Former fields a spec reads (Blip2QFormerConfig's defaults), and the values the zoo Q-Former computes with.
_QFORMER_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "cross_attention_frequency": 2, "hidden_dropout_prob": 0.1,
}
_QFORMER_FIXED: dict[str, Any] = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "use_qformer_text_input": False}


def _opt_backbone(text: Mapping[str, Any], pretrained: str, revision: str | None) -> dict[str, Any]:
    opt = {key: text.get(key, default) for key, default in _OPT_DEFAULTS.items()}
    opt["word_embed_proj_dim"] = opt["word_embed_proj_dim"] or opt["hidden_size"]
    return {"type": "hf-causal-lm", "config": {"model_config": {"model_type": "opt", **opt}}}


def _t5_backbone(text: Mapping[str, Any], pretrained: str, revision: str | None) -> dict[str, Any]:
    return t5_family(text, pretrained, revision).spec["backbone"]


# text_config model_type -> the zoo backbone spec of that language model
_LANGUAGE_MODELS = {"opt": _opt_backbone, "t5": _t5_backbone}


def qformer_settings(
    config: Mapping[str, Any], where: str, defaults: Mapping[str, Any], fixed: Mapping[str, Any], checkpoint: str
) -> tuple[dict[str, Any], int, int]:
    """The Q-Former fields a spec reads (``defaults`` fill what config.json omits), the number of queries and the
    ``<image>`` token id of a BLIP-2-style checkpoint; a field the zoo Q-Former computes differently (``fixed``)
    or a missing id is refused, naming it."""
    qformer = _mapping(config.get("qformer_config", {}), f"{where} qformer_config")
    for key, value in fixed.items():
        if qformer.get(key, value) != value:
            raise SpecError(f"{where}: qformer_config.{key} {qformer[key]!r} is not supported; the zoo Q-Former "
                            f"computes with {key} {value!r}")
    queries = config.get("num_query_tokens", 32)
    image_token = config.get("image_token_index", config.get("image_token_id"))
    for name, value in (("num_query_tokens", queries), ("image_token_index", image_token)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: {name} must be an int, got {value!r}; {checkpoint} checkpoint saved before "
                            "the <image> token was added has no image_token_index — load a revision that has it")
    return {key: qformer.get(key, default) for key, default in defaults.items()}, queries, image_token


def qformer_image_parts(pretrained: str, pinned: Mapping[str, str], q: Mapping[str, Any], queries: int,
                        **projector: Any) -> dict[str, Any]:
    """The ``encoders`` and ``projectors`` of a BLIP-2-style spec: the checkpoint's vision tower (last layer after
    its LayerNorm) into a Q-Former of ``queries`` queries with the settings ``q`` that :func:`qformer_settings`
    read, plus ``projector`` settings of the family (InstructBLIP's text embeddings)."""
    return {
        "encoders": {"image": {"type": "hf-vision", "config": {
            "pretrained": pretrained, **pinned, "vision_feature_layer": -1, "feature_select_strategy": "full",
            "post_layernorm": True,
        }}},
        "projectors": {"image": {"type": "qformer", "config": {
            "num_queries": queries, "num_layers": q["num_hidden_layers"], "num_heads": q["num_attention_heads"],
            "hidden_size": q["hidden_size"], "intermediate_size": q["intermediate_size"],
            "cross_attention_every": q["cross_attention_frequency"], "dropout": q["hidden_dropout_prob"],
            "input_norm": False, "batched_queries": True, **projector,
        }}},
    }


def blip2_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``Blip2ForConditionalGeneration`` checkpoint with an OPT or a (Flan-)T5 language model,
    as the ``blip2-opt-2.7b`` card writes it; its weights load through :func:`blip2_key_map`."""
    where = f"{pretrained} config.json"
    text = _mapping(config.get("text_config", {}), f"{where} text_config")
    language_model = text.get("model_type", "opt")
    if language_model not in _LANGUAGE_MODELS:
        raise SpecError(
            f"{where}: a BLIP-2 with a {language_model!r} language model is not supported; the blip-2 family "
            f"converts BLIP-2 checkpoints whose language model is one of: {', '.join(_LANGUAGE_MODELS)} "
            "(e.g. Salesforce/blip2-opt-2.7b, Salesforce/blip2-flan-t5-xl)"
        )
    q, queries, image_token = qformer_settings(config, where, _QFORMER_DEFAULTS, _QFORMER_FIXED, "a BLIP-2")
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "bos_after_leading_placeholders": True,  # <image>x32, BOS, text: Blip2Processor's (and LAVIS's) layout
        **qformer_image_parts(pretrained, pinned, q, queries),
        "backbone": _LANGUAGE_MODELS[language_model](text, pretrained, revision),
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
    }
    generation = generation_from_checkpoint(text, f"{where} text_config")  # OPT-2.7b's: stop at "\n" (50118)
    if generation:
        spec["generation"] = generation
    return Conversion("blip-2", spec, "blip2", {"image": image_token})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
