"""``Qwen2AudioForConditionalGeneration`` checkpoints (``Qwen/Qwen2-Audio-7B*``) onto a zoo ``MultimodalLM``.

The zoo model is a ``qwen2-audio`` audio encoder (transformers' ``Qwen2AudioEncoder``, kept as
``encoders.audio.model``, on the checkpoint's Whisper feature extractor), a ``linear`` projector
(``projectors.audio.proj``) and an ``hf-causal-lm`` Qwen2 (``language_model``, a ``Qwen2ForCausalLM``). Each
``<|AUDIO|>`` in a prompt becomes as many placeholder tokens as its clip gives (one per 40 ms of audio). The
checkpoint's keys come in two layouts, both accepted:

- as on the Hub (saved by transformers 4.x): ``audio_tower.*``, ``multi_modal_projector.linear.*``,
  ``language_model.model.*``, ``language_model.lm_head.*``;
- as transformers 5 holds them in memory: ``model.audio_tower.*``, ``model.multi_modal_projector.*``,
  ``model.language_model.*``, ``lm_head.*``.

Every key must match one rule; anything else is an error listing it. :func:`qwen2_audio_family` is the
``qwen2_audio`` model family: a checkpoint's config.json as a zoo spec (``zoo.load("hf:org/repo")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.converters.families import CAUSAL_LM_RULES, Conversion, rename_by_rules, rename_rules
from zoo.spec import SpecError

AUDIO_TOKEN = "<|AUDIO|>"

_RULES = rename_rules(
    (r"(?:model\.)?audio_tower\.(.+)", r"encoders.audio.model.\1"),
    (r"(?:model\.)?multi_modal_projector\.linear\.(weight|bias)", r"projectors.audio.proj.\1"),
    *CAUSAL_LM_RULES,
)


def qwen2_audio_key_map(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{checkpoint key: zoo MultimodalLM key}`` for every key of one Qwen2-Audio checkpoint file (or shard)."""
    return rename_by_rules(state_dict, _RULES, "Qwen2-Audio", "Qwen2AudioForConditionalGeneration checkpoint")


# The Qwen2 fields the spec writes out, with Qwen2Config's defaults: transformers saves only the values that
# differ from them, so a checkpoint's ``text_config`` may omit any of these.
_QWEN2_DEFAULTS: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "silu", "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "use_sliding_window": False,
    "sliding_window": 4096, "max_window_layers": 28,
}


def qwen2_audio_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of a ``Qwen2AudioForConditionalGeneration`` checkpoint, as the ``qwen2-audio-7b-instruct``
    card writes it: the checkpoint's audio tower and feature extractor, a ``linear`` projector, the Qwen2 config
    spelled out, the checkpoint's tokenizer with ``<|AUDIO|>`` as the placeholder; its weights load through
    :func:`qwen2_audio_key_map`."""
    where = f"{pretrained} config.json"
    text = _mapping(config.get("text_config", {}), f"{where} text_config")
    if text.get("model_type", "qwen2") != "qwen2":
        raise SpecError(f"{where}: a Qwen2-Audio with a {text['model_type']!r} language model is not supported; "
                        "the qwen2_audio family converts checkpoints whose language model is a Qwen2")
    audio = _mapping(config.get("audio_config", {}), f"{where} audio_config")
    if audio.get("model_type", "qwen2_audio_encoder") != "qwen2_audio_encoder":
        raise SpecError(f"{where}: audio_config model_type {audio['model_type']!r} is not supported; the "
                        "qwen2_audio family converts checkpoints whose audio tower is a qwen2_audio_encoder")
    qwen2 = {key: text.get(key, default) for key, default in _QWEN2_DEFAULTS.items()}
    if "rope_theta" not in text and isinstance(text.get("rope_parameters"), Mapping):  # as transformers 5 saves it
        qwen2["rope_theta"] = text["rope_parameters"].get("rope_theta", _QWEN2_DEFAULTS["rope_theta"])
    if qwen2["num_key_value_heads"] is None:
        qwen2["num_key_value_heads"] = qwen2["num_attention_heads"]
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "encoders": {"audio": {"type": "qwen2-audio", "config": {"pretrained": pretrained, **pinned}}},
        "projectors": {"audio": {"type": "linear", "config": {"bias": True}}},
        "backbone": {"type": "hf-causal-lm", "config": {"model_config": {"model_type": "qwen2", **qwen2}}},
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
        "placeholders": {"audio": AUDIO_TOKEN},
    }
    audio_token = config.get("audio_token_index", config.get("audio_token_id", 151646))
    if isinstance(audio_token, bool) or not isinstance(audio_token, int):
        raise SpecError(f"{where}: audio_token_index must be the {AUDIO_TOKEN} token id (an int), got {audio_token!r}")
    return Conversion("qwen2_audio", spec, "qwen2-audio", {"audio": audio_token})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
