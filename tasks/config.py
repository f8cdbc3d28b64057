"""Task definitions as YAML data, with ``include:`` inheritance (a child overrides its parent's keys).

A task says how rows are read (``reader``, ``fields``), how the model is asked (``kind``, ``prompt_template``,
``generation``) and how answers are scored (``metric``). Built-in tasks live in ``tasks/configs/``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from string import Formatter
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"
KINDS: tuple[str, ...] = (
    "generate", "predict", "regress", "property", "multiple-choice", "retrieval", "zero-shot-classification",
    "linear-probe",
)
# item_checks keys per modality: limits an item must meet before the model sees it, else its row fails
ITEM_CHECKS: dict[str, tuple[str, ...]] = {"audio": ("sample_rate", "max_seconds")}
# kinds whose model output is an answer per row (text, a ranked list, values), scored by a metric from tasks.metrics
ANSWER_KINDS: tuple[str, ...] = ("generate", "predict", "regress", "property")


class TaskConfigError(ValueError):
    """A task YAML that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class TaskConfig:
    """One evaluation task.

    fields: role -> row column. Roles: ``id``, ``item`` (the modality input), ``prompt``, ``reference``,
            ``options`` (multiple choice), ``answer`` (index of the right option), ``aspect``, ``label``.
    row_range: ``[start, end]`` fractions of the data file's rows that the task scores, for a published
            fixed split inside one file (Yield-BERT's Suzuki–Miyaura test set is the last 30%: ``[0.7, 1.0]``);
            row ``i`` of ``n`` is in it when ``floor(start * n) <= i < floor(end * n)``, in decimal arithmetic.
    split: a train/valid/test split computed from the file (``{method: scaffold|random, fractions, seed, part}``,
            see :mod:`tasks.data.splits`); evaluation reads ``part`` (test by default), fine-tuning trains on the
            train part and selects on the valid part.
    targets, target_type: a ``property`` task's label columns and their type (``binary``: 0/1, each column a
            task with NaN-masked missing labels; ``regression``; ``multiclass``: one column of ``class_names``).
    item_checks: limits each item must meet (:data:`ITEM_CHECKS`; audio: ``sample_rate`` in Hz, ``max_seconds``),
            so a clip at another rate or too long fails its row instead of being silently resampled or cut.
    """

    name: str
    kind: str
    metric: str
    description: str = ""
    modality: str | None = None
    reader: str = "jsonl"
    fields: dict[str, str] = field(default_factory=dict)
    prompt_template: str = "{prompt}"
    generation: dict[str, Any] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    class_templates: list[str] = field(default_factory=lambda: ["{}"])
    row_range: list[float] | None = None
    split: dict[str, Any] | None = None
    targets: list[str] = field(default_factory=list)
    target_type: str = ""
    item_checks: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TaskConfigError(f"task {self.name!r}: unknown kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.row_range is not None:
            check_row_range(self.row_range, f"task {self.name!r} row_range")
        self.split_spec  # noqa: B018  (parsed once here, so a bad split is a task error)
        if self.kind == "property":
            self._check_property()
        self._check_item_checks()
        # Checked here, once, so that a bad template is a task error and not a failure of every row.
        try:
            names = [name for _, name, _, _ in Formatter().parse(self.prompt_template) if name is not None]
        except ValueError as err:
            raise TaskConfigError(
                f"task {self.name!r}: prompt_template is not a format string ({err}); write a literal brace as {{{{ or }}}}"
            ) from None
        if any(name == "" or name.isdigit() for name in names):
            raise TaskConfigError(
                f"task {self.name!r}: prompt_template fields must be named after row fields, like {{question}}"
            )

    @property
    def split_spec(self) -> Any:
        """``split`` parsed as a :class:`tasks.data.splits.Split` (None when the task has no split)."""
        from tasks.data.splits import Split

        if self.split is None:
            return None
        try:
            return Split.from_mapping(self.split, f"task {self.name!r} split")
        except ValueError as err:
            raise TaskConfigError(str(err)) from None

    def _check_property(self) -> None:
        from tasks.data.properties import TARGET_TYPES

        where = f"task {self.name!r}"
        if self.target_type not in TARGET_TYPES:
            raise TaskConfigError(f"{where}: target_type must be one of {', '.join(TARGET_TYPES)}, got {self.target_type!r}")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise TaskConfigError(f"{where}: targets must list the label columns, e.g. targets: [p_np]")
        if self.target_type == "multiclass" and (len(self.targets) != 1 or len(self.class_names) < 2):
            raise TaskConfigError(f"{where}: a multiclass task has one target column and at least two class_names")

    def _check_item_checks(self) -> None:
        if not isinstance(self.item_checks, dict):
            raise TaskConfigError(f"task {self.name!r}: item_checks must be a mapping, e.g. {{max_seconds: 30}}")
        allowed = ITEM_CHECKS.get(self.modality or "", ())
        for key, value in self.item_checks.items():
            if key not in allowed:
                raise TaskConfigError(
                    f"task {self.name!r}: item_checks.{key} does not apply to {self.modality or 'modality-less'} items; "
                    f"allowed: {', '.join(allowed) or 'none'}"
                )
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf):
                raise TaskConfigError(f"task {self.name!r}: item_checks.{key} must be a positive finite number or null, got {value!r}")

    def column(self, role: str) -> str:
        """The row column that plays ``role`` (defaults to the role's own name)."""
        return self.fields.get(role, role)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_row_range(row_range: object, where: str) -> tuple[float, float]:
    """``[start, end]`` with ``0 <= start < end <= 1``, or a :class:`TaskConfigError` naming ``where``."""
    numbers = isinstance(row_range, (list, tuple)) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in row_range
    )
    if not numbers or len(row_range) != 2 or not 0.0 <= row_range[0] < row_range[1] <= 1.0:  # type: ignore[arg-type, index]
        raise TaskConfigError(f"{where} must be [start, end] with 0 <= start < end <= 1, got {row_range!r}")
    return float(row_range[0]), float(row_range[1])  # type: ignore[index]


def rows_in_range(rows: list[Any], row_range: list[float] | tuple[float, float] | None) -> list[Any]:
    """The rows ``floor(start * n) <= i < floor(end * n)`` of ``n`` rows, numbered again from 0 (their
    ``file:line`` stays); all rows for ``None``. The fractions are taken as the decimals they are written as,
    so 0.7 of 5,760 rows is 4,032 (the binary float would give 4,031)."""
    if row_range is None:
        return rows
    start, end = (Fraction(repr(x)) for x in check_row_range(row_range, "row_range"))
    picked = rows[math.floor(start * len(rows)) : math.floor(end * len(rows))]
    return [dataclasses.replace(row, index=i) for i, row in enumerate(picked)]


def builtin_tasks() -> list[str]:
    """Names of the tasks shipped in ``tasks/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _locate(name_or_path: str | Path, base: Path | None) -> Path:
    """The YAML file a task reference names. A name ending in ``.yaml``/``.yml`` is a file relative to ``base``
    (the folder of the file that includes it) or, for the task itself, to the working directory; a name with no
    folder part, with or without the suffix, is then tried as a built-in task, so a user's own file wins."""
    path = Path(name_or_path)
    is_yaml = path.suffix in (".yaml", ".yml")
    candidates = [path if base is None else base / path] if is_yaml else []
    if len(path.parts) == 1:
        candidates.append(CONFIG_DIR / f"{path.stem if is_yaml else path.name}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f"no file {candidates[0]}" if is_yaml else "not a YAML file name"
    raise TaskConfigError(
        f"no task {str(name_or_path)!r}: {where} and no built-in task of that name; give a task file's path "
        f"(relative to the including file) or one of: {', '.join(builtin_tasks())}"
    )


def _raw(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    import yaml

    if path in seen:
        raise TaskConfigError(f"include cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TaskConfigError(f"{path}: a task file must hold a mapping")
    parent = data.pop("include", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise TaskConfigError(f"{path}: include must be a built-in task name or a YAML file path, got {parent!r}")
    merged = _raw(_locate(parent, path.parent).resolve(), (*seen, path))
    merged.update(data)
    return merged


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``a.b=v`` sets ``data["a"]["b"]`` (creating the mapping), ``a=v`` replaces ``data["a"]``."""
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return
    child = data.setdefault(head, {})
    if not isinstance(child, dict):
        raise TaskConfigError(f"cannot set {key!r}: {head!r} is not a mapping")
    data[head] = child = dict(child)
    _set_dotted(child, rest, value)


def load_task(name_or_path: str | Path | TaskConfig, **overrides: Any) -> TaskConfig:
    """A built-in task by name, or a YAML file. ``overrides`` replace keys; a dotted key such as
    ``generation.max_new_tokens`` sets one entry of a mapping."""
    if isinstance(name_or_path, TaskConfig):
        if not overrides:
            return name_or_path
        data = name_or_path.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return TaskConfig(**data)
    path = _locate(name_or_path, None)
    data = _raw(path.resolve(), ())
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    data.setdefault("name", path.stem)
    allowed = [f.name for f in dataclasses.fields(TaskConfig)]
    for key in data:
        if key not in allowed:
            raise TaskConfigError(f"{path}: unknown key {key!r}; allowed keys: include, {', '.join(allowed)}")
    for key in ("kind", "metric"):
        if key not in data:
            raise TaskConfigError(f"{path}: missing required key {key!r}")
    return TaskConfig(**data)
