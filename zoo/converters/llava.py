"""``LlavaForConditionalGeneration`` checkpoints (``llava-hf/*``) onto a zoo ``MultimodalLM``.

The zoo model for LLaVA-1.5 is an ``hf-vision`` image encoder (a transformers ``CLIPVisionModel`` kept as
``encoders.image.model``), an ``mlp`` projector (``projectors.image.layers.0`` / ``.2``, GELU between) and an
``hf-causal-lm`` Llama (``language_model``, a ``LlamaForCausalLM``). The checkpoint's keys come in two
layouts, both accepted:

- as on the Hub (saved by transformers 4.x): ``vision_tower.vision_model.*``, ``multi_modal_projector.*``,
  ``language_model.model.*``, ``language_model.lm_head.*``;
- as transformers 5 holds them in memory: ``model.vision_tower.*``, ``model.multi_modal_projector.*``,
  ``model.language_model.*``, ``lm_head.*`` (its ``save_pretrained`` writes the Hub layout back, without the
  ``vision_model.`` level).

Every key must match one rule; anything else is an error listing it, so a different architecture never
half-loads. :func:`llava_family` is the ``llava`` model family: a checkpoint's config.json as a zoo spec
(``zoo.load("hf:org/repo")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.converters.families import CAUSAL_LM_RULES, Conversion, rename_by_rules, rename_rules
from zoo.spec import SpecError

_RULES = rename_rules(
    (r"(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)", r"encoders.image.model.\1"),
    (r"(?:model\.)?multi_modal_projector\.linear_1\.(weight|bias)", r"projectors.image.layers.0.\1"),
    (r"(?:model\.)?multi_modal_projector\.linear_2\.(weight|bias)", r"projectors.image.layers.2.\1"),
    *CAUSAL_LM_RULES,
)


def llava_key_map(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{checkpoint key: zoo MultimodalLM key}`` for every key of one LLaVA checkpoint file (or shard)."""
    return rename_by_rules(state_dict, _RULES, "LLaVA", "LlavaForConditionalGeneration checkpoint")


# The Llama fields a llava-1.5 spec writes out, with LlamaConfig's defaults: transformers saves only the values
# that differ from them, so a checkpoint's ``text_config`` may omit any of these.
LLAMA_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "silu", "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def llava_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``LlavaForConditionalGeneration`` checkpoint (LLaVA-1.5 with a Llama LM), as the
    ``llava-1.5-7b`` card writes it: the checkpoint's CLIP tower, ``mlp`` depth 2, the Llama config spelled
    out, the checkpoint's tokenizer; its weights load through :func:`llava_key_map`."""
    where = f"{pretrained} config.json"
    text = _mapping(config.get("text_config", {}), f"{where} text_config")
    if text.get("model_type", "llama") != "llama":
        raise SpecError(f"{where}: a LLaVA with a {text['model_type']!r} language model is not supported; the llava "
                        "family converts LLaVA-1.5 checkpoints, whose language model is a Llama")
    if config.get("multimodal_projector_bias", True) is not True:
        raise SpecError(f"{where}: multimodal_projector_bias false is not supported; the mlp projector has biases")
    layer = config.get("vision_feature_layer", -2)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise SpecError(f"{where}: vision_feature_layer must be one layer index (an int), got {layer!r}")
    llama = {key: text.get(key, default) for key, default in LLAMA_DEFAULTS.items()}
    if "rope_theta" not in text and isinstance(text.get("rope_parameters"), Mapping):  # as transformers 5 saves it
        llama["rope_theta"] = text["rope_parameters"].get("rope_theta", LLAMA_DEFAULTS["rope_theta"])
    if llama["num_key_value_heads"] is None:
        llama["num_key_value_heads"] = llama["num_attention_heads"]
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "encoders": {"image": {"type": "hf-vision", "config": {
            "pretrained": pretrained, **pinned, "vision_feature_layer": layer,
            "feature_select_strategy": config.get("vision_feature_select_strategy", "default"),
        }}},
        "projectors": {"image": {"type": "mlp", "config": {
            "depth": 2, "activation": config.get("projector_hidden_act", "gelu"),
        }}},
        "backbone": {"type": "hf-causal-lm", "config": {"model_config": {"model_type": "llama", **llama}}},
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
    }
    image_token = config.get("image_token_index", config.get("image_token_id"))
    if isinstance(image_token, bool) or not isinstance(image_token, int):
        raise SpecError(f"{where}: image_token_index must be the <image> token id (an int), got {image_token!r}")
    return Conversion("llava", spec, "llava", {"image": image_token})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
