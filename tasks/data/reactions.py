"""Readers for reaction data: the USPTO-50K OpenNMT-style split and ``reactants>>products`` CSV/JSONL files.

Every malformed row raises a ``ValueError`` naming ``file:line`` and what is wrong, so bad data is fixed
at the source instead of being silently skipped.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

USPTO50K_SPLITS: tuple[str, ...] = ("train", "valid", "test")
_CLASS_TOKEN = re.compile(r"<RX_(\d+)>")


@dataclass(frozen=True)
class ReactionRecord:
    """One reaction: reactant SMILES (``.``-separated), product SMILES, and the class label if known."""

    reactants: str
    product: str
    reaction_class: int | None = None


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected the USPTO-50K files src-/tgt-<split>.txt there")
    with path.open(encoding="utf-8") as handle:
        return handle.read().splitlines()


def read_uspto50k(root: str | Path, split: str) -> list[ReactionRecord]:
    """Read ``{root}/src-{split}.txt`` and ``tgt-{split}.txt`` (retrosynthesis direction).

    Each src line is a ``<RX_n>`` class token (n = 1..10) followed by the space-tokenised product; the
    tgt line on the same line number is the space-tokenised reactants. Spaces are removed.
    """
    if split not in USPTO50K_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(USPTO50K_SPLITS)}")
    root = Path(root)
    src_path, tgt_path = root / f"src-{split}.txt", root / f"tgt-{split}.txt"
    sources, targets = _read_lines(src_path), _read_lines(tgt_path)
    if len(sources) != len(targets):
        raise ValueError(
            f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; they must pair line by line"
        )
    records = []
    for number, (source, target) in enumerate(zip(sources, targets, strict=True), 1):
        tokens = source.split()
        match = _CLASS_TOKEN.fullmatch(tokens[0]) if tokens else None
        if match is None or not 1 <= int(match.group(1)) <= 10:
            raise ValueError(
                f"{src_path}:{number}: expected a <RX_n> class token (n = 1..10) first, got {source!r}"
            )
        product = "".join(tokens[1:])
        if not product:
            raise ValueError(f"{src_path}:{number}: no product SMILES after the class token")
        reactants = "".join(target.split())
        if not reactants:
            raise ValueError(f"{tgt_path}:{number}: empty reactants line")
        records.append(
            ReactionRecord(reactants=reactants, product=product, reaction_class=int(match.group(1)))
        )
    return records


def _split_reaction(text: str, where: str) -> tuple[str, str]:
    parts = text.strip().split(">")
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise ValueError(
            f"{where}: expected reaction SMILES 'reactants>>products' (or 'reactants>agents>products'), got {text!r}"
        )
    return parts[0], parts[2]


def read_reaction_file(
    path: str | Path, *, reaction_column: str = "rxn", class_column: str | None = None, delimiter: str = ","
) -> list[ReactionRecord]:
    """Read reactions from a ``.csv``/``.tsv`` (header row) or ``.jsonl`` file.

    ``reaction_column`` holds ``reactants>>products`` (agents between the ``>`` are discarded);
    ``class_column``, if given, holds an integer class. ``.tsv`` files are tab-separated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict]] = []
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object per line")
                rows.append((number, row))
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else delimiter)
            rows = [(reader.line_num, row) for row in reader]
    else:
        raise ValueError(f"{path}: unsupported extension {suffix!r}; use .csv, .tsv or .jsonl")
    records = []
    for number, row in rows:
        where = f"{path}:{number}"
        for column in (reaction_column, class_column):
            if column is not None and column not in row:
                raise ValueError(f"{where}: no column {column!r}; columns are {sorted(row)}")
        if not isinstance(row[reaction_column], str):
            raise ValueError(f"{where}: column {reaction_column!r} must hold a reaction SMILES string")
        reactants, product = _split_reaction(row[reaction_column], where)
        reaction_class = None
        if class_column is not None:
            try:
                reaction_class = int(row[class_column])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: class {row[class_column]!r} is not an integer") from err
        records.append(ReactionRecord(reactants=reactants, product=product, reaction_class=reaction_class))
    return records
