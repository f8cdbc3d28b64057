"""``zoo.build`` and ``zoo.load``: from a card name, a spec, a local directory, ``hf-hub:org/repo[@rev]`` (a
modalzoo save) or ``hf:org/repo[@rev]`` (a transformers checkpoint of a supported family).

This module decides which model to build and which weights go into it; ``zoo.weights`` fetches and verifies
the files, ``zoo.io`` loads state dicts strictly. A card and a ``config.json`` are untrusted input: their file
names stay inside their folders, and a spec that asks to run a checkpoint's own code is refused unless the
caller passes ``trust_remote_code=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.paths import check_relative_name, confined
from zoo.cards import ModelCard, card
from zoo.converters.families import Conversion, convert_config
from zoo.errors import ModelNotFoundError, WeightsError
from zoo.io import CONFIG_FILE, load_safetensors, load_state_strict, place_model
from zoo.spec import ModelSpec, SpecError, generation_from_checkpoint, spec_from_dict
from zoo.weights import fetch_weights, hub_weight_files, source_state
from zoo.weights.checkpoint import (
    HF_PREFIX,
    HFCheckpoint,
    checkpoint_state,
    fetch_checkpoint,
    parse_hf_reference,
    read_config,
    read_json_object,
    weight_files,
)
from zoo.weights.hub import hub_access, hub_file, spec_hub_files
from zoo.weights.sources import DECLARABLE_DTYPES
from zoo.weights.verify import check_sha256_field, verify_sha256

HUB_PREFIX = "hf-hub:"
GENERATION_CONFIG = "generation_config.json"  # a transformers checkpoint's generation defaults
LOCAL_PREFIX = "local-dir:"


def _card_meta(model_card: ModelCard) -> dict[str, Any]:
    return {
        "name": model_card.name,
        "description": model_card.description,
        "license": model_card.license,
        "eval_results": model_card.eval_results,
        "body": model_card.body,
    }


def _subject(model_card: ModelCard | None) -> str:
    """How an error names what was being built."""
    return f"model {model_card.name!r}" if model_card is not None else "the spec"


def _as_spec(name_or_spec: str | Mapping[str, Any] | ModelSpec) -> tuple[ModelSpec, ModelCard | None]:
    if isinstance(name_or_spec, str):
        model_card = card(name_or_spec)
        return spec_from_dict(model_card.spec), model_card
    if isinstance(name_or_spec, Mapping):
        return spec_from_dict(name_or_spec), None
    return name_or_spec, None


def refuse_remote_code(spec: Any, where: str, trust_remote_code: bool) -> None:
    """Refuse an untrusted spec (from a card or ``config.json``) that sets ``trust_remote_code``: it would run
    Python code shipped with a checkpoint. Only the caller can allow that."""
    if trust_remote_code:
        return
    found = _remote_code_paths(spec, "spec")
    if found:
        raise SpecError(
            f"{where} sets trust_remote_code at {', '.join(found)}, which would run code shipped with a checkpoint. "
            "A card cannot decide that; if you trust that code, pass trust_remote_code=True to zoo.load"
        )


def _remote_code_paths(data: Any, where: str) -> list[str]:
    if isinstance(data, Mapping):
        found = [f"{where}.trust_remote_code"] if data.get("trust_remote_code") not in (None, False) else []
        for key, value in data.items():
            found += _remote_code_paths(value, f"{where}.{key}")
        return found
    if isinstance(data, list):
        return [path for i, value in enumerate(data) for path in _remote_code_paths(value, f"{where}[{i}]")]
    return []


def build(name_or_spec: str | Mapping[str, Any] | ModelSpec, trust_remote_code: bool = False) -> Any:
    """A model with freshly initialised weights (seeded by ``spec.seed``), from a card name or a spec."""
    from zoo.assembly import build_model

    spec, model_card = _as_spec(name_or_spec)
    if model_card is not None:
        refuse_remote_code(model_card.spec, model_card.path, trust_remote_code)
    with hub_access(spec_hub_files(spec, weights=False), f"cannot build {_subject(model_card)}"):
        model = build_model(spec, load_pretrained=False)
    model.card_meta = _card_meta(model_card) if model_card else {}
    return model


def load(
    name_or_path: str | Path | Mapping[str, Any] | ModelSpec | ModelCard,
    device: Any = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    allow_dtype_cast: bool = False,
    trust_remote_code: bool = False,
) -> Any:
    """A model with its weights, in eval mode.

    ``name_or_path`` is a card name (``zoo list``), a parsed :class:`~zoo.cards.ModelCard` (e.g. a card of
    your own, or a shipped one pointed at a local copy), a local directory (or ``local-dir:PATH``) written by
    ``save_pretrained``, ``hf-hub:org/repo[@revision]``, ``hf:org/repo[@revision]`` or ``hf:DIR`` (a
    transformers checkpoint, e.g. a LLaVA-1.5, built as the family its config.json ``model_type`` names), or a
    spec whose components name their own pretrained weights (e.g. an open_clip tag). ``weights_dir`` takes a card's weight files from a local
    folder (checked by sha256) instead of downloading them; files not in it come from their usual sources.
    Weights load strictly: a tensor whose dtype differs from the model's (and from the dtype its card or
    config declares) is an error unless ``allow_dtype_cast``; a card or config that sets
    ``trust_remote_code`` is refused unless ``trust_remote_code``.
    """
    if isinstance(name_or_path, ModelCard):
        return _load_card(name_or_path, device, dtype, weights_dir, allow_dtype_cast, trust_remote_code)
    if not isinstance(name_or_path, (str, Path)):
        from zoo.assembly import build_model

        spec, _ = _as_spec(name_or_path)
        with hub_access(spec_hub_files(spec, weights=True), "cannot load the spec"):
            model = build_model(spec, load_pretrained=True)
        model.card_meta = {}
        return place_model(model, device, dtype)
    name = str(name_or_path)
    if name.startswith(HF_PREFIX):
        return _load_hf_checkpoint(name, device, dtype, allow_dtype_cast)
    if name.startswith(HUB_PREFIX):
        repo, _, revision = name[len(HUB_PREFIX) :].partition("@")
        directory = fetch_hub_directory(repo, revision or None)
        return load_directory(directory, device, dtype, allow_dtype_cast, trust_remote_code)
    if name.startswith(LOCAL_PREFIX) or Path(name).is_dir():
        path = Path(name[len(LOCAL_PREFIX) :] if name.startswith(LOCAL_PREFIX) else name)
        if not path.is_dir():
            raise ModelNotFoundError(f"no directory {path}")
        return load_directory(path, device, dtype, allow_dtype_cast, trust_remote_code)
    if os.sep in name or name.startswith("."):
        raise ModelNotFoundError(f"no directory {name}; give an existing directory or a model name (`zoo list`)")
    return _load_card(card(name), device, dtype, weights_dir, allow_dtype_cast, trust_remote_code)


def _load_card(
    model_card: ModelCard,
    device: Any,
    dtype: Any,
    weights_dir: str | Path | None,
    allow_dtype_cast: bool,
    trust_remote_code: bool,
) -> Any:
    from zoo.assembly import build_model

    refuse_remote_code(model_card.spec, model_card.path or model_card.name, trust_remote_code)
    spec = spec_from_dict(model_card.spec)
    folder = Path(weights_dir) if weights_dir is not None else None
    needs = spec_hub_files(spec, weights=not model_card.weights) + hub_weight_files(model_card.weights, folder)
    with hub_access(needs, f"cannot load {_subject(model_card)}"):
        model = build_model(spec, load_pretrained=not model_card.weights)
    if model_card.weights:
        import torch

        state: dict[str, Any] = {}
        for source in model_card.weights:
            if source.format == "asset":
                continue
            tensors = source_state(source, folder)
            if twice := sorted(state.keys() & tensors.keys()):
                raise WeightsError(
                    f"{source.file} repeats {len(twice)} key(s) of an earlier weight file: {', '.join(twice[:10])}"
                )
            state.update(tensors)
        declared = {getattr(torch, s.dtype) for s in model_card.weights if s.dtype}
        load_state_strict(model, state, f"the weights of {model_card.name}", declared, allow_dtype_cast)
        for source in model_card.weights:
            if source.format == "asset":
                model.load_asset(source.asset, fetch_weights(source, folder).read_bytes())
    model.card_meta = _card_meta(model_card)
    return place_model(model, device, dtype)


def hf_checkpoint_conversion(name: str, weights: bool = False) -> tuple[HFCheckpoint, Path, dict[str, Any], Conversion]:
    """What ``hf:REF`` is: the parsed reference, its fetched folder (the weights too with ``weights``), its
    config.json and the family's :class:`Conversion` of it (a Hub checkpoint pinned to the commit fetched)."""
    checkpoint = parse_hf_reference(name)
    folder, commit = fetch_checkpoint(checkpoint, weights)
    config = read_config(folder, name)
    conversion = convert_config(config, checkpoint.pretrained, commit, name)
    generation = _checkpoint_generation(folder, name)
    if generation is not None:  # it replaces the defaults the family read from config.json, as in transformers
        conversion = dataclasses.replace(conversion, spec={**conversion.spec, "generation": generation})
    return checkpoint, folder, config, conversion


def _checkpoint_generation(folder: Path, name: str) -> dict[str, Any] | None:
    """The generation defaults the checkpoint's ``generation_config.json`` sets (untrusted: only plain
    :data:`~zoo.spec.GENERATION_FIELDS` are read, each checked), or None when it has no such file."""
    path = folder / GENERATION_CONFIG
    if not path.is_file():
        return None
    where = f"{name} {GENERATION_CONFIG}"
    return generation_from_checkpoint(read_json_object(path, where), where)


def _load_hf_checkpoint(name: str, device: Any, dtype: Any, allow_dtype_cast: bool) -> Any:
    """A transformers checkpoint as the zoo model its family builds, its safetensors loaded strictly through the
    family's key map. The dtype its config.json declares may be cast to the model's."""
    import torch

    from zoo.assembly import build_model

    checkpoint, folder, config, conversion = hf_checkpoint_conversion(name, weights=True)
    spec = spec_from_dict(conversion.spec)
    with hub_access(spec_hub_files(spec, weights=False), f"cannot load {name}"):
        model = build_model(spec, load_pretrained=False)
    wrong = {m: (model.processor.placeholder_ids.get(m), i) for m, i in conversion.placeholder_ids.items()
             if model.processor.placeholder_ids.get(m) != i}
    if wrong:
        raise WeightsError(f"{name}: the tokenizer's placeholder ids {wrong} (ours, the checkpoint's) differ; the "
                           "checkpoint's tokenizer must hold its placeholder tokens at the ids its config.json names")
    state = checkpoint_state(weight_files(checkpoint, folder), conversion.key_map, name)
    own = model.state_dict()
    for key in conversion.zero_when_absent:  # tensors the family's files may lack, zero as the reference leaves them
        if key not in state:
            state[key] = torch.zeros_like(own[key])
    declared = {getattr(torch, config[k]) for k in ("torch_dtype", "dtype") if config.get(k) in DECLARABLE_DTYPES}
    load_state_strict(model, state, f"the weights of {name}", declared, allow_dtype_cast)
    model.card_meta = {"name": name}
    return place_model(model, device, dtype)


def load_directory(
    directory: Path, device: Any = None, dtype: Any = None, allow_dtype_cast: bool = False,
    trust_remote_code: bool = False,
) -> Any:
    """Load a ``save_pretrained`` directory strictly, checking the weights' sha256 against config.json."""
    import torch

    from zoo.assembly import build_model
    from zoo.models.pretrained import apply_adapter_records

    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ModelNotFoundError(f"{directory} has no {CONFIG_FILE}; it is not a modalzoo model directory")
    config = _read_config(config_path)
    refuse_remote_code(config["spec"], str(config_path), trust_remote_code)
    record = config["weights"]
    weights = confined(directory, record["file"], f"{config_path} weights.file")
    if not weights.is_file():
        raise ModelNotFoundError(f"{directory} has no {record['file']}; the save was incomplete — save it again")
    verify_sha256(weights, check_sha256_field(record["sha256"], f"{config_path} weights"))
    spec = spec_from_dict(config["spec"])
    with hub_access(spec_hub_files(spec, weights=False, tokenizers=False), f"cannot load {directory}"):
        model = build_model(spec, load_pretrained=False, saved_processor=config["processor"], saved_dir=directory)
    apply_adapter_records(model, config.get("adapters"), str(config_path))  # the weights hold their tensors too
    declared = {getattr(torch, name) for name in record.get("dtypes", [])}
    load_state_strict(model, load_safetensors(weights), str(weights), declared, allow_dtype_cast)
    for name, digest in config.get("assets", {}).items():
        path = confined(directory, name, f"{config_path} assets")
        verify_sha256(path, check_sha256_field(digest, f"{config_path} assets.{name}"))
        model.load_asset(name, path.read_bytes())
    model.card_meta = {"name": config.get("name", directory.name)}
    return place_model(model, device, dtype)


def _read_config(path: Path) -> dict[str, Any]:
    """config.json as written by ``save_pretrained``, its shape checked before any field is used."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WeightsError(f"{path} is not valid JSON ({err}); save the model again") from err
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("spec", "weights")):
        raise WeightsError(f"{path} lacks the 'spec' and 'weights' mappings save_pretrained writes; save it again")
    if not isinstance(config.get("assets", {}), dict):
        raise WeightsError(f"{path} assets must map file names to sha256, got {config['assets']!r}")
    dtypes = config["weights"].get("dtypes", [])
    if not isinstance(dtypes, list) or any(d not in DECLARABLE_DTYPES for d in dtypes):
        raise WeightsError(f"{path} weights.dtypes must list names from {', '.join(DECLARABLE_DTYPES)}, got {dtypes!r}")
    return config


def fetch_hub_directory(repo: str, revision: str | None) -> Path:
    """Fetch a modalzoo model repo: config.json first, then every file it lists (each a relative name)."""
    config_path = hub_file(repo, CONFIG_FILE, revision)
    listed = _read_config(config_path).get("files")
    if not listed or not isinstance(listed, list):
        raise WeightsError(f"hf-hub:{repo} config.json lists no files; it was not written by save_pretrained")
    for filename in listed:
        check_relative_name(filename, f"hf-hub:{repo} config.json files")
        if filename != CONFIG_FILE:
            hub_file(repo, filename, revision)
    return config_path.parent
