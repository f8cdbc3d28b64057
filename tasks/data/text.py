"""Bytes -> text for the data readers, one line at a time, so one undecodable byte costs its own row only and
the error names the file, the line, the byte and its column."""

from __future__ import annotations

import codecs
import math


def split_lines(data: bytes) -> list[bytes]:
    """The lines of ``data``, split on ``\\n`` only (a trailing ``\\r`` is kept for the caller to strip), so line
    numbers are the ones an editor shows and a stray separator such as U+2028 never splits a row."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix(codecs.BOM_UTF8)
    return lines


def decode_line(raw: bytes, where: str) -> str:
    """``raw`` as UTF-8, or a ``ValueError`` naming ``where`` (``file:line``) and the offending byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{where}: byte 0x{raw[err.start]:02x} at column {err.start + 1} is not valid UTF-8; "
            "save the file as UTF-8"
        ) from None


def undecodable_byte(text: str) -> str | None:
    """For text decoded with ``errors="surrogateescape"``: the first byte that was not UTF-8 (as ``0x..``),
    or None when the text decoded cleanly."""
    for char in text:
        if "\udc80" <= char <= "\udcff":
            return f"0x{ord(char) - 0xDC00:02x}"
    return None


def finite_number(value: object) -> float | None:
    """A data cell as a finite float: a number, or a string that spells one (CSV and TSV cells are strings);
    None for anything else (bools, NaN, infinities, words, integers too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
