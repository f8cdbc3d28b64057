"""Readers for reaction data: the USPTO-50K OpenNMT-style split and ``reactants>>products`` CSV/JSONL files.

Every malformed row raises a ``ValueError`` naming ``file:line`` and what is wrong, so bad data is fixed
at the source instead of being silently skipped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.data.text import decode_line, split_lines, undecodable_byte

USPTO50K_SPLITS: tuple[str, ...] = ("train", "valid", "test")
_CLASS_TOKEN = re.compile(r"<RX_(\d+)>")


@dataclass(frozen=True)
class ReactionRecord:
    """One reaction: reactant SMILES (``.``-separated), product SMILES, and the class label if known."""

    reactants: str
    product: str
    reaction_class: int | None = None


def _read_lines(path: Path) -> list[bytes]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected the USPTO-50K files src-/tgt-<split>.txt there")
    return [line.removesuffix(b"\r") for line in split_lines(path.read_bytes())]


def _parse_pair(src_path: Path, tgt_path: Path, number: int, source: bytes | None, target: bytes | None) -> ReactionRecord:
    """Line ``number`` of the src and tgt files as a record, or a ``ValueError`` naming ``file:line``."""
    if source is None or target is None:
        present, absent = (src_path, tgt_path) if target is None else (tgt_path, src_path)
        raise ValueError(f"{present}:{number}: {absent.name} has no line {number}; the two files must pair line by line")
    text = decode_line(source, f"{src_path}:{number}")
    tokens = text.split()
    match = _CLASS_TOKEN.fullmatch(tokens[0]) if tokens else None
    if match is None or not 1 <= int(match.group(1)) <= 10:
        raise ValueError(f"{src_path}:{number}: expected a <RX_n> class token (n = 1..10) first, got {text!r}")
    product = "".join(tokens[1:])
    if not product:
        raise ValueError(f"{src_path}:{number}: no product SMILES after the class token")
    reactants = "".join(decode_line(target, f"{tgt_path}:{number}").split())
    if not reactants:
        raise ValueError(f"{tgt_path}:{number}: empty reactants line")
    return ReactionRecord(reactants=reactants, product=product, reaction_class=int(match.group(1)))


def _split_files(root: str | Path, split: str) -> tuple[Path, Path]:
    if split not in USPTO50K_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(USPTO50K_SPLITS)}")
    return Path(root) / f"src-{split}.txt", Path(root) / f"tgt-{split}.txt"


def scan_uspto50k(root: str | Path, split: str) -> list[tuple[str, ReactionRecord | str]]:
    """Every line pair of ``{root}/src-{split}.txt`` and ``tgt-{split}.txt`` as (``src-<split>.txt:line``, its
    record or why it is unusable), so a reader can keep a bad line as a failed row instead of stopping."""
    src_path, tgt_path = _split_files(root, split)
    sources, targets = _read_lines(src_path), _read_lines(tgt_path)
    scanned: list[tuple[str, ReactionRecord | str]] = []
    for number in range(1, max(len(sources), len(targets)) + 1):
        source = sources[number - 1] if number <= len(sources) else None
        target = targets[number - 1] if number <= len(targets) else None
        try:
            scanned.append((f"{src_path.name}:{number}", _parse_pair(src_path, tgt_path, number, source, target)))
        except ValueError as err:
            scanned.append((f"{src_path.name}:{number}", str(err)))
    return scanned


def read_uspto50k(root: str | Path, split: str) -> list[ReactionRecord]:
    """Read ``{root}/src-{split}.txt`` and ``tgt-{split}.txt`` (retrosynthesis direction).

    Each src line is a ``<RX_n>`` class token (n = 1..10) followed by the space-tokenised product; the
    tgt line on the same line number is the space-tokenised reactants. Spaces are removed. The first bad
    line (including a byte that is not UTF-8) raises a ``ValueError`` naming ``file:line``.
    """
    src_path, tgt_path = _split_files(root, split)
    sources, targets = _read_lines(src_path), _read_lines(tgt_path)
    if len(sources) != len(targets):
        raise ValueError(
            f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; they must pair line by line"
        )
    return [
        _parse_pair(src_path, tgt_path, number, source, target)
        for number, (source, target) in enumerate(zip(sources, targets, strict=True), 1)
    ]


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
        for number, raw in enumerate(split_lines(path.read_bytes()), 1):
            line = decode_line(raw, f"{path}:{number}")
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
        text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else delimiter)
        for row in reader:
            texts = [v for v in (*row.keys(), *row.values()) if isinstance(v, str)]
            byte = next(filter(None, map(undecodable_byte, texts)), None)
            if byte is not None:
                raise ValueError(f"{path}:{reader.line_num}: byte {byte} is not valid UTF-8; save the file as UTF-8")
            rows.append((reader.line_num, row))
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
