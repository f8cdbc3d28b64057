"""Pickled checkpoints become safetensors only through an explicit conversion: ``torch.load(weights_only=True)``
(no code in the pickle runs) and a registered key map. Converted files live in the cache beside a record of
their source's sha256, the key map and their own sha256, and are re-verified on every load."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError
from zoo.io import atomic_write, sha256_file
from zoo.weights.key_maps import KeyMap, rename_state, resolve_key_map

RECORD_VERSION = 1


def convert_pickle_checkpoint(source: str | Path, target: str | Path, key_map: KeyMap) -> Path:
    """Convert a pickled state dict to safetensors through an explicit rename map.

    Uses ``torch.load(weights_only=True)``, so no code in the pickle runs; keys are renamed by
    :func:`~zoo.weights.key_maps.rename_state` (``key_map`` names every key; ``None`` drops one on purpose,
    e.g. a pretraining head).
    """
    import torch
    from safetensors.torch import save_file

    state = torch.load(str(source), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} holds a {type(state).__name__}, not a state dict")
    mapped = {key: tensor.contiguous() for key, tensor in rename_state(state, key_map, str(source)).items()}
    target = Path(target)
    atomic_write(target, lambda tmp: save_file(mapped, str(tmp)))
    return target


def cached_conversion(pickle_path: Path, source_sha256: str, key_map_name: str, cache: Path) -> Path:
    """The safetensors conversion of a verified pickle (``source_sha256``) through ``key_map_name``, from the
    cache when its record and bytes check out, else (re)converted, with a warning when a cached copy failed."""
    target = cache / f"{source_sha256}.safetensors"
    record_path = cache / f"{source_sha256}.json"
    expected = {"version": RECORD_VERSION, "source_sha256": source_sha256, "key_map": key_map_name}
    if target.exists() or record_path.exists():
        problem = _cache_problem(target, record_path, expected)
        if problem is None:
            return target
        warnings.warn(
            f"the cached conversion {target} failed its check ({problem}); converting it again from the verified "
            f"source {pickle_path}",
            stacklevel=3,
        )
    convert_pickle_checkpoint(pickle_path, target, resolve_key_map(key_map_name, str(pickle_path)))
    record = {**expected, "sha256": sha256_file(target), "size": target.stat().st_size}
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n"))
    return target


def _cache_problem(target: Path, record_path: Path, expected: dict[str, Any]) -> str | None:
    """Why a cached conversion cannot be used, or None when it is the one the record describes."""
    if not target.is_file():
        return "the converted file is missing"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        return f"its record {record_path.name} is unreadable: {err}"
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in expected.items()):
        return f"its record {record_path.name} is for another source or key map"
    if record.get("size") != target.stat().st_size:
        return f"size {target.stat().st_size} bytes, the record says {record.get('size')} (truncated?)"
    if sha256_file(target) != record.get("sha256"):
        return "its sha256 is not the one recorded when it was converted (modified?)"
    return None
