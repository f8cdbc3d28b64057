"""transformers checkpoints named ``hf:REF``: a Hub repo or a local directory in the Hub's layout.

``REF`` is a local directory when it starts with ``/``, ``.`` or ``~`` (``hf:/data/llava``, ``hf:./llava``),
otherwise a Hub repo id with an optional revision (``hf:org/repo@revision``): a repo id never starts with those,
so one rule tells them apart without looking at the disk. Hub files come through huggingface_hub, checked
against the cache first (:func:`~zoo.weights.hub.hub_access`), so offline a missing file fails at once naming
the files and the ``hf download`` command. Weights are safetensors only (``model.safetensors``, or the shards
``model.safetensors.index.json`` lists); every file name the index holds is confined to the checkpoint's root.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.paths import check_relative_name, confined
from zoo.errors import ModelNotFoundError, WeightsError
from zoo.io import load_safetensors
from zoo.weights.hub import CONFIG_PATTERNS, HubFiles, hub_access, is_offline_failure
from zoo.weights.key_maps import rename_state, resolve_key_map

__all__ = ["HF_PREFIX", "HFCheckpoint", "checkpoint_state", "fetch_checkpoint", "parse_hf_reference", "read_config",
           "weight_files", "weight_names"]

HF_PREFIX = "hf:"
CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
_REPO_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HFCheckpoint:
    """A parsed ``hf:`` reference: a Hub ``repo`` (at ``revision``, None for the default branch) or a local
    ``directory``."""

    reference: str
    repo: str | None = None
    revision: str | None = None
    directory: Path | None = None

    @property
    def pretrained(self) -> str:
        """What the spec's components name to read the checkpoint's own files (a repo id or a directory)."""
        return self.repo if self.repo is not None else str(self.directory)

    def hub_files(self, weights: bool) -> HubFiles:
        """The Hub files a load reads: config, tokenizer and processor files, and with ``weights`` the
        safetensors weights."""
        assert self.repo is not None
        if not weights:
            return HubFiles(self.repo, self.revision, (CONFIG,), patterns=CONFIG_PATTERNS, needed_by=(self.reference,))
        return HubFiles(self.repo, self.revision, (CONFIG,), any_of=(INDEX, SINGLE),
                        patterns=(*CONFIG_PATTERNS, "*.safetensors"), needed_by=(self.reference,))


def parse_hf_reference(name: str) -> HFCheckpoint:
    """``hf:org/repo[@revision]`` or ``hf:DIR`` (DIR starting with ``/``, ``.`` or ``~``) as an
    :class:`HFCheckpoint`; anything else is a :class:`ModelNotFoundError` saying what to write."""
    ref = name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name
    if ref.startswith(("/", ".", "~")):
        directory = Path(ref).expanduser()
        if not directory.is_dir():
            raise ModelNotFoundError(f"{name}: no directory {directory}")
        return HFCheckpoint(name, directory=directory)
    repo, _, revision = ref.partition("@")
    if not _REPO_ID.fullmatch(repo) or (revision and not re.fullmatch(r"[\w./-]+", revision)):
        raise ModelNotFoundError(
            f"{name!r} is neither a Hub repo (hf:org/repo or hf:org/repo@revision) nor a local directory (hf:/path, "
            "hf:./path or hf:~/path)"
        )
    return HFCheckpoint(name, repo=repo, revision=revision or None)


def read_config(directory: Path, where: str) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a JSON object; its fields stay data (nothing in it is imported)."""
    path = directory / CONFIG
    if not path.is_file():
        raise ModelNotFoundError(f"{where} has no {CONFIG}; it is not a transformers checkpoint")
    return read_json_object(path, f"{where} {CONFIG}")


def read_json_object(path: Path, where: str) -> dict[str, Any]:
    """A checkpoint file holding one JSON object (config.json, generation_config.json), as plain data."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WeightsError(f"{where} is not valid JSON ({err}); fetch or save the checkpoint again") from err
    if not isinstance(data, dict):
        raise WeightsError(f"{where} must be a JSON object, got {type(data).__name__}")
    return data


def fetch_checkpoint(checkpoint: HFCheckpoint, weights: bool) -> tuple[Path, str | None]:
    """The checkpoint's folder and the commit it is at (None for a local directory). From the Hub: its config,
    tokenizer and processor files, and with ``weights`` its safetensors files, from the cache or downloaded."""
    if checkpoint.directory is not None:
        return checkpoint.directory, None
    from huggingface_hub import hf_hub_download, snapshot_download

    need = checkpoint.hub_files(weights)
    with hub_access([need], f"cannot load {checkpoint.reference}"):
        folder = Path(_from_hub(need, checkpoint.reference, snapshot_download, checkpoint.repo,
                                revision=checkpoint.revision, allow_patterns=list(CONFIG_PATTERNS)))
        commit = folder.name if _COMMIT.fullmatch(folder.name) else checkpoint.revision
        for name in weight_names(folder, checkpoint.reference) if weights else []:
            _from_hub(need, checkpoint.reference, hf_hub_download, checkpoint.repo, name, revision=commit)
    return folder, commit


def _from_hub(need: HubFiles, reference: str, download: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """``download(*args, **kwargs)``, its failures other than being offline (which :func:`hub_access` reports)
    turned into a :class:`ModelNotFoundError` with the command that fetches the files."""
    try:
        return download(*args, **kwargs)
    except Exception as err:  # huggingface_hub raises many types: missing repo/file/revision, HTTP errors
        if is_offline_failure(err):
            raise
        raise ModelNotFoundError(
            f"could not get {reference} ({type(err).__name__}: {err}); check the repo and revision "
            f"(`{need.command()}` fetches the files)"
        ) from err


def weight_names(directory: Path, where: str) -> list[str]:
    """The safetensors files holding the checkpoint's weights, relative to ``directory``: the shards its index
    lists (each name checked to stay inside the folder), else ``model.safetensors``."""
    index = directory / INDEX
    if not index.is_file():
        if (directory / SINGLE).is_file() or not any(directory.glob("*.bin")):
            return [SINGLE]
        raise WeightsError(f"{where} has pytorch .bin weights only; only safetensors are loaded — convert it "
                           f"(save_pretrained with safe_serialization) or pick a revision with {SINGLE}")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (UnicodeDecodeError, ValueError, AttributeError) as err:
        raise WeightsError(f"{where} {INDEX} is not a JSON object with a weight_map ({err})") from err
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise WeightsError(f"{where} {INDEX} has no weight_map mapping tensor names to files")
    names = sorted(set(weight_map.values()), key=str)
    for name in names:
        check_relative_name(name, f"{where} {INDEX} weight_map")
        if not name.endswith(".safetensors"):
            raise WeightsError(f"{where} {INDEX} lists {name!r}; only .safetensors files are loaded")
    return names


def weight_files(checkpoint: HFCheckpoint, folder: Path) -> list[Path]:
    """:func:`weight_names` of the fetched ``folder`` as paths, each confined (through symlinks) to the
    checkpoint's root: the directory itself, or for a Hub snapshot the repo's cache folder, whose snapshot
    files link into its ``blobs``."""
    where = checkpoint.reference
    root = folder if checkpoint.directory is not None else folder.parents[1]
    files = []
    for name in weight_names(folder, where):
        path = confined(root, str((folder / name).relative_to(root)), f"{where} {INDEX} weight_map")
        if not path.is_file():
            raise ModelNotFoundError(f"{where} lacks {name}; save or fetch the whole checkpoint again")
        files.append(path)
    return files


def checkpoint_state(files: list[Path], key_map: str, where: str) -> dict[str, Any]:
    """The tensors of ``files`` renamed by the registered ``key_map`` onto the zoo model's keys; a key that two
    files both hold is an error."""
    state: dict[str, Any] = {}
    for path in files:
        tensors = rename_state(load_safetensors(path), resolve_key_map(key_map, path.name), f"{where} {path.name}")
        if twice := sorted(state.keys() & tensors.keys()):
            raise WeightsError(f"{where}: {path.name} repeats {len(twice)} key(s) of another file: {', '.join(twice[:10])}")
        state.update(tensors)
    return state
