"""Confinement: a file name that comes from untrusted input (a manifest, a model card, ``config.json``) names a
file inside one root folder, or it is refused before anything is read or written. Pure Python, so the data
readers here and ``zoo``'s weight loading share it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A file name from a card, ``config.json`` or manifest that would leave its root (absolute, ``..``, or a
    symlink pointing outside); refused before anything is read or written."""


def check_relative_name(name: object, what: str) -> str:
    """``name`` as given, if it is a non-empty relative path with no ``..`` part (in POSIX or Windows
    spelling); otherwise :class:`UnsafePathError` naming ``what`` it came from."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError(f"{what}: expected a relative file name, got {name!r}")
    if "\x00" in name:
        raise UnsafePathError(f"{what}: file name {name!r} contains a NUL byte")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\", "~")):
        raise UnsafePathError(f"{what}: file name {name!r} is absolute; it must be relative to its folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise UnsafePathError(f"{what}: file name {name!r} contains '..'; it must stay inside its folder")
    return name


def confined(root: str | Path, name: object, what: str) -> Path:
    """``root / name``, refused (:class:`UnsafePathError`) when ``name`` is absolute, contains ``..``, or
    resolves (through symlinks) to a place outside ``root``. The file need not exist yet."""
    root = Path(root)
    path = root / check_relative_name(name, what)
    real_root, real_path = root.resolve(), path.resolve()
    if real_path != real_root and real_root not in real_path.parents:
        raise UnsafePathError(
            f"{what}: {name!r} resolves to {real_path}, outside {real_root} (a symlink leaving the folder?); "
            "copy the file into the folder instead of linking it"
        )
    return path
