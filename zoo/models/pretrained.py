"""What every zoo model shares: its spec, its processor, its device, ``save_pretrained`` and ``push_to_hub``.

A model carrying fine-tuning adapters that stay at inference (LoRAMoE layers, O-LoRA task adapters) saves them
in config.json's ``adapters`` (:func:`adapter_records`), and ``zoo.load`` re-creates them
(:func:`apply_adapter_records`) before loading the weights strictly, so the saved tensors match the rebuilt
model key for key.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.processing import move_to

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload model saved by modalzoo"


class HubUploadError(RuntimeError):
    """``push_to_hub`` could not create or upload to the Hub repo; the message says what to check."""


class PretrainedMixin:
    """Mixed into ``nn.Module`` models; ``card_meta`` (name, description, license) feeds the saved card."""

    spec: Any
    processor: Any
    card_meta: dict[str, Any]

    @property
    def device(self) -> torch.device:
        """Where the weights are (CPU for a model with none, e.g. a bare fingerprint encoder)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        first = next(self.parameters(), None)
        return first.dtype if first is not None else torch.get_default_dtype()

    def run_encoder(self, encoder: torch.nn.Module, inputs: Mapping[str, Any]) -> Any:
        """``encoder(**inputs)`` with the inputs on the encoder's device and their floating-point tensors in its
        dtype (the model's, for an encoder without weights such as a fingerprint), so processor output (float32)
        feeds a bf16 or fp16 model; ids and masks stay integer. Every model calls its encoders through here."""
        weights = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        device, dtype = (weights.device, weights.dtype) if weights is not None else (self.device, self.dtype)
        return encoder(**move_to(dict(inputs), device, dtype))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (spec + processor config, and the adapters if any), model.safetensors and a
        README.md card, atomically."""
        from zoo.io import save_pretrained

        adapters = adapter_records(self)
        if not adapters:
            return save_pretrained(self, directory)
        return _save_with_adapters(self, Path(directory), adapters)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool = False,
        commit_message: str = DEFAULT_COMMIT_MESSAGE,
        api: Any = None,
    ) -> Any:
        """Save the model with ``save_pretrained`` to a temporary folder and upload that folder to the Hugging
        Face Hub model repo ``repo_id`` ("org/name"), creating the repo if needed (``private`` only applies
        then). Load it back with ``zoo.load("hf-hub:<repo_id>")``. ``token`` defaults to the one saved by
        ``hf auth login``; ``api`` is a ``huggingface_hub.HfApi`` (or anything with its ``create_repo`` and
        ``upload_folder``). Returns what ``upload_folder`` returns (the commit info). A Hub error (not logged
        in, no write access, bad repo id, no network) is raised as :class:`HubUploadError` saying what to do.
        """
        if not isinstance(repo_id, str) or not repo_id.strip("/") or repo_id.count("/") > 1:
            raise ValueError(f"repo_id must be 'name' or 'org/name', got {repo_id!r}")
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        with tempfile.TemporaryDirectory(prefix="modalzoo-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / repo_id.rsplit("/", 1)[-1])
            _point_card_at_hub(folder, repo_id)
            try:
                logger.info("creating (if needed) and uploading %s to the Hub repo %s", folder.name, repo_id)
                api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
                return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                         token=token, repo_type="model")
            except (OSError, ValueError) as err:  # huggingface_hub's HTTP, auth and validation errors
                raise HubUploadError(
                    f"could not push to the Hugging Face Hub repo {repo_id!r}: {type(err).__name__}: {err}\n"
                    "Check that you are logged in (`hf auth login`, or `huggingface-cli login` with an older "
                    "huggingface_hub; or pass token=...), that the token may write to the repo, and that the repo "
                    "id is right ('org/name', an org you belong to)."
                ) from err


def _point_card_at_hub(folder: Path, repo_id: str) -> None:
    """The saved card says ``zoo.load('<the temporary folder>')``; on the Hub it should name the repo."""
    _replace_in_card(folder, f"zoo.load({str(folder)!r})", f"zoo.load({'hf-hub:' + repo_id!r})")


def _replace_in_card(folder: Path, old: str, new: str) -> None:
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        card.write_text(text.replace(old, new), encoding="utf-8")


def _adapter_kinds() -> dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]]:
    """Each adapter kind config.json may name: how to record it from a model, how to re-create it on one."""
    from zoo.training.loramoe import apply_loramoe_record, loramoe_record
    from zoo.training.olora import apply_olora_record, olora_record

    return {"loramoe": (loramoe_record, apply_loramoe_record), "olora": (olora_record, apply_olora_record)}


def adapter_records(model: Any) -> dict[str, Any]:
    """``{kind: record}`` of the adapters ``model`` carries (empty for a plain model)."""
    found = {kind: record(model) for kind, (record, _) in _adapter_kinds().items()}
    return {kind: record for kind, record in found.items() if record is not None}


def apply_adapter_records(model: Any, records: Any, where: str) -> None:
    """Re-create on a freshly built ``model`` the adapters a saved config.json lists (``None``: none).

    The records are untrusted input: an unknown kind or a malformed record is a ``WeightsError``."""
    from zoo.errors import WeightsError

    if records is None:
        return
    kinds = _adapter_kinds()
    if not isinstance(records, Mapping) or set(records) - set(kinds):
        raise WeightsError(f"{where}: adapters must map adapter kinds ({', '.join(kinds)}) to their records, got "
                           f"{sorted(records) if isinstance(records, Mapping) else records!r}; save the model again "
                           "with this modalzoo")
    for kind, record in records.items():
        try:
            kinds[kind][1](model, record)
        except ValueError as err:
            raise WeightsError(f"{where}: adapters.{kind} cannot be applied: {err}") from err


def _save_with_adapters(model: Any, directory: Path, adapters: dict[str, Any]) -> Path:
    """``save_pretrained`` into a staging folder, add ``adapters`` to its config.json, then publish it."""
    from zoo.io import CONFIG_FILE, publish_directory, save_pretrained

    directory.parent.mkdir(parents=True, exist_ok=True)
    outer = Path(tempfile.mkdtemp(prefix=f".{directory.name}.adapters.", dir=directory.parent))
    try:
        staged = save_pretrained(model, outer / directory.name)
        config_path = staged / CONFIG_FILE
        config = json.loads(config_path.read_text())
        config["adapters"] = adapters
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _replace_in_card(staged, f"zoo.load({str(staged)!r})", f"zoo.load({str(directory)!r})")
        publish_directory(staged, directory)
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    return directory
