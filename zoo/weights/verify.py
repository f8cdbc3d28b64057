"""Checksums: the sha256 a card or ``config.json`` promises, checked against the bytes on disk."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.errors import WeightsError
from zoo.io import sha256_file

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256_field(value: object, what: str) -> str:
    """``value`` lower-cased if it is 64 hex digits. YAML reads an all-digit checksum as a number, so a
    non-string gets an error saying to quote it."""
    if not isinstance(value, str):
        raise WeightsError(
            f"{what}: sha256 must be a quoted string of 64 hex digits, got {type(value).__name__} {value!r} "
            "(YAML reads unquoted digits as a number: write it in quotes)"
        )
    if not _SHA256.fullmatch(value.lower()):
        raise WeightsError(f"{what}: sha256 must be 64 hex digits, got {value!r}")
    return value.lower()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`WeightsError` if ``path``'s sha256 is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsError(
            f"sha256 of {path} is {actual}, but its card says {expected}; the file is corrupt or not the "
            "one the card describes — delete it and fetch it again"
        )
