"""Card recipes: how a model that we trained was made, replayed by one command (``zoo recipe NAME``).

A card's ``recipe`` section names the task, the data (relative to a data root such as ``../shared/data``),
the stage and training settings, which named models start which parts (``init``), and which parameter
prefixes are written to the card's bundled weights file (``export``; the other parts come from their own
cards' sources). Running it trains with ``zoo.finetune`` and writes ``model_cards/weights/<name>.safetensors``;
the card's sha256 must then be updated to the printed one (loading checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.paths import confined
from zoo.io import atomic_write, sha256_file, tied_groups
from zoo.spec import SpecError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "model_cards" / "weights"


@dataclass(frozen=True)
class Recipe:
    """How a card's bundled weights were trained (every field is data from the card)."""

    task: str
    data: str
    stage: str
    export: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    init: dict[str, str] = field(default_factory=dict)
    validation_data: str | None = None
    task_overrides: dict[str, Any] = field(default_factory=dict)
    export_dtype: str | None = None

    @classmethod
    def from_card(cls, name: str) -> Recipe:
        from zoo.cards import card

        raw = card(name).recipe
        if not raw:
            raise SpecError(f"{name} has no recipe: it was not trained here (its weights come from its sources)")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise SpecError(f"{name} recipe: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        recipe = cls(**raw)
        recipe.check(name)
        return recipe

    def check(self, name: str) -> None:
        """Refuse what a card may not choose: a task that is not built in (a YAML path), a data path that
        leaves the data root (checked again against the real root when the recipe runs)."""
        from tasks.config import builtin_tasks

        if self.task not in builtin_tasks():
            raise SpecError(f"{name} recipe: task {self.task!r} is not a built-in task ({', '.join(builtin_tasks())})")
        for what, path in (("data", self.data), ("validation_data", self.validation_data)):
            if path is not None:
                confined(".", path, f"{name} recipe {what}")


def init_from(model: Any, path: str, name: str, weights_dir: str | Path | None = None) -> None:
    """Load a named model's weights into ``model``'s sub-module ``path``, strictly, through the same checked
    path as ``zoo.load``. ``name`` is a card (its encoder, for an encoder card) or ``card:sub.module`` for one
    part of it, e.g. ``scene-clip-tiny:towers.image`` (a trained CLIP image tower starting a VLM's encoder)."""
    from zoo.loading import load

    card_name, _, part = name.partition(":")
    source = load(card_name, weights_dir=weights_dir)
    source = _submodule(source, part, name) if part else getattr(source, "encoder", source)
    _submodule(model, path, "the model").load_state_dict(source.state_dict(), strict=True)


def _submodule(module: Any, path: str, owner: str) -> Any:
    """``module.get_submodule(path)``, with an error naming what ``path`` could have been."""
    try:
        return module.get_submodule(path)
    except AttributeError:
        parts = sorted(name for name, _ in module.named_modules() if name and name.count(".") < 2)
        raise SpecError(f"{owner} has no sub-module {path!r}; it has: {', '.join(parts)}") from None


def export_weights(model: Any, prefixes: list[str], target: Path, dtype: str | None = None) -> str:
    """Write the parameters and buffers under ``prefixes`` to ``target`` (atomically), floating ones cast to
    ``dtype`` if given (the card then declares it); returns its sha256."""
    import torch
    from safetensors.torch import save_file

    own = model.state_dict()
    exported = [key for key in own if any(key == p or key.startswith(p + ".") for p in prefixes)]
    # a tied tensor (lm_head = embed_tokens) is written once, under its first exported name: the model rebuilds
    # the tie, and loading accepts any one of its names (zoo.io.load_state_strict)
    repeats = {key for group in tied_groups(model) for key in [k for k in group if k in exported][1:]}
    state = {}
    for key in exported:
        if key in repeats:
            continue
        value = own[key].detach().cpu()
        state[key] = (value.to(getattr(torch, dtype)) if dtype and value.is_floating_point() else value).contiguous()
    if not state:
        raise SpecError(f"export prefixes {prefixes} match no weight of the model")
    atomic_write(target, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    return sha256_file(target)


def run_recipe(
    name: str, data_root: str | Path, output_dir: str | Path, weights_dir: str | Path | None = None, **overrides: Any
) -> list[tuple[Path, str]]:
    """Train card ``name`` from its recipe (``overrides`` replace training settings, e.g. ``max_steps`` for a
    quick try); write its bundled weights and assets (e.g. a template library); return each file with its
    sha256. ``weights_dir`` holds the starting models' weight files on an air-gapped machine (see ``zoo.load``)."""
    from zoo.assembly import build_model
    from zoo.cards import card
    from zoo.spec import spec_from_dict

    recipe = Recipe.from_card(name)
    model = build_model(spec_from_dict(card(name).spec), load_pretrained=False)
    for path, source in recipe.init.items():
        init_from(model, path, source, weights_dir)
    root = Path(data_root)
    data = confined(root, recipe.data, f"{name} recipe data")
    validation = confined(root, recipe.validation_data, f"{name} recipe validation_data") if recipe.validation_data else None
    settings = {**recipe.settings, **overrides}
    trainer = STAGE_TRAINERS.get(recipe.stage, _finetune)
    model = trainer(model, recipe, data, validation, settings, Path(output_dir))
    target = WEIGHTS_DIR / f"{name}.safetensors"
    written = [(target, export_weights(model, recipe.export, target, recipe.export_dtype))]
    for asset, content in getattr(model, "assets", dict)().items():
        path = confined(WEIGHTS_DIR, f"{name}.{asset}", f"{name} asset")
        atomic_write(path, lambda tmp, content=content: tmp.write_bytes(content))
        written.append((path, sha256_file(path)))
    return written


def _finetune(
    model: Any, recipe: Recipe, data: Path, validation: Path | None, settings: dict[str, Any], output_dir: Path
) -> Any:
    """The general recipe stages (align, instruct, full) through ``zoo.finetune`` on the recipe's task."""
    from tasks.config import load_task
    from zoo.training import finetune

    task = load_task(recipe.task, **recipe.task_overrides)
    return finetune(model, task, data, recipe.stage, output_dir, validation_data=validation, **settings).model


def _template_head(
    model: Any, recipe: Recipe, data: Path, validation: Path | None, settings: dict[str, Any], output_dir: Path
) -> Any:
    from zoo.training.templates import train_from_recipe

    return train_from_recipe(model, data, settings, output_dir, validation)


def _no_validation(recipe: Recipe, validation: Path | None) -> None:
    if validation is not None:
        raise SpecError(f"recipe stage {recipe.stage} takes no validation_data; remove it from the recipe")


def _regression(
    model: Any, recipe: Recipe, data: Path, validation: Path | None, settings: dict[str, Any], output_dir: Path
) -> Any:
    from tasks.config import load_task
    from zoo.training.regression import train_from_recipe

    _no_validation(recipe, validation)
    return train_from_recipe(model, load_task(recipe.task, **recipe.task_overrides), data, settings, output_dir)


def _codec_lm(
    model: Any, recipe: Recipe, data: Path, validation: Path | None, settings: dict[str, Any], output_dir: Path
) -> Any:
    from tasks.config import load_task
    from zoo.training.codec_lm import train_from_recipe

    _no_validation(recipe, validation)
    return train_from_recipe(model, load_task(recipe.task, **recipe.task_overrides), data, settings, output_dir)


# recipe stages with their own trainer; every other stage goes through zoo.finetune
STAGE_TRAINERS = {"template-head": _template_head, "regression": _regression, "codec-lm": _codec_lm}
