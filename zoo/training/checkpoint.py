"""Checkpoints that are atomic, complete and tied to their base model.

A checkpoint is ``output_dir/checkpoints/step-NNNNNNNN/``: accelerate's ``save_state`` (optimizer,
scheduler, per-process RNG states, accelerate's step counter) plus ``trainable.safetensors`` (only the
parameters that train; under FSDP/DeepSpeed accelerate writes its own sharded model instead) and
``trainer_state.json`` (data position, early-stopping state, the training config, the data checksum and the
base model's fingerprint). Everything is written into ``.step-NNNNNNNN.partial`` and renamed into place,
so a killed run never leaves a half-written checkpoint visible.

The base fingerprint (card name, spec, sha256 of a canonical serialisation of the state dict) is what
makes a trainable-only file safe: loading it onto a model whose weights hash differently is refused. The
same weights + ``adapter.json`` layout holds ``best/`` and an unmerged ``final/``; :func:`load_adapter`
applies one to its base model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.io import WeightsError, check_keys
from zoo.training.config import TrainingConfig, TrainingError
from zoo.training.stages import apply_stage

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"
ADAPTER_FILE = "adapter.json"
PREFIX = "step-"


def state_sha256(model: nn.Module) -> str:
    """sha256 over the state dict in key order: each key, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def base_fingerprint(model: nn.Module) -> dict[str, Any]:
    """What a trainable-only file needs to be applied to: the base model's name, spec and weights hash."""
    from zoo.spec import spec_to_dict

    return {
        "name": getattr(model, "card_meta", {}).get("name"),
        "spec": spec_to_dict(model.spec),
        "sha256": state_sha256(model),
    }


def check_base(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint or adapter written on top of other base weights."""
    if saved["sha256"] != current["sha256"]:
        raise TrainingError(
            f"{where} was trained from base model {saved.get('name')!r} (weights sha256 {saved['sha256'][:12]}...), "
            f"but the given model ({current.get('name')!r}) hashes to {current['sha256'][:12]}...; pass the same "
            "base model, or use a new output_dir to start over"
        )


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(trainable_state(model), str(path))


def load_trainable(model: nn.Module, path: Path) -> None:
    """Load a trainable-only file; its keys must be exactly the model's trainable parameters."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    try:
        check_keys(params, state, str(path))
    except WeightsError as err:
        raise TrainingError(f"{err} — it was written for another stage or LoRA setting") from err
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise TrainingError(f"{path}: {name} has shape {tuple(value.shape)}, the model needs {tuple(params[name].shape)}")
            params[name].copy_(value)


def publish(staging: Path, target: Path) -> None:
    """Rename a finished staging directory into place (replacing an older ``target``)."""
    from zoo.io import _replace_dir

    _replace_dir(staging, target)


def remove(directory: Path) -> None:
    """Hide a directory by renaming it, then delete it, so no half-deleted directory stays visible."""
    hidden = directory.with_name(f".{directory.name}.deleting")
    os.replace(directory, hidden)
    shutil.rmtree(hidden)


def save_weights_dir(model: nn.Module, target: Path, meta: dict[str, Any]) -> None:
    """A trainable-only weights directory (``best/``, an unmerged ``final/``): weights + ``adapter.json``."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_trainable(model, staging / WEIGHTS_FILE)
    (staging / ADAPTER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    publish(staging, target)


class Checkpoints:
    """Save, find and load the checkpoints of one run through an ``Accelerator``."""

    def __init__(self, accelerator: Any, root: Path, model: nn.Module, keep: int) -> None:
        self.accelerator = accelerator
        self.root = root
        self.model = model
        self.keep = keep
        accelerator.register_save_state_pre_hook(self._save_weights)
        accelerator.register_load_state_pre_hook(self._load_weights)
        if accelerator.is_main_process and root.is_dir():
            for leftover in root.glob(".*"):  # staging or deleting directories of a killed run
                shutil.rmtree(leftover)
        accelerator.wait_for_everyone()

    def _save_weights(self, models: list[Any], weights: list[Any], output_dir: str) -> None:
        if not weights:
            return  # FSDP / DeepSpeed: accelerate saved its own sharded model
        weights.clear()
        if self.accelerator.is_main_process:
            save_trainable(self.model, Path(output_dir) / WEIGHTS_FILE)

    def _load_weights(self, models: list[Any], input_dir: str) -> None:
        if not models:
            return
        models.clear()
        load_trainable(self.model, Path(input_dir) / WEIGHTS_FILE)

    def list(self) -> list[Path]:
        """Published checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file())

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Every process calls this; the main process publishes the directory once all have written."""
        target = self.root / f"{PREFIX}{step:08d}"
        staging = self.root / f".{target.name}.partial"
        main = self.accelerator.is_main_process
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(staging))
        self.accelerator.wait_for_everyone()
        if main:
            (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
            publish(staging, target)
            for old in self.list()[: -self.keep]:
                remove(old)
        self.accelerator.wait_for_everyone()
        return target

    @staticmethod
    def state(path: Path) -> dict[str, Any]:
        """A checkpoint's ``trainer_state.json``."""
        return json.loads((path / STATE_FILE).read_text())

    def load(self, path: Path) -> None:
        """Restore weights, optimizer, scheduler, accelerate's step counter and every process's RNG states."""
        self.accelerator.load_state(str(path))


def load_adapter(directory: str | Path, base_model: nn.Module) -> nn.Module:
    """Apply a trainable-only directory (an unmerged ``final/`` or ``best/``) to ``base_model``.

    The base model must be the one the run started from (same weights hash), else this refuses. Returns the
    model with the run's stage applied (LoRA-wrapped for ``instruct``), in eval mode.
    """
    directory = Path(directory)
    meta_path = directory / ADAPTER_FILE
    if not meta_path.is_file():
        raise TrainingError(f"{directory} has no {ADAPTER_FILE}; it is not a fine-tuning adapter (a merged final/ loads with zoo.load)")
    meta = json.loads(meta_path.read_text())
    check_base(meta["base"], base_fingerprint(base_model), directory)
    apply_stage(base_model, TrainingConfig.from_kwargs(meta["config"]))
    load_trainable(base_model, directory / WEIGHTS_FILE)
    return base_model.eval()
