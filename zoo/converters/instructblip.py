"""``InstructBlipForConditionalGeneration`` checkpoints with a Vicuna/Llama language model
(``Salesforce/instructblip-vicuna-7b``) onto a zoo ``MultimodalLM``.

InstructBLIP is BLIP-2 whose Q-Former also reads the instruction: the zoo model is the ``blip-2`` family's
(``zoo.converters.blip2``: an ``hf-vision`` tower after its ``post_layernorm``, a ``qformer`` projector in
transformers' layout, a language model) with three differences:

- the ``qformer`` has ``text_vocab_size``/``text_max_positions`` from ``qformer_config`` (``vocab_size``,
  ``max_position_embeddings``), so it embeds the prompt's text beside the queries; the query LayerNorm is
  ``qformer.embeddings.layernorm`` (shared by queries and text) and each layer keeps its text feed-forward
  (``intermediate``/``output``);
- the spec names the checkpoint's BERT tokenizer (``qformer_tokenizer/``) under ``projector_tokenizers.image``:
  the zoo processor tokenizes each image's prompt, ``<image>`` removed, with it, as ``InstructBlipProcessor``
  tokenizes its ``text`` into ``qformer_input_ids``; the user writes the prompt once;
- the language model is a Llama (Vicuna), its config spelled out as the ``llava`` family writes it.

As for BLIP-2, the queries go before the LM tokenizer's BOS (``bos_after_leading_placeholders``) and replace a run
of ``<image>`` tokens (``image_token_index``). Flan-T5 InstructBLIP checkpoints are refused for now.
:func:`instructblip_family` is the ``instructblip`` model family; :func:`instructblip_key_map` its key map.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zoo.converters.blip2 import blip2_key_map, qformer_image_parts, qformer_settings
from zoo.converters.families import Conversion
from zoo.converters.llava import LLAMA_DEFAULTS
from zoo.spec import SpecError

_QFORMER = "projectors.image.qformer"
_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (r"qformer\.embeddings\.layernorm\.(weight|bias)", rf"{_QFORMER}.norm.\1"),
        (r"qformer\.embeddings\.word_embeddings\.weight", f"{_QFORMER}.text_embeddings.weight"),
        (r"qformer\.embeddings\.position_embeddings\.weight", f"{_QFORMER}.text_positions.weight"),
        (r"qformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)",
         rf"{_QFORMER}.layers.\1.text_intermediate.0.\2"),
        (r"qformer\.encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", rf"{_QFORMER}.layers.\1.text_output.\2"),
        (r"qformer\.encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", rf"{_QFORMER}.layers.\1.text_norm.\2"),
    )
)


def instructblip_key_map(state_dict: Mapping[str, Any]) -> dict[str, str | None]:
    """``{checkpoint key: zoo model key}`` for every key of one InstructBLIP checkpoint file (or shard): the
    Q-Former's text parts here, everything else by the BLIP-2 rules; a key fitting neither is an error."""
    renames: dict[str, str | None] = {}
    for key in state_dict:
        target = next((pattern.sub(repl, key) for pattern, repl in _TEXT_RULES if pattern.fullmatch(key)), None)
        if target is not None:
            renames[key] = target
    rest = {key: value for key, value in state_dict.items() if key not in renames}
    try:
        renames.update(blip2_key_map(rest))
    except ValueError as err:
        raise ValueError(f"not an InstructBlipForConditionalGeneration checkpoint the zoo reads: {err}") from err
    return renames


# The Q-Former fields a spec reads (InstructBlipQFormerConfig's defaults), and the values the zoo Q-Former uses.
_QFORMER_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "cross_attention_frequency": 2, "hidden_dropout_prob": 0.1, "vocab_size": 30522, "max_position_embeddings": 512,
}
_QFORMER_FIXED: dict[str, Any] = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "position_embedding_type": "absolute"}
_QFORMER_TOKENIZER = "qformer_tokenizer"  # where InstructBlipProcessor.save_pretrained puts the BERT tokenizer


def _llama_backbone(text: Mapping[str, Any]) -> dict[str, Any]:
    llama = {key: text.get(key, default) for key, default in LLAMA_DEFAULTS.items()}
    if "rope_theta" not in text and isinstance(text.get("rope_parameters"), Mapping):  # as transformers 5 saves it
        llama["rope_theta"] = text["rope_parameters"].get("rope_theta", LLAMA_DEFAULTS["rope_theta"])
    if llama["num_key_value_heads"] is None:
        llama["num_key_value_heads"] = llama["num_attention_heads"]
    return {"type": "hf-causal-lm", "config": {"model_config": {"model_type": "llama", **llama}}}


def instructblip_family(config: Mapping[str, Any], pretrained: str, revision: str | None) -> Conversion:
    """The zoo spec of an ``InstructBlipForConditionalGeneration`` checkpoint with a Llama (Vicuna) language
    model; its weights load through :func:`instructblip_key_map`."""
    where = f"{pretrained} config.json"
    text = _mapping(config.get("text_config", {}), f"{where} text_config")
    if text.get("model_type") != "llama":
        raise SpecError(
            f"{where}: an InstructBLIP with a {text.get('model_type')!r} language model is not supported; the "
            "instructblip family converts Vicuna/Llama checkpoints (e.g. Salesforce/instructblip-vicuna-7b), not "
            "Flan-T5 ones yet"
        )
    q, queries, image_token = qformer_settings(config, where, _QFORMER_DEFAULTS, _QFORMER_FIXED, "an InstructBLIP")
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "bos_after_leading_placeholders": True,  # <image>x32, BOS, text: InstructBlipProcessor's layout
        "projector_tokenizers": {"image": {"path": pretrained, **pinned, "subfolder": _QFORMER_TOKENIZER}},
        **qformer_image_parts(pretrained, pinned, q, queries, text_vocab_size=q["vocab_size"],
                              text_max_positions=q["max_position_embeddings"]),
        "backbone": _llama_backbone(text),
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
    }
    return Conversion("instructblip", spec, "instructblip", {"image": image_token})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
