"""Train / valid / test splits inside one data file, chosen by the task (``split:`` in its YAML).

A task that trains and scores on one file (MoleculeNet: one CSV per data set) names its split, and
``zoo finetune`` (train part, valid part for model selection) and ``zoo eval`` (the ``part`` it scores, test by
default) compute the same split from the file alone, so no split file can drift from the data.

- ``scaffold``: Bemis–Murcko scaffold split (DeepChem's protocol, :func:`tasks.data.scaffold_split.scaffold_split`)
  of the items RDKit parses; unreadable rows and items RDKit cannot parse go to the test part, where they are
  counted as failures instead of vanishing.
- ``random``: a seeded permutation (``numpy.random.default_rng(seed)``) cut at the fractions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

METHODS: tuple[str, ...] = ("scaffold", "random")
PARTS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """How a task splits its file, and which ``part`` it reads."""

    method: str = "scaffold"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    part: str = "test"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> Split:
        """A split from a task's ``split:`` mapping; a wrong key or value is a ``ValueError`` naming ``where``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a mapping like {{method: scaffold, fractions: [0.8, 0.1, 0.1]}}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        split = cls(**{k: tuple(v) if k == "fractions" and isinstance(v, list) else v for k, v in data.items()})
        if split.method not in METHODS:
            raise ValueError(f"{where}.method must be one of {', '.join(METHODS)}, got {split.method!r}")
        if split.part not in PARTS:
            raise ValueError(f"{where}.part must be one of {', '.join(PARTS)}, got {split.part!r}")
        fractions = split.fractions
        numbers = isinstance(fractions, tuple) and len(fractions) == 3 and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fractions
        )
        if not numbers or abs(sum(fractions) - 1.0) > 1e-9:
            raise ValueError(f"{where}.fractions must be three non-negative numbers summing to 1, got {fractions!r}")
        if not isinstance(split.seed, int) or isinstance(split.seed, bool):
            raise ValueError(f"{where}.seed must be an integer, got {split.seed!r}")
        return split


def split_indices(items: Sequence[Any], split: Split) -> dict[str, list[int]]:
    """Positions of ``items`` in each part (sorted); every position is in exactly one part."""
    if split.method == "random":
        import numpy as np

        order = np.random.default_rng(split.seed).permutation(len(items)).tolist()
        train_end, valid_end = (math.floor(Fraction(repr(f)) * len(items)) for f in (split.fractions[0], sum(split.fractions[:2])))
        parts = {"train": order[:train_end], "valid": order[train_end:valid_end], "test": order[valid_end:]}
        return {name: sorted(rows) for name, rows in parts.items()}
    from tasks.data.scaffold_split import murcko_scaffold, scaffold_split

    parsable, failed = [], []
    for index, item in enumerate(items):
        try:
            murcko_scaffold(item)
            parsable.append(index)
        except (ValueError, TypeError):
            failed.append(index)
    scaffold = scaffold_split([items[i] for i in parsable], split.fractions)
    remap = lambda part: [parsable[k] for k in part]  # noqa: E731
    return {"train": remap(scaffold.train), "valid": remap(scaffold.valid), "test": sorted(remap(scaffold.test) + failed)}


def rows_in_split(rows: list[Any], split: Split | None, item_column: str) -> list[Any]:
    """The rows of ``split.part``, numbered again from 0 (their ``file:line`` stays); all rows for ``None``.
    An unreadable row has no item, so it is placed in the test part."""
    if split is None:
        return rows
    items = [row.fields.get(item_column) if row.ok else None for row in rows]
    picked = split_indices(items, split)[split.part]
    return [dataclasses.replace(rows[i], index=k) for k, i in enumerate(picked)]
