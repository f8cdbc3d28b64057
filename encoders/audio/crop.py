"""Fit a waveform to a maximum length: keep the start (evaluation) or a seeded random window (training).

LAION-CLAP crops long audio at random with the global RNG, so its embeddings change from run to run. Here
evaluation never crops at random, and training crops come from a generator seeded explicitly, so the same seed
gives the same sequence of crops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CROP_MODES: tuple[str, ...] = ("start", "random")


class CropPolicy:
    """How audio longer than the maximum is shortened: ``"start"`` keeps the first ``max_samples`` (the
    default, deterministic), ``"random"`` keeps a window chosen by a generator seeded with ``seed`` (required).
    ``reset()`` restarts the random sequence."""

    def __init__(self, mode: str = "start", seed: int | None = None) -> None:
        if mode not in CROP_MODES:
            raise ValueError(f"unknown crop mode {mode!r}; allowed: {', '.join(CROP_MODES)}")
        if mode == "random" and seed is None:
            raise ValueError("crop mode 'random' needs an explicit seed, e.g. CropPolicy('random', seed=0)")
        self.mode = mode
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Restart the random crops from the seed."""
        self._rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return f"CropPolicy(mode={self.mode!r}, seed={self.seed!r})"

    def __call__(self, waveform: torch.Tensor, max_samples: int | None, pad: bool = False) -> torch.Tensor:
        """``waveform`` ``[T]`` cut to at most ``max_samples``; with ``pad``, zero-padded at the end to exactly that."""
        if max_samples is None:
            return waveform
        excess = waveform.shape[-1] - max_samples
        if excess > 0:
            start = int(self._rng.integers(0, excess + 1)) if self.mode == "random" else 0
            return waveform[start : start + max_samples]
        if pad and excess < 0:
            return F.pad(waveform, (0, -excess))
        return waveform
