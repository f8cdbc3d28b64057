"""Model families: which zoo model a transformers checkpoint is, chosen by its ``config.json`` ``model_type``.

The registry kind ``family`` maps a ``model_type`` to a builder, ``builder(config, pretrained, revision) ->
Conversion``, that turns the checkpoint's config into a zoo spec and names the registered key map its weights
load through. The config is untrusted: a builder reads only the fields it knows, and ``model_type`` is looked up
in the table, never imported, so no field can name code. Adding a family is one registry entry and one builder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo import registry
from zoo.spec import SpecError

__all__ = ["Conversion", "FamilyBuilder", "convert_config", "supported_model_types"]


@dataclass(frozen=True)
class Conversion:
    """What a family makes of one checkpoint: the zoo ``spec`` (plain data), the registered ``key_map`` its
    safetensors load through, and the ``placeholder_ids`` (modality -> token id) the checkpoint was trained
    with, which the built model's tokenizer must give its placeholders."""

    family: str
    spec: dict[str, Any]
    key_map: str
    placeholder_ids: dict[str, int] = field(default_factory=dict)


FamilyBuilder = Callable[[Mapping[str, Any], str, "str | None"], Conversion]


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
