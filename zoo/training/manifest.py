"""A checkpoint's ``manifest.json``: the sha256 and size of every other file in it, written last.

The manifest is what makes a checkpoint complete or ignored: it is written after every other file, atomically,
and a checkpoint counts only if its files are exactly the ones listed, each with the listed size and sha256.
A missing or unreadable manifest, or a missing, extra, truncated or altered file, makes it incomplete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from zoo.io import atomic_write, sha256_file
from zoo.training.config import TrainingError

MANIFEST_FILE = "manifest.json"
FORMAT = 1


class IncompleteError(TrainingError):
    """A checkpoint directory that does not match its manifest; the message says how."""


def _files(directory: Path) -> dict[str, Path]:
    """Every non-directory entry under ``directory`` but the manifest, by relative POSIX path (links not followed)."""
    found = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = Path(parent, name)
            found[path.relative_to(directory).as_posix()] = path
    found.pop(MANIFEST_FILE, None)
    return found


def write_manifest(directory: Path) -> None:
    """Record every file of a finished ``directory``; call it after everything else is written."""
    files = {name: {"sha256": sha256_file(path), "size": path.stat().st_size}
             for name, path in sorted(_files(directory).items())}
    text = json.dumps({"format": FORMAT, "files": files}, indent=2) + "\n"
    atomic_write(directory / MANIFEST_FILE, lambda tmp: tmp.write_text(text))


def read_manifest(directory: Path) -> dict[str, dict[str, object]]:
    """The manifest's ``{relative path: {"sha256", "size"}}``; :class:`IncompleteError` if there is none usable."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise IncompleteError(f"it has no {MANIFEST_FILE} (it was never finished, or predates manifests)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest["format"] != FORMAT or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
            for e in files.values()
        ):
            raise ValueError("unexpected format")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise IncompleteError(f"its {MANIFEST_FILE} is unreadable ({err})") from err
    return files


def check_file(path: Path, entry: dict[str, object]) -> None:
    """Raise :class:`IncompleteError` unless ``path`` is a regular file with the manifest entry's size and sha256."""
    if path.is_symlink() or not path.is_file():
        raise IncompleteError(f"{path.name} is missing" if not path.exists() else f"{path.name} is not a regular file")
    size = path.stat().st_size
    if size != entry["size"]:
        raise IncompleteError(f"{path.name} has {size} bytes, the manifest records {entry['size']} (truncated or altered)")
    if sha256_file(path) != entry["sha256"]:
        raise IncompleteError(f"{path.name} does not match its sha256 in {MANIFEST_FILE} (corrupted or altered)")


def verify(directory: Path, exempt: Callable[[str], bool] = lambda name: False) -> dict[str, dict[str, object]]:
    """Check ``directory`` against its manifest; files named by ``exempt`` are left to the caller. Returns the
    manifest's entries; raises :class:`IncompleteError` naming the first problem."""
    files = read_manifest(directory)
    on_disk = {name: path for name, path in _files(directory).items() if not exempt(name)}
    listed = {name for name in files if not exempt(name)}
    if on_disk.keys() - listed:
        raise IncompleteError(f"it holds files its {MANIFEST_FILE} does not list: {', '.join(sorted(on_disk.keys() - listed))}")
    for name in sorted(listed):
        if name not in on_disk:
            raise IncompleteError(f"{name} is missing")
        check_file(on_disk[name], files[name])
    return files
