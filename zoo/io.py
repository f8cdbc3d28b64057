"""Saving and loading: atomic ``save_pretrained``, strict safetensors loading with sha256 checks, explicit
pickle conversion, and the name grammar (card name, local directory, ``hf-hub:org/repo[@revision]``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """Weights that do not fit the model exactly, or whose checksum is wrong."""


class ModelNotFoundError(FileNotFoundError):
    """A model name, directory or hub file that cannot be found; the message says how to get it."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`WeightsError` if ``path``'s sha256 is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsError(
            f"sha256 of {path} is {actual}, but its card says {expected}; the file is corrupt or not the "
            "one the card describes — delete it and fetch it again"
        )


def check_keys(expected: Iterable[str], found: Iterable[str], what: str) -> None:
    """Strict loading: any missing or unexpected key is an error that lists them."""
    expected_set, found_set = set(expected), set(found)
    missing, unexpected = sorted(expected_set - found_set), sorted(found_set - expected_set)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}"
            )
        raise WeightsError(f"{what} does not fit the model: " + "; ".join(parts))


def load_state_strict(model: Any, state: Mapping[str, Any], what: str) -> None:
    """Load ``state`` into ``model``, accepting only an exact key match (tied weights may appear once)."""
    own = model.state_dict()
    tied_aliases = _tied_aliases(model)
    expected = set(own) - {alias for alias in tied_aliases if tied_aliases[alias] in state}
    check_keys(expected, state, what)
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise WeightsError(f"{what}: {key} has shape {tuple(value.shape)}, the model needs {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)


def _tied_aliases(model: Any) -> dict[str, str]:
    """Map each state-dict key that shares storage with an earlier key to that key."""
    seen: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        ptr = tensor.data_ptr() if tensor.numel() else id(tensor)
        if ptr in seen:
            aliases[key] = seen[ptr]
        else:
            seen[ptr] = key
    return aliases


def load_safetensors(path: str | Path, prefix: str = "") -> dict[str, Any]:
    from safetensors.torch import load_file

    return {prefix + k: v for k, v in load_file(str(path)).items()}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def rename_state(
    state: Mapping[str, Any], key_map: Callable[[dict[str, Any]], Mapping[str, str | None]], what: str
) -> dict[str, Any]:
    """Rename a checkpoint's keys through an explicit map, the one contract every key map follows.

    ``key_map(state)`` returns ``{checkpoint key: our key, or None to drop it on purpose}`` and must name every
    key of the checkpoint, no more and no less; two checkpoint keys may not land on the same key of ours.
    """
    renames = key_map(dict(state))
    check_keys(state.keys(), renames.keys(), f"the key map for {what}")
    clashes = sorted(new for new, n in Counter(renames.values()).items() if new is not None and n > 1)
    if clashes:
        raise WeightsError(f"the key map for {what} sends several checkpoint keys to {', '.join(clashes[:10])}")
    return {new: state[old] for old, new in renames.items() if new is not None}


def convert_pickle_checkpoint(
    source: str | Path, target: str | Path, key_map: Callable[[dict[str, Any]], Mapping[str, str | None]]
) -> Path:
    """Convert a pickled state dict to safetensors through an explicit rename map.

    Uses ``torch.load(weights_only=True)``, so no code in the pickle runs; keys are renamed by
    :func:`rename_state` (``key_map`` names every key; ``None`` drops one on purpose, e.g. a pretraining head).
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


def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write a complete model directory atomically: config.json, model.safetensors, tokenizer/, README.md."""
    from safetensors.torch import save_model

    from zoo import __version__
    from zoo.cards import render_card
    from zoo.spec import spec_to_dict

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_model(model, str(staging / WEIGHTS_FILE))
        model.processor.save_pretrained(staging)
        meta = getattr(model, "card_meta", {})
        config = {
            "modalzoo_format": FORMAT_VERSION,
            "modalzoo_version": __version__,
            "name": meta.get("name", directory.name),
            "spec": spec_to_dict(model.spec),
            "processor": model.processor.config_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(staging / WEIGHTS_FILE)},
            "files": sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) + [CONFIG_FILE, CARD_FILE],
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        body = (
            f"# {config['name']}\n\nSaved by modalzoo {__version__}. Load it with "
            f"`zoo.load({str(directory)!r})`.\n\n{meta.get('body', '')}"
        )
        (staging / CARD_FILE).write_text(
            render_card(config["name"], meta.get("description", "a modalzoo model"), meta.get("license", "unknown"),
                        config["spec"], body, eval_results=meta.get("eval_results"))
        )
        _replace_dir(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def _replace_dir(staging: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    os.replace(directory, backup)
    os.replace(staging, directory)
    shutil.rmtree(backup)


def load_directory(directory: Path, device: Any = None, dtype: Any = None) -> Any:
    """Load a ``save_pretrained`` directory strictly, checking the weights' sha256 against config.json."""
    from zoo.assembly import build_model
    from zoo.spec import spec_from_dict

    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ModelNotFoundError(f"{directory} has no {CONFIG_FILE}; it is not a modalzoo model directory")
    config = json.loads(config_path.read_text())
    weights = directory / config["weights"]["file"]
    if not weights.is_file():
        raise ModelNotFoundError(f"{directory} has no {weights.name}; the save was incomplete — save it again")
    verify_sha256(weights, config["weights"]["sha256"])
    model = build_model(
        spec_from_dict(config["spec"]), load_pretrained=False, saved_processor=config["processor"], saved_dir=directory
    )
    load_state_strict(model, load_safetensors(weights), str(weights))
    model.card_meta = {"name": config.get("name", directory.name)}
    return _place(model, device, dtype)


def _place(model: Any, device: Any, dtype: Any) -> Any:
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval()
