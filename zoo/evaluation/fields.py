"""Row checks: the fields each task kind needs, and their types. A row that cannot be evaluated fails here with
its reason (stage ``fields``) before any model sees it, so it neither aborts the run nor, say, turns a ``null``
label into a class called "None". The task's ``item_checks`` (an audio clip's rate and length) are here too, applied
by the runners where an item becomes model input, so a refused item fails its row at the input stage."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from string import Formatter
from typing import Any

from tasks.config import TaskConfig
from tasks.data.manifest import Row
from tasks.data.text import finite_number

# What an item of each modality must be when it comes from a data file.
ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "image": (str,),
    "smiles": (str,),
    "molecule_graph": (str,),
    "audio": (str, dict),
    "audio_codec": (list,),
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _present(row: Row, column: str, role: str) -> Any:
    if column not in row.fields:
        raise ValueError(f"row has no {column!r} field ({role}); add it to the row")
    value = row.fields[column]
    if value is None:
        raise ValueError(f"{column!r} is null; it must hold {role}")
    return value


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (not a bool) within float range, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return None


def _string(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {_kind(value)}")
    if not value.strip():
        raise ValueError(f"{what} is empty")


def _strings(value: Any, what: str, at_least: int = 1, single: bool = True) -> None:
    """A non-empty string (if ``single``) or a list of at least ``at_least`` non-empty strings."""
    if single and isinstance(value, str):
        _string(value, what)
        return
    if not isinstance(value, list):
        allowed = "a string or a list of strings" if single else "a list of strings"
        raise ValueError(f"{what} must be {allowed}, got {_kind(value)}")
    if len(value) < at_least:
        raise ValueError(f"{what} lists {len(value)} entries; give at least {at_least}")
    for k, entry in enumerate(value):
        _string(entry, f"{what}[{k}]")


def _box(value: Any, what: str) -> None:
    numbers = [_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != 4 or not all(n is not None and math.isfinite(n) for n in numbers):
        raise ValueError(f"{what} must be a box [x1, y1, x2, y2] of four finite numbers, got {_kind(value)}")


def _finite_number(value: Any, what: str) -> None:
    if finite_number(value) is None:
        raise ValueError(f"{what} must be a finite number, got {_kind(value)}")


# The reference each generation metric scores against (``tasks.metrics`` would raise on anything else).
REFERENCE_CHECKS: dict[str, Callable[[Any, str], None]] = {
    "vqa": lambda v, what: _strings(v, what, at_least=2, single=False),
    "exact_match": _strings,
    "captioning": _strings,
    "reaction_topk": _string,
    "molecule_generation": _string,
    "grounding": _box,
    "regression": _finite_number,
}


def _item(task: TaskConfig, row: Row) -> None:
    column = task.column("item")
    value = _present(row, column, f"the {task.modality} item")
    allowed = ITEM_TYPES.get(task.modality or "", (object,))
    if not isinstance(value, allowed):
        names = " or ".join("a file path (string)" if t is str else f"a {t.__name__}" for t in allowed)
        raise ValueError(f"{column!r} must be {names} for a {task.modality} item, got {_kind(value)}")


def _audio_limits(item: Any, sample_rate: float | None = None, max_seconds: float | None = None) -> None:
    """Refuse a clip whose native rate is not ``sample_rate`` or that lasts over ``max_seconds`` (a file's
    header is enough), where the encoder would otherwise resample or cut it without a word."""
    from encoders.audio.io import audio_length
    from encoders.base import InvalidInputError

    where = f"audio ({item})" if isinstance(item, str) else "audio"
    rate, samples = audio_length(item)
    if sample_rate is not None and rate != sample_rate:
        raise InvalidInputError(
            f"{where}: sample rate {rate} Hz, but the task takes {sample_rate:g} Hz (item_checks.sample_rate); "
            "resample the clip, or --set item_checks.sample_rate=null to let the encoder resample it"
        )
    if max_seconds is not None and samples > max_seconds * rate:
        raise InvalidInputError(
            f"{where}: {samples / rate:.2f} s long, over the task's {max_seconds:g} s (item_checks.max_seconds); "
            "trim the clip, or raise the limit with --set item_checks.max_seconds=SECONDS"
        )


# How each modality's item_checks are applied (tasks.config.ITEM_CHECKS names the keys).
ITEM_LIMITS: dict[str, Callable[..., None]] = {"audio": _audio_limits}


def item_checker(task: TaskConfig) -> Callable[[Any], Any]:
    """A function that returns an item meeting the task's ``item_checks`` and raises, naming the item, for one
    that does not; runners call it where the item is turned into model input, so a refusal fails its row."""
    limits = {key: value for key, value in task.item_checks.items() if value is not None}
    if not limits:
        return lambda item: item
    check = ITEM_LIMITS[task.modality or ""]

    def checked(item: Any) -> Any:
        check(item, **limits)
        return item

    return checked


def template_fields(template: str) -> set[str]:
    """The row fields a prompt template reads (``{question}``, ``{a.b}`` -> ``a``), without ``placeholder``."""
    names = {name.split(".")[0].split("[")[0] for _, name, _, _ in Formatter().parse(template) if name}
    return names - {"placeholder"}


def _prompt(task: TaskConfig, row: Row) -> None:
    for name in sorted(template_fields(task.prompt_template)):
        _present(row, name, "a field of the prompt template")


def _generate(task: TaskConfig, row: Row) -> None:
    _prompt(task, row)
    column = task.column("reference")
    value = _present(row, column, "the reference answer")
    check = REFERENCE_CHECKS.get(task.metric)
    if check is not None:
        check(value, repr(column))


def _predict(task: TaskConfig, row: Row) -> None:
    item = _present(row, task.column("item"), "the input SMILES (a molecule or a reaction)")
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"{task.column('item')!r} must be a non-empty SMILES string, got {_kind(item)}")
    column = task.column("reference")
    check = REFERENCE_CHECKS.get(task.metric)
    value = _present(row, column, "the reference answer")
    if check is not None:
        check(value, repr(column))
    if "reaction_class" in task.fields:
        given = _present(row, task.fields["reaction_class"], "the reaction class the task conditions on")
        if isinstance(given, bool) or not isinstance(given, int):
            raise ValueError(f"{task.fields['reaction_class']!r} must be an integer reaction class, got {_kind(given)}")


def _multiple_choice(task: TaskConfig, row: Row) -> None:
    _prompt(task, row)
    column = task.column("options")
    options = _present(row, column, "the answer options")
    if not isinstance(options, list) or len(options) < 2:
        raise ValueError(f"{column!r} must be a list of at least two options, got {_kind(options)}")
    for k, option in enumerate(options):
        if isinstance(option, bool) or not isinstance(option, (str, int, float)):
            raise ValueError(f"{column!r}[{k}] must be a string or a number, got {_kind(option)}")
    answer_column = task.column("answer")
    answer = _present(row, answer_column, "the index of the right option")
    if isinstance(answer, str) and answer.strip().isascii() and answer.strip().isdigit():
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
        raise ValueError(f"{answer_column!r} must be the index of the right option, 0..{len(options) - 1}, got {_kind(answer)}")


def _retrieval(task: TaskConfig, row: Row) -> None:
    column = task.column("reference")
    _strings(_present(row, column, "the item's captions"), repr(column))


def _zero_shot(task: TaskConfig, row: Row) -> None:
    column = task.column("label")
    label = _present(row, column, "the class label")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
        raise ValueError(f"{column!r} must be a class name (a non-empty string or an integer), got {_kind(label)}")
    if task.class_names and str(label) not in task.class_names:
        raise ValueError(f"label {str(label)!r} is not one of the task's class_names ({', '.join(task.class_names)})")


def probe_label(value: Any, column: str) -> float:
    """A linear-probe label cell as 0.0 or 1.0, NaN when missing (empty or null); anything else is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    number = _number(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is not None and math.isnan(number):
        return math.nan
    if number not in (0.0, 1.0):
        raise ValueError(f"{column!r} holds {_kind(value)}; a label must be 0, 1 or empty (missing)")
    return number


def probe_label_columns(task: TaskConfig, first: Row) -> list[str]:
    """``metric_options.label_columns``, else every column of ``first`` but the item and the id."""
    named = task.metric_options.get("label_columns")
    return list(named) if named else [c for c in first.fields if c not in (task.column("item"), task.column("id"))]


def _linear_probe(task: TaskConfig, row: Row) -> None:
    for column in probe_label_columns(task, row):
        probe_label(row.fields.get(column), column)


def scored_reference(task: TaskConfig, row: Row) -> Any:
    """What a row's answer is scored against: a ``property`` task's labels (one per target, NaN = missing),
    else the row's ``reference`` column."""
    if task.kind == "property":
        from tasks.data.properties import property_labels

        return property_labels(row.fields, task.targets, task.target_type, task.class_names)
    return row.fields[task.column("reference")]


def _property(task: TaskConfig, row: Row) -> None:
    scored_reference(task, row)


KIND_CHECKS: dict[str, Callable[[TaskConfig, Row], None]] = {
    "generate": _generate,
    "predict": _predict,
    "regress": _predict,
    "property": _property,
    "multiple-choice": _multiple_choice,
    "retrieval": _retrieval,
    "zero-shot-classification": _zero_shot,
    "linear-probe": _linear_probe,
}


def check_rows(task: TaskConfig, rows: Sequence[Row]) -> dict[int, str]:
    """``{row index: why}`` for each readable row that ``task`` cannot evaluate (a missing or ill-typed field)."""
    problems = {}
    for row in rows:
        if not row.ok:
            continue
        try:
            if task.modality:
                _item(task, row)
            elif "item" in task.fields:  # a text-only task's input: a non-empty string
                _string(_present(row, task.column("item"), "the text input"), repr(task.column("item")))
            KIND_CHECKS[task.kind](task, row)
        except ValueError as err:
            problems[row.index] = str(err)
    return problems
