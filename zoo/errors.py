"""The errors a user meets when loading or saving a model; each message says what to do next."""

from __future__ import annotations

from tasks.paths import UnsafePathError

__all__ = ["ModelNotFoundError", "UnsafePathError", "WeightsError"]


class WeightsError(ValueError):
    """Weights that do not fit the model exactly (keys, shapes, dtypes, non-finite values) or whose checksum
    is wrong."""


class ModelNotFoundError(FileNotFoundError):
    """A model name, directory or hub file that cannot be found; the message says how to get it."""
