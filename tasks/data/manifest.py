"""Rows for evaluation: a generic JSONL manifest, CSV, and USPTO-50K, each row kept with its line number.

A row that cannot be parsed is kept as a failed row with its error, never dropped, so it counts in every
metric's denominator. Relative file paths in a manifest are resolved against the manifest's folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_MODALITIES = ("image", "audio")


@dataclass
class Row:
    """One example: its position, its fields (empty when unreadable) and why it failed, if it did."""

    index: int
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    source: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _resolve_files(fields: dict[str, Any], item_column: str, modality: str | None, base: Path) -> None:
    value = fields.get(item_column)
    if modality in FILE_MODALITIES and isinstance(value, str) and not Path(value).is_absolute():
        fields[item_column] = str(base / value)


def read_jsonl(path: Path, item_column: str = "item", modality: str | None = None) -> list[Row]:
    """One JSON object per line; blank lines are skipped, malformed ones become failed rows."""
    rows: list[Row] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            source = f"{path.name}:{line_no}"
            try:
                fields = json.loads(line)
                if not isinstance(fields, dict):
                    raise ValueError(f"expected a JSON object, got {type(fields).__name__}")
            except ValueError as err:
                rows.append(Row(len(rows), error=f"{source}: malformed row ({err})", source=source))
                continue
            _resolve_files(fields, item_column, modality, path.parent)
            rows.append(Row(len(rows), fields, source=source))
    return rows


def read_csv(path: Path, item_column: str = "item", modality: str | None = None, delimiter: str | None = None) -> list[Row]:
    """A CSV (or TSV, by suffix, or with ``delimiter`` given) with a header row."""
    rows: list[Row] = []
    with path.open(encoding="utf-8", newline="") as handle:
        delimiter = delimiter or ("\t" if path.suffix == ".tsv" else ",")
        # Fields are never quoted in tab-separated chemistry files (ChEBI-20 descriptions hold bare quotes).
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        for line_no, record in enumerate(reader, start=2):
            source = f"{path.name}:{line_no}"
            if None in record or None in record.values():
                rows.append(Row(len(rows), error=f"{source}: wrong number of columns", source=source))
                continue
            fields = dict(record)
            _resolve_files(fields, item_column, modality, path.parent)
            rows.append(Row(len(rows), fields, source=source))
    return rows


def read_uspto50k_rows(path: Path, direction: str = "retro") -> list[Row]:
    """USPTO-50K ``{path}/{src,tgt}-test.txt`` (or a ``.../src-<split>.txt`` file) as prompt/reference rows.

    ``retro``: product -> reactants; ``forward``: reactants -> product. ``reaction_class`` is kept.
    """
    from tasks.data.reactions import read_uspto50k

    root, split = (path.parent, path.stem.split("-", 1)[1]) if path.is_file() else (path, "test")
    rows = []
    for i, record in enumerate(read_uspto50k(root, split)):
        source, target = (record.product, record.reactants) if direction == "retro" else (record.reactants, record.product)
        fields = {"id": f"{split}-{i}", "item": source, "reference": target, "reaction_class": record.reaction_class}
        rows.append(Row(i, fields, source=f"{split}:{i + 1}"))
    return rows


def read_tsv(path: Path, item_column: str = "item", modality: str | None = None) -> list[Row]:
    """Tab-separated values with a header row, whatever the file's suffix (ChEBI-20's ``.txt`` files)."""
    return read_csv(path, item_column, modality, delimiter="\t")


READERS = {"jsonl": read_jsonl, "csv": read_csv, "tsv": read_tsv}


def read_rows(reader: str, path: str | Path, item_column: str = "item", modality: str | None = None) -> list[Row]:
    """Rows from ``path`` with the named reader (``jsonl``, ``csv``, ``tsv``, ``uspto50k-retro``, ``uspto50k-forward``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}")
    if reader.startswith("uspto50k-"):
        return read_uspto50k_rows(path, reader.split("-", 1)[1])
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; allowed: {', '.join(READERS)}, uspto50k-retro, uspto50k-forward")
    return READERS[reader](path, item_column, modality)
