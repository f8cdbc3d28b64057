"""``LlavaNextForConditionalGeneration`` checkpoints (``llava-hf/llava-v1.6-*``) onto a zoo ``MultimodalLM``.

LLaVA-NeXT (LLaVA-1.6) is LLaVA-1.5 with any-resolution images: each image is seen as a base view plus the tiles
of its best-fit resolution, and the tile features keep the image's aspect ratio, a learned newline vector ending
each row, so the number of image tokens depends on the image's size. The zoo model is an ``hf-vision-anyres``
image encoder (the CLIP tower as ``encoders.image.model``; tiling, unpadding and row-end slots), an
``anyres-mlp`` projector (``projectors.image.mlp.layers.0`` / ``.2``, GELU between, and
``projectors.image.newline``) and an ``hf-causal-lm`` Llama or Mistral (``language_model``). Checkpoint keys
come in the two layouts :mod:`zoo.converters.llava` describes (as on the Hub, as transformers 5 holds them),
``image_newline`` or ``model.image_newline`` included; a key that fits no rule is an error listing it.

:func:`llava_next_family` is the ``llava_next`` model family: a checkpoint's config.json as a zoo spec
(``zoo.load("hf:org/repo")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.converters.families import CAUSAL_LM_RULES, Conversion, rename_by_rules, rename_rules
from zoo.converters.llava import LLAMA_DEFAULTS
from zoo.spec import SpecError

_RULES = rename_rules(
    (r"(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)", r"encoders.image.model.\1"),
    (r"(?:model\.)?multi_modal_projector\.linear_1\.(weight|bias)", r"projectors.image.mlp.layers.0.\1"),
    (r"(?:model\.)?multi_modal_projector\.linear_2\.(weight|bias)", r"projectors.image.mlp.layers.2.\1"),
    (r"(?:model\.)?image_newline", r"projectors.image.newline"),
    *CAUSAL_LM_RULES,
)


def llava_next_key_map(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{checkpoint key: zoo MultimodalLM key}`` for every key of one LLaVA-NeXT checkpoint file (or shard)."""
    return rename_by_rules(state_dict, _RULES, "LLaVA-NeXT", "LlavaNextForConditionalGeneration checkpoint")


# The fields a spec writes out for each supported language model, with its transformers config's defaults:
# transformers saves only the values that differ from them, so a checkpoint's ``text_config`` may omit any.
# ``head_dim`` None means hidden_size // num_attention_heads, as both configs compute it.
_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {**LLAMA_DEFAULTS, "head_dim": None},
    "mistral": {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": None, "hidden_act": "silu",
        "max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "sliding_window": 4096,
        "tie_word_embeddings": False,
    },
}


def llava_next_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``LlavaNextForConditionalGeneration`` checkpoint with a Llama or Mistral language
    model: the checkpoint's CLIP tower and LLaVA-NeXT image processor (``hf-vision-anyres``), ``anyres-mlp``
    depth 2, the language model's config spelled out, the checkpoint's tokenizer; its weights load through
    :func:`llava_next_key_map`."""
    where = f"{pretrained} config.json"
    text = _mapping(config.get("text_config", {}), f"{where} text_config")
    lm_type = text.get("model_type", "llama")
    if lm_type not in _TEXT_DEFAULTS:
        raise SpecError(f"{where}: a LLaVA-NeXT with a {lm_type!r} language model is not supported; the llava_next "
                        f"family converts those with a {' or '.join(sorted(_TEXT_DEFAULTS))} language model")
    if config.get("multimodal_projector_bias", True) is not True:
        raise SpecError(f"{where}: multimodal_projector_bias false is not supported; the mlp projector has biases")
    layer = config.get("vision_feature_layer", -2)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise SpecError(f"{where}: vision_feature_layer must be one layer index (an int), got {layer!r}")
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "encoders": {"image": {"type": "hf-vision-anyres", "config": {
            "pretrained": pretrained, **pinned, "vision_feature_layer": layer,
            "feature_select_strategy": config.get("vision_feature_select_strategy", "default"),
        }}},
        "projectors": {"image": {"type": "anyres-mlp", "config": {
            "depth": 2, "activation": config.get("projector_hidden_act", "gelu"),
        }}},
        "backbone": {"type": "hf-causal-lm", "config": {"model_config": {
            "model_type": lm_type, **_text_config(text, _TEXT_DEFAULTS[lm_type], f"{where} text_config"),
        }}},
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
    }
    image_token = config.get("image_token_index", config.get("image_token_id"))
    if isinstance(image_token, bool) or not isinstance(image_token, int):
        raise SpecError(f"{where}: image_token_index must be the <image> token id (an int), got {image_token!r}")
    return Conversion("llava_next", spec, "llava-next", {"image": image_token})


def _text_config(text: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The language model's fields, each the checkpoint's value or the default; plain RoPE only."""
    fields = {key: text.get(key, default) for key, default in defaults.items()}
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    if not isinstance(rope, Mapping) or rope.get("rope_type", rope.get("type", "default")) != "default":
        raise SpecError(f"{where}: RoPE scaling {rope!r} is not supported; the llava_next family converts "
                        "language models with plain RoPE (rope_type 'default')")
    if "rope_theta" not in text and "rope_theta" in rope:  # transformers 5 saves it inside rope_parameters
        fields["rope_theta"] = rope["rope_theta"]
    if fields["num_key_value_heads"] is None:
        fields["num_key_value_heads"] = fields["num_attention_heads"]
    if fields["head_dim"] is None:
        fields["head_dim"] = fields["hidden_size"] // fields["num_attention_heads"]
    return fields


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
