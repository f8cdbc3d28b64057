"""Checkpoints that are atomic, complete and tied to their base model.

A checkpoint is ``output_dir/checkpoints/step-NNNNNNNN/``: accelerate's ``save_state`` (optimizer,
scheduler, per-process RNG states, accelerate's step counter) plus ``trainable.safetensors`` (only the
parameters that train; under FSDP/DeepSpeed accelerate writes its own sharded model instead) and
``trainer_state.json`` (data position, early-stopping state, the training config, the data checksum and the
base model's fingerprint), and last ``manifest.json`` (every file's sha256 and size, see ``manifest.py``).
Everything is written into ``.step-NNNNNNNN.partial`` and renamed into place, so a killed run never leaves a
half-written checkpoint visible; a checkpoint damaged later (a truncated file, a lost manifest) is found by
its manifest, and the resume falls back to the newest complete one. A new checkpoint is verified before an
older one is deleted.

The random states are checked apart from the rest: a run can go on without them (only dropout and other
random draws then differ from an uninterrupted run), so an unreadable one is an error the user may waive
(``allow_rng_reset``) rather than a reason to discard the checkpoint.

The base fingerprint (card name, spec, sha256 of a canonical serialisation of the state dict) is what
makes a trainable-only file safe: loading it onto a model whose weights hash differently is refused. The
same weights + ``adapter.json`` layout holds ``best/`` and an unmerged ``final/``; :func:`load_adapter`
applies one to its base model.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.io import WeightsError, check_keys
from zoo.training.config import TrainingConfig, TrainingError
from zoo.training.manifest import IncompleteError, check_file, read_manifest, verify, write_manifest
from zoo.training.stages import apply_stage

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"
ADAPTER_FILE = "adapter.json"
PREFIX = "step-"
STEP_DIR = re.compile(rf"{PREFIX}(\d{{8,}})")
RNG_FILE = re.compile(r"random_states_(\d+)\.pkl")  # accelerate's per-process RNG state
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")  # what accelerate restores from it


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


def _trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The live tensors training changes: the parameters that train, and the persistent buffers of the modules
    that own them (a training batch norm's running statistics move with its weights, so a checkpoint or the
    best step without them would pair the weights of one step with the statistics of another)."""
    tensors = {n: p for n, p in model.named_parameters() if p.requires_grad}
    persistent = set(model.state_dict(keep_vars=True))
    for prefix, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            for name, buffer in module.named_buffers(recurse=False):
                key = f"{prefix}.{name}" if prefix else name
                if key in persistent:
                    tensors[key] = buffer
    return tensors


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().contiguous() for n, t in _trainable_tensors(model).items()}


def save_trainable(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(trainable_state(model), str(path))


def load_trainable(model: nn.Module, path: Path) -> None:
    """Load a trainable-only file; its keys must be exactly the model's trainable parameters and their modules'
    buffers (:func:`trainable_state`)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    params = _trainable_tensors(model)
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
    from zoo.io import publish_directory

    publish_directory(staging, target)


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
        """Checkpoint directories, complete or not, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if STEP_DIR.fullmatch(p.name) and p.is_dir()), key=_step)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Every process calls this; the main process writes the manifest last, publishes the directory once all
        have written, verifies it, and only then deletes checkpoints older than the newest ``keep``."""
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
            write_manifest(staging)
            publish(staging, target)
            try:
                self.check(target)
            except IncompleteError as err:
                raise TrainingError(f"the checkpoint just written, {target}, does not verify: {err}. The older "
                                    "checkpoints were kept; check the disk, then run the same command to resume") from err
            older = [p for p in self.list() if _step(p) < step]
            for old in older[: max(0, len(older) - self.keep + 1)]:
                remove(old)
        self.accelerator.wait_for_everyone()
        return target

    @staticmethod
    def check(path: Path) -> None:
        """Raise :class:`IncompleteError` unless every file of ``path`` but the random states matches its
        manifest and its ``trainer_state.json`` is for the step the directory is named after."""
        verify(path, exempt=lambda name: RNG_FILE.fullmatch(name) is not None)
        try:
            step = json.loads((path / STATE_FILE).read_text())["position"]["step"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise IncompleteError(f"its {STATE_FILE} is unreadable ({err!r})") from err
        if step != _step(path):
            raise IncompleteError(f"its {STATE_FILE} is for step {step}")

    def latest_complete(self) -> Path | None:
        """The newest complete checkpoint (chosen on the main process, the same on all), or ``None`` when there
        is no checkpoint at all. Warns about each newer one passed over; an error when none is complete."""
        from accelerate.utils import broadcast

        found = {_step(p): p for p in self.list()}
        if not found:
            return None
        chosen, passed = -1, []
        if self.accelerator.is_main_process:
            for step in sorted(found, reverse=True):
                try:
                    self.check(found[step])
                except IncompleteError as err:
                    passed.append((found[step], err))
                    continue
                chosen = step
                break
        chosen = int(broadcast(torch.tensor([chosen], device=self.accelerator.device))[0])
        if chosen < 0:
            why = "; ".join(f"{path.name}: {err}" for path, err in passed) or "the main process lists why"
            raise TrainingError(f"no checkpoint in {self.root} is complete, so the run cannot resume ({why}). "
                                f"Move {self.root} away, or use a new output_dir, to start over")
        for path, err in passed:
            warnings.warn(f"ignoring incomplete checkpoint {path}: {err}; resuming from {found[chosen].name}", stacklevel=2)
        return found[chosen]

    @staticmethod
    def state(path: Path) -> dict[str, Any]:
        """A checkpoint's ``trainer_state.json``."""
        return json.loads((path / STATE_FILE).read_text())

    def load(self, path: Path, allow_rng_reset: bool, reseed: int) -> None:
        """Restore weights, optimizer, scheduler, accelerate's step counter and every process's RNG states.

        A random state that cannot be restored is an error, unless ``allow_rng_reset``: then every process is
        seeded with ``reseed`` instead, with a warning.
        """
        from accelerate.utils import set_seed

        problems = self._rng_problems(path)
        if problems and not allow_rng_reset:
            raise TrainingError(
                f"cannot restore the random states saved in {path}: {'; '.join(problems)}. Pass --allow-rng-reset "
                "(allow_rng_reset=True) to resume from it with freshly seeded random states (dropout and other random "
                f"draws then differ from an uninterrupted run), or delete {path} to resume from the checkpoint before it"
            )
        self.accelerator.load_state(str(path))
        if not problems:
            return
        set_seed(reseed)
        self.accelerator.step = 0  # accelerate's accumulation counter lives in the RNG file; 0 mod grad_accum here
        if self.accelerator.is_main_process:
            warnings.warn(f"{'; '.join(problems)}; resuming from {path.name} with random states seeded from {reseed} "
                          "(allow_rng_reset)", stacklevel=2)

    def _rng_problems(self, path: Path) -> list[str]:
        """Why the saved random states of this run's processes cannot be restored from ``path`` (empty: they can).

        Every process checks every process's file, so all reach the same decision.
        """
        from accelerate.utils import load

        files = read_manifest(path)
        saved = sum(1 for name in files if RNG_FILE.fullmatch(name))
        if saved < self.accelerator.num_processes and self.accelerator.is_main_process:
            warnings.warn(f"{path} holds random states for {saved} process(es); the other processes of this run start "
                          "from the seed", stacklevel=3)
        keys = RNG_KEYS + (("torch_cuda_manual_seed",) if torch.cuda.is_available() else ())
        problems = []
        for index in range(min(saved, self.accelerator.num_processes)):
            file = path / f"random_states_{index}.pkl"
            try:
                if file.name not in files:
                    raise IncompleteError(f"{file.name} is not in the manifest")
                check_file(file, files[file.name])
                states = load(file, weights_only=True)
                missing = [key for key in keys if key not in states]
                if missing:
                    raise IncompleteError(f"{file.name} has no {', '.join(missing)}")
            except pickle.UnpicklingError:
                problems.append(f"unreadable random state {file} (torch.load with weights_only=True refused it: it "
                                "holds more than tensors and plain values, so it is damaged or was not written here)")
            except Exception as err:  # any other failure to read it (missing, truncated...) means the same
                problems.append(f"unreadable random state {file} ({err})")
        return problems


def _step(path: Path) -> int:
    return int(STEP_DIR.fullmatch(path.name)[1])


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
