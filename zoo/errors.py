"""The errors a user meets when loading or saving a model; each message says what to do next."""

from __future__ import annotations

from tasks.paths import UnsafePathError

__all__ = ["HubOfflineError", "ModelNotFoundError", "UnsafePathError", "WeightsError"]


class WeightsError(ValueError):
    """Weights that do not fit the model exactly (keys, shapes, dtypes, non-finite values) or whose checksum
    is wrong."""


class ModelNotFoundError(FileNotFoundError):
    """A model name, directory or hub file that cannot be found; the message says how to get it."""


class HubOfflineError(ModelNotFoundError):
    """Files a model needs from the Hugging Face Hub are not in the local cache, and the Hub is switched off
    (``HF_HUB_OFFLINE``) or cannot be reached. The message names the repos and files and gives the ``hf
    download`` command that fetches them on a connected machine."""
