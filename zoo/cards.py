"""Model cards: Hugging Face style Markdown with YAML front matter holding the spec, weights and results."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

from zoo.registry import UnknownComponentError, suggest
from zoo.spec import SpecError, _check_keys
from zoo.weights.hub import spec_hub_references
from zoo.weights.sources import WeightSource, weight_source

__all__ = ["ModelCard", "WeightSource", "card", "list_models", "parse_card", "render_card", "source_kinds"]

# Where a card's files can come from, in the order ``zoo list`` shows them (``WeightSource.kinds``).
SOURCE_KINDS = ("bundled", "package", "hub", "url", "weights-dir")

CARD_KEYS = ["name", "description", "license", "tasks", "spec", "weights", "eval_results", "source", "tags", "recipe"]

# The keys an ``eval_results`` entry may have and whether each holds text or a number.
RESULT_KEYS: dict[str, type] = {
    "task": str, "dataset": str, "metric": str, "value": float, "measured_by": str, "command": str, "sample": str,
    "std_3_seeds": float, "random_init_same_architecture": float, "random_init_std_3_seeds": float,
}
RESULT_REQUIRED = ["task", "dataset", "metric", "value", "measured_by"]
_QUOTE_HINT = ("an unquoted comma inside {...} ends a value and makes the text after it a key of its own, so "
               'write text that contains commas in quotes, e.g. task: "fine-tune, 10 epochs"')


@dataclass(frozen=True)
class ModelCard:
    """A parsed card. ``spec`` stays plain data until a model is built."""

    name: str
    description: str
    license: str
    spec: dict[str, Any]
    tasks: list[str] = field(default_factory=list)
    weights: list[WeightSource] = field(default_factory=list)
    eval_results: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    tags: list[str] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    path: str = ""


def source_kinds(model_card: ModelCard) -> list[str]:
    """Where a card's files come from, each kind once: its weight entries' sources, and ``hub`` when its
    spec's components fetch a Hub checkpoint, tokenizer or open_clip tag themselves. Empty for a card that
    needs no files (random init). Reads the card only: nothing is imported or fetched."""
    kinds = {kind for source in model_card.weights for kind in source.kinds}
    if spec_hub_references(model_card.spec):
        kinds.add("hub")
    return [kind for kind in SOURCE_KINDS if kind in kinds]


def split_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """Return (front matter mapping, Markdown body) of a card's text."""
    import yaml

    if not text.startswith("---\n"):
        raise SpecError(f"{where}: a model card must start with '---' YAML front matter")
    end = text.find("\n---", 4)
    if end < 0:
        raise SpecError(f"{where}: front matter is not closed by a '---' line")
    meta = yaml.safe_load(text[4:end]) or {}
    return meta, text[end + 4 :].lstrip("\n")


def parse_card(text: str, where: str) -> ModelCard:
    """Parse card text; unknown front-matter keys are errors naming the allowed ones."""
    meta, body = split_front_matter(text, where)
    _check_keys(meta, CARD_KEYS, f"{where} front matter", ["name", "description", "license", "spec"])
    weights = [weight_source(w, f"{where} weights[{i}]") for i, w in enumerate(meta.get("weights") or [])]
    return ModelCard(
        name=meta["name"],
        description=meta["description"],
        license=meta["license"],
        spec=meta["spec"],
        tasks=list(meta.get("tasks") or []),
        weights=weights,
        eval_results=_parse_eval_results(meta.get("eval_results"), where),
        source=meta.get("source", ""),
        tags=list(meta.get("tags") or []),
        recipe=dict(meta.get("recipe") or {}),
        body=body,
        path=where,
    )


def _parse_eval_results(entries: Any, where: str) -> list[dict[str, Any]]:
    """Check a card's ``eval_results`` strictly, because YAML silently turns an unquoted comma in a
    ``{...}`` entry into a junk key and ``zoo info`` would then show the result mangled."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise SpecError(f"{where}: eval_results must be a list of {{task: ..., metric: ..., value: ...}} entries")
    return [_eval_result(entry, f"{where} eval_results[{i}]") for i, entry in enumerate(entries)]


def _eval_result(entry: Any, where: str) -> dict[str, Any]:
    """One checked ``eval_results`` entry: known keys only, none empty, the required ones present, typed values."""
    if not isinstance(entry, Mapping):
        raise SpecError(f"{where} must be a mapping like {{task: ..., metric: ..., value: ...}}, got {entry!r}")
    if isinstance(entry.get("task"), str):
        where += f" (task {entry['task']!r})"
    for key, value in entry.items():
        if value is None:
            raise SpecError(f"{where}: key {key!r} has no value; {_QUOTE_HINT}")
        if key not in RESULT_KEYS:
            raise SpecError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(RESULT_KEYS)}. If it is part "
                            f"of a value: {_QUOTE_HINT}")
    for key in RESULT_REQUIRED:
        if key not in entry:
            raise SpecError(f"{where} is missing required key {key!r}; required keys: {', '.join(RESULT_REQUIRED)}")
    for key, value in entry.items():
        if RESULT_KEYS[key] is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SpecError(f"{where}: {key} must be a number written without quotes, got {value!r}")
        if RESULT_KEYS[key] is str and not isinstance(value, str):
            raise SpecError(f"{where}: {key} must be text, got {value!r}; write it in quotes")
    return dict(entry)


@lru_cache(maxsize=1)
def _card_files() -> dict[str, Any]:
    root = files("model_cards")
    return {p.name[:-3]: p for p in root.iterdir() if p.name.endswith(".md")}


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the models that have a card, optionally filtered by a glob ``pattern`` (e.g. ``'*gnn*'``)."""
    all_names = sorted(_card_files())
    return [n for n in all_names if pattern is None or fnmatch.fnmatch(n, pattern)]


@cache
def card(name: str) -> ModelCard:
    """The card of a named model; unknown names get the closest names suggested."""
    table = _card_files()
    if name not in table:
        raise UnknownComponentError(
            f"no model named {name!r}.{suggest(name, list(table))} Run `zoo list` to see all models."
        )
    parsed = parse_card(table[name].read_text(encoding="utf-8"), f"model_cards/{name}.md")
    if parsed.name != name:
        raise SpecError(f"model_cards/{name}.md declares name {parsed.name!r}; the file name must match")
    return parsed


def render_card(name: str, description: str, license: str, spec: dict[str, Any], body: str, **extra: Any) -> str:
    """Card text for ``save_pretrained``: front matter then a Markdown body."""
    import yaml

    meta = {"name": name, "description": description, "license": license, "spec": spec}
    meta.update({k: v for k, v in extra.items() if v})
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body
