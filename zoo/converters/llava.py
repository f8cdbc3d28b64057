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
half-loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (r"(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)", r"encoders.image.model.\1"),
        (r"(?:model\.)?multi_modal_projector\.linear_1\.(weight|bias)", r"projectors.image.layers.0.\1"),
        (r"(?:model\.)?multi_modal_projector\.linear_2\.(weight|bias)", r"projectors.image.layers.2.\1"),
        (r"language_model\.(model\..+|lm_head\..+)", r"language_model.\1"),
        (r"model\.language_model\.(.+)", r"language_model.model.\1"),
        (r"lm_head\.(.+)", r"language_model.lm_head.\1"),
    )
)


def llava_key_map(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{checkpoint key: zoo MultimodalLM key}`` for every key of one LLaVA checkpoint file (or shard)."""
    renames: dict[str, str] = {}
    unknown = []
    for key in state_dict:
        target = next((pattern.sub(repl, key) for pattern, repl in _RULES if pattern.fullmatch(key)), None)
        if target is None:
            unknown.append(key)
        else:
            renames[key] = target
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) fit no LLaVA rule (not a LlavaForConditionalGeneration checkpoint?): "
            f"{', '.join(sorted(unknown)[:10])}"
        )
    return renames
