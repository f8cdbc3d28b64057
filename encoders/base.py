"""The encoder contract every modality encoder meets, so any encoder can feed any projector.

An encoder is an ``nn.Module`` with a ``modality`` (one of :data:`MODALITIES`), a ``hidden_size`` and a
``forward(**batch) -> EncoderOutput``. Its processor turns raw items into that batch. Both are built from
the same config object, whose ``num_tokens(size)`` is the single source of the per-item token count: the
processor uses it to expand placeholders, the encoder's mask obeys it, and the composed model checks it.

Processors give float32; a model hands their output to its encoders on the encoder's device, floating-point
tensors in the encoder's dtype (``zoo.processing.move_to``), so an encoder casts only float features it
computes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MODALITIES: tuple[str, ...] = ("image", "molecule_graph", "smiles", "audio", "audio_codec", "text")


class InvalidInputError(ValueError):
    """A raw input item that cannot be processed; the message names the item and what to do."""


@dataclass
class EncoderOutput:
    """What every encoder returns.

    tokens: ``[B, N, D]`` per-item token features (padded to the longest item).
    mask:   ``[B, N]`` bool, True where a token is real.
    pooled: ``[B, D]`` one vector per item.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        b, n, _ = self.tokens.shape
        if tuple(self.mask.shape) != (b, n):
            raise ValueError(f"EncoderOutput.mask has shape {tuple(self.mask.shape)}, expected {(b, n)}")
        if self.pooled.shape[0] != b:
            raise ValueError(f"EncoderOutput.pooled has batch {self.pooled.shape[0]}, expected {b}")


def check_modality(modality: str) -> str:
    """Return ``modality`` if it is a known modality name, else raise naming the allowed ones."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
    return modality


@dataclass
class ProcessedBatch:
    """A processor's output for a list of items of one modality.

    inputs: keyword arguments for the encoder's ``forward`` (batched tensors, a PyG ``Batch``, ...).
    sizes:  one entry per item, the argument the config's ``num_tokens`` takes (atoms, (H, W), samples).
    """

    inputs: dict[str, Any]
    sizes: list[Any]

    def __len__(self) -> int:
        return len(self.sizes)
