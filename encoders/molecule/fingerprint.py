"""The ``fingerprint`` encoder: RDKit Morgan (count) fingerprints of SMILES, one token per molecule.

No learned parameters: the processor computes the fingerprint with RDKit's fingerprint generator (radius and
size from the config), the encoder only shapes it into the encoder contract. A head on top (an MLP over a
template library, a linear probe) does the learning, as in NeuralSym (Segler & Waller 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.molecule.parsing import InvalidMoleculeError, parse_smiles

TRANSFORMS: tuple[str, ...] = ("log1p", "counts", "binary")


@dataclass(frozen=True)
class FingerprintConfig:
    """Morgan fingerprint settings. ``transform``: ``log1p`` of the counts (NeuralSym's choice), the raw
    ``counts``, or ``binary`` bits. ``chirality`` adds chirality to the atom invariants."""

    radius: int = 2
    size: int = 2048
    transform: str = "log1p"
    chirality: bool = False

    def __post_init__(self) -> None:
        if self.radius < 0 or self.size < 1:
            raise ValueError(f"radius must be >= 0 and size >= 1, got {self.radius}, {self.size}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; allowed: {', '.join(TRANSFORMS)}")

    def num_tokens(self, size: int) -> int:
        """One token per molecule, whatever its size."""
        return 1


class FingerprintProcessor:
    """SMILES (or RDKit ``Mol``) items -> a ``[B, size]`` float tensor of transformed fingerprint counts."""

    def __init__(self, config: FingerprintConfig) -> None:
        self.config = config
        self._generator = rdFingerprintGenerator.GetMorganGenerator(
            radius=config.radius, fpSize=config.size, includeChirality=config.chirality
        )

    def fingerprint(self, item: object, index: int = 0) -> np.ndarray:
        """One item's transformed fingerprint; an invalid item raises an error naming it."""
        if isinstance(item, str):
            try:
                with rdBase.BlockLogs():
                    mol = parse_smiles(item)
            except InvalidMoleculeError as err:
                raise InvalidMoleculeError(f"molecule item {index}: {err}") from err
        elif isinstance(item, Chem.Mol):
            mol = item
        else:
            raise InvalidInputError(f"molecule item {index} is a {type(item).__name__}, expected a SMILES string")
        counts = self._generator.GetCountFingerprintAsNumPy(mol).astype(np.float32)
        if self.config.transform == "log1p":
            return np.log1p(counts)
        return (counts > 0).astype(np.float32) if self.config.transform == "binary" else counts

    def __call__(self, items: Sequence[object]) -> ProcessedBatch:
        if isinstance(items, str) or not items:
            raise InvalidInputError(f"expected a non-empty list of SMILES strings, got {items!r:.80}")
        rows = [self.fingerprint(item, i) for i, item in enumerate(items)]
        return ProcessedBatch(inputs={"fingerprints": torch.from_numpy(np.stack(rows))}, sizes=[1] * len(rows))


class FingerprintEncoder(nn.Module):
    """Shapes a batch of fingerprints into the encoder contract: one token per molecule, pooled = that token."""

    modality = "smiles"
    config_class = FingerprintConfig
    processor_class = FingerprintProcessor

    def __init__(self, config: FingerprintConfig, load_pretrained: bool = True) -> None:
        """``load_pretrained`` is part of the encoder contract; a fingerprint has nothing to load."""
        super().__init__()
        self.config = config
        self.hidden_size = config.size

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, fingerprints: torch.Tensor) -> EncoderOutput:
        if fingerprints.dim() != 2 or fingerprints.size(1) != self.config.size:
            raise ValueError(f"fingerprints must have shape [B, {self.config.size}], got {tuple(fingerprints.shape)}")
        mask = torch.ones(fingerprints.size(0), 1, dtype=torch.bool, device=fingerprints.device)
        return EncoderOutput(tokens=fingerprints.unsqueeze(1), mask=mask, pooled=fingerprints)
