"""State dicts on disk: strict loading into a model (keys, shapes, dtypes, finite values), safetensors reading,
atomic writes, and ``save_pretrained``. Where weights come from is ``zoo.weights``; which model to build is
``zoo.loading``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from zoo.errors import ModelNotFoundError, WeightsError

__all__ = ["ModelNotFoundError", "WeightsError"]  # re-exported: the errors of everything that reads weights

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FORMAT_VERSION = 1


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def load_state_strict(
    model: Any, state: Mapping[str, Any], what: str, cast_from: Iterable[Any] = (), allow_cast: bool = False
) -> None:
    """Load ``state`` into ``model``, accepting only an exact key match, the model's shapes, its dtypes, and
    finite values. A tied tensor (see :func:`tied_groups`) must appear exactly once, under any of its names.

    A floating-point tensor may be cast to the model's floating dtype only when its dtype is in ``cast_from``
    (the dtype a card or ``config.json`` declares its file holds) or the caller passed ``allow_cast``; integer
    and bool tensors are never cast. Every mismatch is listed in one error.
    """
    own = model.state_dict()
    groups = tied_groups(model)
    twice = [present for group in groups if len(present := [key for key in group if key in state]) > 1]
    if twice:
        raise WeightsError(
            f"{what} holds tied tensors more than once: {_listed([' = '.join(keys) for keys in twice])}. The model "
            "shares one tensor between these keys; keep one of each in the file (any of its names)"
        )
    # one name per tie group is expected: the one the file uses, else (so a missing group is named) the first
    stored_under = {key: next((k for k in group if k in state), group[0]) for group in groups for key in group}
    check_keys({stored_under.get(key, key) for key in own}, state, what)
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise WeightsError(f"{what}: {key} has shape {tuple(value.shape)}, the model needs {tuple(own[key].shape)}")
    castable = set(cast_from)
    wrong_dtype = [
        f"{key} ({str(value.dtype).removeprefix('torch.')}, the model needs {str(own[key].dtype).removeprefix('torch.')})"
        for key, value in sorted(state.items())
        if value.dtype != own[key].dtype
        and not (value.is_floating_point() and own[key].is_floating_point() and (allow_cast or value.dtype in castable))
    ]
    if wrong_dtype:
        raise WeightsError(
            f"{what}: {len(wrong_dtype)} tensor(s) have another dtype than the model's: {_listed(wrong_dtype)}. "
            "Weights are not cast silently; if the cast is intended, pass allow_dtype_cast=True to zoo.load"
        )
    non_finite = [
        f"{key} ({int((~value.isfinite()).sum())} of {value.numel()})"
        for key, value in sorted(state.items())
        if value.is_floating_point() and not bool(value.isfinite().all())
    ]
    if non_finite:
        raise WeightsError(f"{what}: {len(non_finite)} tensor(s) hold NaN or infinite values: {_listed(non_finite)}")
    model.load_state_dict(state, strict=False)  # copies in place, so every name of a tied tensor gets the value


def _listed(items: list[str], most: int = 20) -> str:
    return ", ".join(items[:most]) + (f" ... (+{len(items) - most} more)" if len(items) > most else "")


def tied_groups(model: Any) -> list[list[str]]:
    """The state-dict keys of ``model`` that name one shared tensor (e.g. an LM head tied to its input
    embeddings), grouped, each group in state-dict order. A weights file stores such a tensor once, under any
    one of its names (``save_pretrained`` lets safetensors keep one, recipes keep the first): the built model
    holds the tie itself, so loading one name fills them all."""
    groups: dict[Any, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        # the same view of the same memory; an empty tensor has no memory of its own, so only itself
        view = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        groups.setdefault(view if tensor.numel() else id(tensor), []).append(key)
    return [keys for keys in groups.values() if len(keys) > 1]


def load_safetensors(path: str | Path, prefix: str = "") -> dict[str, Any]:
    """The tensors of a safetensors file; a truncated or malformed file is a :class:`WeightsError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return {prefix + k: v for k, v in load_file(str(path)).items()}
    except SafetensorError as err:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({err}); it is truncated or corrupt — delete it and fetch "
            "or save it again"
        ) from err


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; a written file gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def default_file_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets under the process umask; temporary files are made 0600,
    so what we rename into place is given these."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def floating_dtypes(model: Any) -> list[str]:
    """The floating dtypes of ``model``'s state, by name (``config.json`` records them for loading)."""
    return sorted({str(v.dtype).removeprefix("torch.") for v in model.state_dict().values() if v.is_floating_point()})


def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write a complete model directory atomically: config.json, model.safetensors, tokenizer/, README.md.
    safetensors' ``save_model`` writes each tied tensor once, under one of its names; loading accepts any."""
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
        assets = _write_assets(model, staging)
        meta = getattr(model, "card_meta", {})
        config = {
            "modalzoo_format": FORMAT_VERSION,
            "modalzoo_version": __version__,
            "name": meta.get("name", directory.name),
            "spec": spec_to_dict(model.spec),
            "processor": model.processor.config_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(staging / WEIGHTS_FILE),
                        "dtypes": floating_dtypes(model)},
            "assets": assets,
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
        publish_directory(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def _write_assets(model: Any, staging: Path) -> dict[str, str]:
    """Write the model's assets (files its weights need, e.g. a template library) beside the weights;
    returns ``{name: sha256}`` for config.json, so loading checks them like the weights."""
    from tasks.paths import confined

    written = {}
    for name, data in getattr(model, "assets", dict)().items():
        path = confined(staging, name, "model asset")
        path.write_bytes(data)
        written[name] = sha256_file(path)
    return written


def publish_directory(staging: Path, directory: Path) -> None:
    """Rename a finished staging folder into place (replacing an older ``directory``), first giving its files
    the umask's usual permissions: mkdtemp makes 0700 and safetensors writes 0600."""
    for path in [staging, *staging.rglob("*")]:
        os.chmod(path, default_file_mode(directory=path.is_dir()))
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    os.replace(directory, backup)
    os.replace(staging, directory)
    shutil.rmtree(backup)


def place_model(model: Any, device: Any, dtype: Any) -> Any:
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval()
