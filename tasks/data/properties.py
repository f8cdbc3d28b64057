"""Property labels of a row: one number per target column, NaN where the cell is empty (a missing label).

``binary`` targets are 0/1 (Tox21-style multi-label sets have many, each possibly missing), ``regression``
targets are finite numbers, and a ``multiclass`` target is one column whose value is one of the task's
``class_names`` (its label is the class index). Anything else is an error naming the column and the value, so a
row with a typo is reported instead of trained on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

TARGET_TYPES: tuple[str, ...] = ("binary", "regression", "multiclass")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, column: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{column!r} must be a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{column!r} must be a number or empty (missing), got {value!r:.40}") from None
    if not math.isfinite(number):
        raise ValueError(f"{column!r} must be finite, got {value!r:.40}")
    return number


def property_labels(fields: Mapping[str, Any], targets: Sequence[str], target_type: str,
                    class_names: Sequence[str] = ()) -> list[float]:
    """The row's labels, one per target (NaN = missing); a row with no label at all is an error."""
    labels = []
    for column in targets:
        if column not in fields:
            raise ValueError(f"row has no {column!r} column (a target of the task)")
        value = fields[column]
        if _missing(value):
            labels.append(math.nan)
        elif target_type == "multiclass":
            if str(value) not in class_names:
                raise ValueError(f"{column!r} is {value!r:.40}, not one of the task's class_names {list(class_names)[:10]}")
            labels.append(float(list(class_names).index(str(value))))
        else:
            number = _number(value, column)
            if target_type == "binary" and number not in (0.0, 1.0):
                raise ValueError(f"{column!r} must be 0 or 1 (or empty when missing), got {value!r:.40}")
            labels.append(number)
    if all(math.isnan(label) for label in labels):
        raise ValueError(f"row has no label in any target column ({', '.join(targets)})")
    return labels
