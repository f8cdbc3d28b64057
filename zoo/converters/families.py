"""Model families: which zoo model a transformers checkpoint is, chosen by its ``config.json`` ``model_type``.

The registry kind ``family`` maps a ``model_type`` to a builder, ``builder(config, pretrained, revision) ->
Conversion``, that turns the checkpoint's config into a zoo spec and names the registered key map its weights
load through. The config is untrusted: a builder reads only the fields it knows, and ``model_type`` is looked up
in the table, never imported, so no field can name code. Adding a family is one registry entry and one builder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo import registry
from zoo.spec import SpecError

__all__ = ["CAUSAL_LM_RULES", "Conversion", "FamilyBuilder", "RenameRules", "convert_config", "rename_by_rules",
           "rename_rules", "supported_model_types"]


@dataclass(frozen=True)
class Conversion:
    """What a family makes of one checkpoint: the zoo ``spec`` (plain data), the registered ``key_map`` its
    safetensors load through, the ``placeholder_ids`` (modality -> token id) the checkpoint was trained
    with, which the built model's tokenizer must give its placeholders, and the zoo keys a checkpoint of the
    family may lack (``zero_when_absent``), which then hold zeros as the reference class leaves them."""

    family: str
    spec: dict[str, Any]
    key_map: str
    placeholder_ids: dict[str, int] = field(default_factory=dict)
    zero_when_absent: tuple[str, ...] = ()


FamilyBuilder = Callable[[Mapping[str, Any], str, "str | None"], Conversion]


RenameRules = tuple[tuple[re.Pattern[str], str], ...]

# A causal LM inside a transformers multimodal checkpoint, as transformers 4 saved it (``language_model.model.*``,
# ``language_model.lm_head.*``) or as transformers 5 holds it (``model.language_model.*``, ``lm_head.*``).
CAUSAL_LM_RULES: tuple[tuple[str, str], ...] = (
    (r"language_model\.(model\..+|lm_head\..+)", r"language_model.\1"),
    (r"model\.language_model\.(.+)", r"language_model.model.\1"),
    (r"lm_head\.(.+)", r"language_model.lm_head.\1"),
)


def rename_rules(*rules: tuple[str, str]) -> RenameRules:
    """``(pattern, replacement)`` pairs compiled: a checkpoint key that fully matches ``pattern`` becomes
    ``pattern.sub(replacement, key)``; the first matching rule wins."""
    return tuple((re.compile(pattern), target) for pattern, target in rules)


def rename_by_rules(keys: Iterable[str], rules: RenameRules, family: str, checkpoint: str) -> dict[str, str]:
    """``{checkpoint key: zoo model key}`` for every key; a key that fits no rule is an error listing the first
    ten, so a checkpoint of another architecture never half-loads (``family`` and ``checkpoint`` name what was
    expected in the message)."""
    renames: dict[str, str] = {}
    unknown = []
    for key in keys:
        target = next((pattern.sub(repl, key) for pattern, repl in rules if pattern.fullmatch(key)), None)
        if target is None:
            unknown.append(key)
        else:
            renames[key] = target
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) fit no {family} rule (not a {checkpoint}?): {', '.join(sorted(unknown)[:10])}"
        )
    return renames


def text_to_text_key_map(
    state_dict: Mapping[str, Any], keys: re.Pattern[str], tied: tuple[str, ...], family: str, architecture: str
) -> dict[str, str | None]:
    """``{checkpoint key: language_model.<key>, or None for a dropped copy of the tied embeddings}`` for every key
    of a text-only encoder–decoder checkpoint (T5, BART), whose keys all match ``keys``. Of the names of its one
    tied embedding matrix (``tied``, in order) the first present is kept and a copy equal to it is dropped (the
    built model holds the tie); a copy that differs is kept, which strict loading then refuses by name."""
    import torch

    unknown = sorted(key for key in state_dict if not keys.fullmatch(key))
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) fit no {family} rule (not a {architecture} checkpoint?): "
                         f"{', '.join(unknown[:10])}")
    kept = next((state_dict[key] for key in tied if isinstance(state_dict.get(key), torch.Tensor)), None)
    return {
        key: None if key in tied and state_dict[key] is not kept and torch.equal(state_dict[key], kept)
        else f"language_model.{key}"
        for key in state_dict
    }


def check_text_to_text_architectures(config: Mapping[str, Any], accepted: tuple[str, ...], model: str,
                                     family: str, where: str) -> None:
    """Refuse a checkpoint whose config.json ``architectures`` names none of ``accepted`` (a missing list counts
    as the first): it is not an encoder–decoder that writes text."""
    architectures = config.get("architectures") or list(accepted[:1])
    if not isinstance(architectures, list) or not set(architectures) & set(accepted):
        raise SpecError(f"{where}: architectures {architectures!r} is not a {model} with its LM head; the {family} "
                        f"family converts {' or '.join(accepted)} checkpoints (an encoder-decoder that writes text)")


def text_to_text_spec(model_config: Mapping[str, Any], pretrained: str, revision: str | None,
                      generation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The zoo spec of a text-only encoder–decoder checkpoint: no modality encoders, its transformers config
    spelled out as ``model_config``, its own tokenizer, and its generation defaults when it has any."""
    pinned = {"revision": revision} if revision else {}
    spec = {
        "type": "multimodal-lm",
        "seed": 0,
        "encoders": {},
        "projectors": {},
        "backbone": {"type": "hf-seq2seq-lm", "config": {"model_config": dict(model_config)}},
        "tokenizer": {"type": "pretrained", "path": pretrained, **pinned},
    }
    return {**spec, "generation": dict(generation)} if generation is not None else spec


def supported_model_types() -> list[str]:
    """The ``model_type`` values that ``hf:`` checkpoints may have (the registry's ``family`` names)."""
    return registry.names("family")


def convert_config(config: Mapping[str, Any], pretrained: str, revision: str | None, where: str) -> Conversion:
    """The :class:`Conversion` of a checkpoint whose ``config.json`` is ``config``; ``pretrained`` (a Hub id or
    a directory) and ``revision`` are where the spec's components read the checkpoint's own files."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in supported_model_types():
        raise SpecError(
            f"{where} config.json has model_type {model_type!r}, which no zoo model family converts; supported "
            f"model types: {', '.join(supported_model_types())}. Load another checkpoint of one of these, or add a "
            "family: a builder function and a registry entry of kind 'family' (zoo/converters/families.py)"
        )
    builder: FamilyBuilder = registry.resolve("family", model_type)
    return builder(config, pretrained, revision)
