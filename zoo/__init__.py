"""modalzoo: load a multimodal model by name, fine-tune it on a modality task, run zero-shot evaluations.

``import zoo`` is light: torch is imported only when a model is built or loaded.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "list_models": "zoo.cards",
    "card": "zoo.cards",
    "build": "zoo.loading",
    "load": "zoo.loading",
    "evaluate": "zoo.evaluation.evaluate",
    "spec_from_dict": "zoo.spec",
    "spec_to_dict": "zoo.spec",
    "merge": "zoo.training.merge",
    "finetune": "zoo.training.finetune",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
