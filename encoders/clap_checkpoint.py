"""One tower's share of a transformers ``ClapModel`` checkpoint, claimed key by key and loaded strictly.

A CLAP checkpoint (e.g. ``laion/clap-htsat-unfused``) is one file holding both towers, their projections and
the two temperatures. Each of our CLAP towers (``encoders.audio.clap``, ``encoders.text.clap``) reads its own
share: every key of the file must be claimed (this tower's, the other tower's, one of the two logit scales, or
a derived buffer such as a position-index table, which the config rebuilds) and every tensor of the tower must
be filled. transformers' ``ClapAudioModelWithProjection.from_pretrained`` would instead log the text half as
unexpected and go on, so a checkpoint of another layout could half-load without an error.

The tower modules are transformers' ``Clap*ModelWithProjection``, whose keys are the checkpoint's own
(``audio_model.*``, ``audio_projection.*``, ``text_model.*``, ``text_projection.*``): a claimed key loads
under its own name.
"""

from __future__ import annotations

import re

import torch
from torch import nn

# transformers' file names, in its order: safetensors first; a pickle is read with weights_only=True.
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
TOWER_PREFIXES: dict[str, tuple[str, ...]] = {
    "audio": ("audio_model.", "audio_projection."),
    "text": ("text_model.", "text_projection."),
}
# ClapModel's temperatures: logit_scale_a scales logits_per_audio, logit_scale_t logits_per_text.
LOGIT_SCALES: tuple[str, ...] = ("logit_scale_a", "logit_scale_t")
# Buffers computed from the config (an arange, zeros, a relative-position index), rebuilt rather than read:
# older transformers versions did not save all of them.
DERIVED = re.compile(r"text_model\.embeddings\.(position_ids|token_type_ids)|audio_model\..+\.relative_position_index")


def checkpoint_file(source: str, revision: str | None) -> str:
    """The local path of the checkpoint's weights file (a directory's, or a Hub repo's through the Hugging Face
    cache): ``model.safetensors``, else ``pytorch_model.bin``."""
    from transformers.utils import cached_file

    for name in WEIGHT_FILES:
        path = cached_file(source, name, revision=revision, _raise_exceptions_for_missing_entries=False)
        if path is not None:
            return path
    raise FileNotFoundError(
        f"{source} has neither {' nor '.join(WEIGHT_FILES)}; a CLAP tower loads one unsharded transformers "
        "ClapModel checkpoint (save one with ClapModel.save_pretrained)"
    )


def claim(keys: list[str], tower: str, what: str) -> tuple[list[str], list[str]]:
    """``(this tower's keys, the logit-scale keys)`` of a checkpoint; a key that belongs to no tower and is no
    logit scale is an error (the file is not a ClapModel checkpoint)."""
    anywhere = tuple(prefix for prefixes in TOWER_PREFIXES.values() for prefix in prefixes)
    strangers = sorted(k for k in keys if not k.startswith(anywhere) and k not in LOGIT_SCALES)
    if strangers:
        raise ValueError(
            f"{len(strangers)} key(s) of {what} belong to no CLAP tower (not a transformers ClapModel "
            f"checkpoint?): {', '.join(strangers[:5])}"
        )
    own = [k for k in keys if k.startswith(TOWER_PREFIXES[tower]) and not DERIVED.fullmatch(k)]
    return own, [k for k in keys if k in LOGIT_SCALES]


def _share(path: str, tower: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``tower``'s tensors and the logit scales of the checkpoint file at ``path`` (safetensors: read only those)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as file:
            own, scales = claim(list(file.keys()), tower, path)
            return {k: file.get_tensor(k) for k in own}, {k: float(file.get_tensor(k)) for k in scales}
    state = torch.load(path, map_location="cpu", weights_only=True)
    own, scales = claim(list(state), tower, path)
    return {k: state[k] for k in own}, {k: float(state[k]) for k in scales}


def load_tower(module: nn.Module, source: str, revision: str | None, tower: str) -> dict[str, float]:
    """Fill every tensor of ``module`` (a ``Clap{Audio,Text}ModelWithProjection``) from ``tower``'s share of the
    checkpoint at ``source``; derived buffers keep the values the config gave them. Returns the checkpoint's
    logit scales by name (empty when it has none, e.g. a single-tower checkpoint). A missing, extra or
    misshapen tensor is an error naming it."""
    path = checkpoint_file(source, revision)
    tensors, scales = _share(path, tower)
    derived = {k: v for k, v in module.state_dict().items() if DERIVED.fullmatch(k)}
    try:
        module.load_state_dict({**derived, **tensors}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the {tower} tower of {path} does not fit this CLAP config: {err}") from err
    return scales
