"""Weight-space merging of a base model and its fine-tuned version, to trade task gain against forgetting.

``merge(base, finetuned, alpha)`` returns a new model whose every floating-point tensor is
``(1 - a) * base + a * finetuned``: ``a = 0`` is the base model (no forgetting, no gain), ``a = 1`` the
fine-tuned one. Heterogeneous model averaging (HMA) gives different parts of the model different ratios,
e.g. keep the lower LM layers close to the base model (general knowledge) and take the projector and the
upper layers from the fine-tuned model (task skills): ``layer_alphas`` maps parameter-name patterns to
ratios, and :func:`layer_schedule` builds a depth-wise schedule.

Patterns are shell-style globs matched with :func:`fnmatch.fnmatchcase` against the full state-dict key
(case-sensitive; ``*`` also crosses dots, so write ``layers.1.*``, not ``layers.1*``, which would also
match ``layers.10``). The first pattern that matches a key wins (mapping order); unmatched keys get
``alpha``. A pattern that matches no key is an error, so a typo cannot silently do nothing.

Tensors that are not floating point (integer or bool buffers such as BatchNorm's ``num_batches_tracked``)
cannot be averaged: they are taken from ``finetuned``, except where the key's ratio is exactly 0, where
they are taken from ``base`` — so the end points ``a = 0`` and ``a = 1`` give the inputs back bit for bit.

A model with LoRAMoE layers (``zoo finetune --set adapter=loramoe``) is first folded into plain weights
(:func:`zoo.training.loramoe.fold_loramoe`), which is exact only where its routing does not depend on the input
(one expert, or dense routing over identical router rows); a model whose router mixes experts per token is
refused with :class:`MergeError`, as no plain model computes it. O-LoRA task adapters
(:func:`zoo.training.olora.fold_olora`) always fold exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from torch import nn

DEFAULT_LAYER_PREFIX = "language_model.model.layers"


class MergeError(ValueError):
    """Two models that cannot be merged, or a ratio or pattern that cannot be used; the message says why."""


def layer_schedule(
    num_layers: int, first: float, last: float, prefix: str = DEFAULT_LAYER_PREFIX
) -> dict[str, float]:
    """Depth-wise HMA ratios ``{f"{prefix}.{i}.*": ratio_i}``, linear from ``first`` (layer 0) to ``last``.

    An increasing schedule (e.g. ``first=0.2, last=0.8``) keeps the lower layers, which hold more general
    knowledge, closer to the base model. Combine it with other patterns by merging dicts, e.g.
    ``{"projectors.*": 1.0, **layer_schedule(32, 0.2, 0.8)}``.
    """
    if num_layers < 1:
        raise MergeError(f"layer_schedule needs num_layers >= 1, got {num_layers}")
    for ratio in (first, last):
        _check_ratio(ratio, "layer_schedule ratio")
    step = (last - first) / (num_layers - 1) if num_layers > 1 else 0.0
    return {f"{prefix}.{i}.*": first + step * i for i in range(num_layers)}


def resolve_ratios(
    keys: Iterable[str], alpha: float, layer_alphas: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The ratio (weight of ``finetuned``) of each key: the first matching ``layer_alphas`` pattern, else ``alpha``."""
    _check_ratio(alpha, "alpha")
    patterns = dict(layer_alphas or {})
    for pattern, ratio in patterns.items():
        _check_ratio(ratio, f"the ratio of pattern {pattern!r}")
    keys = list(keys)
    ratios: dict[str, float] = {}
    used: set[str] = set()
    for key in keys:
        pattern = next((p for p in patterns if fnmatchcase(key, p)), None)
        if pattern is not None:
            used.add(pattern)
        ratios[key] = float(patterns[pattern]) if pattern is not None else float(alpha)
    unused = [p for p in patterns if p not in used]
    if unused:
        examples = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
        raise MergeError(
            f"layer_alphas pattern(s) {', '.join(map(repr, unused))} match no parameter name; patterns are "
            f"fnmatch globs over full state-dict keys (e.g. {examples}) — fix them or drop them"
        )
    return ratios


def describe_ratios(ratios: Mapping[str, float]) -> str:
    """``"40 tensors at 0.5, 9 at 1"``: how many tensors got each ratio, most common first."""
    counts: dict[float, int] = {}
    for ratio in ratios.values():
        counts[ratio] = counts.get(ratio, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{n} {'tensors ' if i == 0 else ''}at {ratio:g}" for i, (ratio, n) in enumerate(ordered))


def merge(
    base: nn.Module | str | Path,
    finetuned: nn.Module | str | Path,
    alpha: float,
    *,
    layer_alphas: Mapping[str, float] | None = None,
) -> nn.Module:
    """A new model ``(1 - a) * base + a * finetuned`` per tensor, ``a`` from ``alpha`` or ``layer_alphas``.

    ``base`` and ``finetuned`` are models or anything ``zoo.load`` takes (name, directory, ``hf-hub:``);
    they must share their architecture: the same spec (its ``seed`` aside) and exactly the same state-dict
    keys, shapes and dtypes. The inputs are not changed. Blending is computed in float32 and cast back;
    tied weights are one tensor and take the ratio of their first key. The result carries a card that
    records the recipe (``save_pretrained`` writes it).
    """
    base_model, loaded_base = _folded(*_as_model(base), "base")
    finetuned_model, _ = _folded(*_as_model(finetuned), "finetuned")
    _check_same_spec(base_model, finetuned_model)
    base_state, finetuned_state = base_model.state_dict(), finetuned_model.state_dict()
    _check_same_tensors(base_state, finetuned_state)
    ratios = resolve_ratios(base_state, alpha, layer_alphas)

    merged = base_model if loaded_base else copy.deepcopy(base_model)
    merged_state = merged.state_dict()
    written: set[tuple[int, tuple[int, ...]]] = set()
    with torch.no_grad():
        for key, ratio in ratios.items():
            target = merged_state[key]
            storage = (target.data_ptr(), tuple(target.shape))
            if target.numel() and storage in written:
                continue  # a tied alias of a tensor already blended (and, if merged in place, already changed)
            written.add(storage)
            target.copy_(_blend(base_state[key], finetuned_state[key], ratio))
    merged.card_meta = _card_meta(base_model, finetuned_model, alpha, layer_alphas, ratios)
    return merged


def _as_model(model_or_name: nn.Module | str | Path) -> tuple[nn.Module, bool]:
    """The model, and whether it was loaded here (so it may be changed in place)."""
    if isinstance(model_or_name, nn.Module):
        return model_or_name, False
    from zoo.loading import load

    return load(model_or_name), True


def _folded(model: nn.Module, loaded: bool, which: str) -> tuple[nn.Module, bool]:
    """The model with its LoRAMoE and O-LoRA layers folded into plain weights (a copy, unless it was loaded here)."""
    from zoo.training.loramoe import LoRAMoEFoldError, fold_loramoe, loramoe_layers
    from zoo.training.olora import fold_olora, olora_layers

    if not loramoe_layers(model) and not olora_layers(model):
        return model, loaded
    folded = model if loaded else copy.deepcopy(model)
    try:
        fold_loramoe(folded)
    except LoRAMoEFoldError as err:
        raise MergeError(f"cannot merge {which}: {err}") from err
    fold_olora(folded)
    return folded, True


def _blend(base: torch.Tensor, finetuned: torch.Tensor, ratio: float) -> torch.Tensor:
    if ratio == 0.0:
        return base
    if ratio == 1.0 or not base.is_floating_point():
        return finetuned
    return torch.lerp(base.float(), finetuned.to(base.device).float(), ratio).to(base.dtype)


def _check_ratio(ratio: float, what: str) -> None:
    if not 0.0 <= float(ratio) <= 1.0:
        raise MergeError(f"{what} must be in [0, 1] (0 = base, 1 = finetuned), got {ratio}")


def _check_same_spec(base: nn.Module, finetuned: nn.Module) -> None:
    base_spec, finetuned_spec = getattr(base, "spec", None), getattr(finetuned, "spec", None)
    if base_spec is None or finetuned_spec is None:
        return
    from zoo.spec import spec_to_dict

    a, b = spec_to_dict(base_spec), spec_to_dict(finetuned_spec)
    differing = sorted(k for k in set(a) | set(b) if k != "seed" and a.get(k) != b.get(k))
    if differing:
        raise MergeError(
            f"the two models have different specs ({', '.join(differing)} differ); only a model and a "
            "fine-tuned copy of it can be merged — check that FINETUNED was trained from BASE"
        )


def _check_same_tensors(base: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor]) -> None:
    problems = [f"{k} only in base" for k in sorted(set(base) - set(finetuned))]
    problems += [f"{k} only in finetuned" for k in sorted(set(finetuned) - set(base))]
    for key in sorted(set(base) & set(finetuned)):
        a, b = base[key], finetuned[key]
        if a.shape != b.shape:
            problems.append(f"{key} has shape {tuple(a.shape)} in base, {tuple(b.shape)} in finetuned")
        elif a.dtype != b.dtype:
            problems.append(f"{key} is {a.dtype} in base, {b.dtype} in finetuned")
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... ({len(problems) - 20} more)" if len(problems) > 20 else "")
        raise MergeError(
            f"the two models do not have the same architecture ({len(problems)} mismatch(es): {shown}); "
            "merge a model with a fine-tuned copy of itself, loaded with the same dtype"
        )


def _card_meta(
    base: nn.Module,
    finetuned: nn.Module,
    alpha: float,
    layer_alphas: Mapping[str, float] | None,
    ratios: Mapping[str, float],
) -> dict[str, Any]:
    """A card for the merged model: not the base's (its name and results would be wrong), but the recipe."""
    base_meta, finetuned_meta = getattr(base, "card_meta", {}), getattr(finetuned, "card_meta", {})
    base_name = base_meta.get("name", "an unnamed model")
    finetuned_name = finetuned_meta.get("name", "an unnamed model")
    lines = [
        "## Merge",
        "",
        f"Weight-space average `(1 - a) * base + a * finetuned` of base `{base_name}` and fine-tuned "
        f"`{finetuned_name}`, with `a = {alpha:g}` by default.",
    ]
    if layer_alphas:
        lines += ["", "Per-parameter ratios (first matching glob wins):", ""]
        lines += [f"- `{pattern}`: {ratio:g}" for pattern, ratio in layer_alphas.items()]
    lines += ["", f"Tensors: {describe_ratios(ratios)}.", ""]
    meta: dict[str, Any] = {
        "description": f"merge of {base_name} and {finetuned_name} (alpha {alpha:g})",
        "body": "\n".join(lines),
    }
    if base_meta.get("license") and base_meta.get("license") == finetuned_meta.get("license"):
        meta["license"] = base_meta["license"]
    return meta
