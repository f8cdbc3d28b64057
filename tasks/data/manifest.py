"""Rows for evaluation: a generic JSONL manifest, CSV, and USPTO-50K, each row kept with its ``file:line``.

A row that cannot be parsed (undecodable bytes, malformed JSON, a wrong number of columns) is kept as a failed
row with its error, never dropped and never fatal, so it counts in every metric's denominator. Blank lines carry
no row. An image or audio file named in a data file is relative to the file's folder and confined to it
(``tasks.paths.confined``): an absolute path, ``..`` or a symlink leading out makes the row a failed row.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.data.text import decode_line, split_lines, undecodable_byte
from tasks.paths import confined

FILE_MODALITIES = ("image", "audio")
JSON_BLANK = b" \t\r"  # JSON's whitespace besides the newline: a line of only these holds no row


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


def _resolve_files(fields: dict[str, Any], item_column: str, modality: str | None, base: Path, source: str) -> None:
    """Replace a file item by its path inside ``base``; ``UnsafePathError`` if it would leave ``base``."""
    value = fields.get(item_column)
    if modality in FILE_MODALITIES and isinstance(value, str):
        fields[item_column] = str(confined(base, value, f"{source}: {item_column!r}"))


def _json_object(raw: bytes, source: str) -> dict[str, Any]:
    """One manifest line as a JSON object, or a ``ValueError`` saying why it is not one."""
    text = decode_line(raw, source)
    try:
        fields = json.loads(text)
        # a \ud800-style escape decodes to a lone surrogate, which no tokenizer or file can take
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError(f"{source}: malformed row (JSON nested too deeply)") from None
    except UnicodeEncodeError as err:
        raise ValueError(f"{source}: malformed row (a string holds the unpaired surrogate {err.object[err.start]!a})") from None
    except ValueError as err:
        raise ValueError(f"{source}: malformed row ({err})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{source}: malformed row (expected a JSON object, got {type(fields).__name__})")
    return fields


def read_jsonl(path: Path, item_column: str = "item", modality: str | None = None) -> list[Row]:
    """One JSON object per line; blank lines are skipped, every other line is one row (failed if unusable)."""
    rows: list[Row] = []
    for line_no, raw in enumerate(split_lines(path.read_bytes()), start=1):
        if not raw.strip(JSON_BLANK):
            continue
        source = f"{path.name}:{line_no}"
        try:
            fields = _json_object(raw, source)
            _resolve_files(fields, item_column, modality, path.parent, source)
        except ValueError as err:
            rows.append(Row(len(rows), error=str(err), source=source))
            continue
        rows.append(Row(len(rows), fields, source=source))
    return rows


def _csv_fields(values: list[str], header: list[str], header_byte: str | None, source: str) -> dict[str, Any]:
    """One CSV record as a row's fields, or a ``ValueError`` saying why it cannot be one."""
    if header_byte is not None:
        raise ValueError(f"{source}: byte {header_byte} in the header (line 1) is not valid UTF-8; save the file as UTF-8")
    if len(values) != len(header):
        raise ValueError(f"{source}: wrong number of columns: the header has {len(header)}, this row has {len(values)}")
    for column, value in zip(header, values, strict=True):
        byte = undecodable_byte(value)
        if byte is not None:
            raise ValueError(f"{source}: byte {byte} in column {column!r} is not valid UTF-8; save the file as UTF-8")
    return dict(zip(header, values, strict=True))


def read_csv(path: Path, item_column: str = "item", modality: str | None = None, delimiter: str | None = None) -> list[Row]:
    """A CSV (or TSV, by suffix, or with ``delimiter`` given) with a header row; one row per record, blank lines
    skipped. A record that is too long, has the wrong number of columns or holds non-UTF-8 bytes is a failed row."""
    delimiter = delimiter or ("\t" if path.suffix == ".tsv" else ",")
    # Fields are never quoted in tab-separated chemistry files (ChEBI-20 descriptions hold bare quotes).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, [])
    except csv.Error as err:
        raise ValueError(f"{path.name}:1: the header row cannot be read ({err}); fix it and rerun") from None
    header_byte = next(filter(None, map(undecodable_byte, header)), None)
    rows: list[Row] = []
    last_line = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            source = f"{path.name}:{last_line + 1}"
            rows.append(Row(len(rows), error=f"{source}: unreadable record ({err})", source=source))
            last_line = reader.line_num
            continue
        source, last_line = f"{path.name}:{last_line + 1}", reader.line_num
        if not values:
            continue
        try:
            fields = _csv_fields(values, header, header_byte, source)
            _resolve_files(fields, item_column, modality, path.parent, source)
        except ValueError as err:
            rows.append(Row(len(rows), error=str(err), source=source))
            continue
        rows.append(Row(len(rows), fields, source=source))
    return rows


def read_uspto50k_rows(path: Path, direction: str = "retro") -> list[Row]:
    """USPTO-50K ``{path}/{src,tgt}-test.txt`` (or a ``.../src-<split>.txt`` file) as prompt/reference rows.

    ``retro``: product -> reactants; ``forward``: reactants -> product. ``reaction_class`` is kept. A malformed
    line pair is a failed row naming ``file:line``.
    """
    from tasks.data.reactions import scan_uspto50k

    if path.is_file():
        prefix, _, split = path.stem.partition("-")
        if prefix not in ("src", "tgt") or not split:
            raise ValueError(f"{path}: a USPTO-50K file is named src-<split>.txt; pass that file or its folder")
        root = path.parent
    else:
        root, split = path, "test"
    rows = []
    for i, (source, record) in enumerate(scan_uspto50k(root, split)):
        if isinstance(record, str):
            rows.append(Row(i, error=record, source=source))
            continue
        item, target = (record.product, record.reactants) if direction == "retro" else (record.reactants, record.product)
        fields = {"id": f"{split}-{i}", "item": item, "reference": target, "reaction_class": record.reaction_class}
        rows.append(Row(i, fields, source=source))
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
