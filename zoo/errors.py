"""The errors a user meets when loading or saving a model; each message says what to do next."""

from __future__ import annotations


class WeightsError(ValueError):
    """Weights that do not fit the model exactly (keys, shapes, dtypes, non-finite values) or whose checksum
    is wrong."""


class ModelNotFoundError(FileNotFoundError):
    """A model name, directory or hub file that cannot be found; the message says how to get it."""


class UnsafePathError(ValueError):
    """A file name from a card, ``config.json`` or manifest that would leave its root (absolute, ``..``, or a
    symlink pointing outside); refused before anything is read or written."""
