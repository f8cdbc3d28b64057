"""A frequency-convolution stem for the spectrogram transformer: what is heard, apart from where on the
frequency axis it is heard.

A linear patch embedding over all bins ties a sound's timbre to the bins it was heard at: trained on tones
heard only low and mid, it calls a high tone a high chime (audio-clip-tiny's validation, zero-shot top-1 on
held-out pitch x timbre classes: under 1 % with a linear stem, 12-52 % with this one depending on the run,
chance 7 %). This stem slides the same small filters (two 2-D convolutions, 5 bins x 3 frames, GELU) over every
frequency, so one pattern (a lone partial, a stack of harmonics, a decaying onset) gives the same response
wherever it sits, and keeps per channel and frame:

- *what*: the mean and the maximum of its response over frequency, which do not change when the sound moves
  up or down the frequency axis;
- *where*: the soft-argmax of its response along the frequency axis, in [-1, 1] (for a harmonic sound the
  place of its strongest partial).

A linear layer maps each patch of ``patch_frames`` frames of these ``3 * channels`` features to a token.
Frames past an item's length are zeroed before and after each convolution, as the convolution's own padding
is, so an item's tokens do not depend on the longer items it is batched with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Log-mel / fbank features are natural-log energies, about -23 (the floor) to +5 for 16-bit audio: shifted and
# scaled to about [-3, 3] before the convolutions.
FEATURE_SHIFT, FEATURE_SCALE = 10.0, 5.0
KERNEL = (5, 3)  # bins x frames


class FrequencyConvStem(nn.Module):
    """``features [B, F, bins]`` (F a multiple of ``patch_frames``) and ``num_frames [B]`` -> tokens
    ``[B, F / patch_frames, hidden_size]``."""

    def __init__(self, num_bins: int, patch_frames: int, hidden_size: int, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"the frequency-conv stem needs at least 1 channel, got {channels}")
        self.patch_frames = patch_frames
        padding = (KERNEL[0] // 2, KERNEL[1] // 2)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, channels, KERNEL, padding=padding), nn.Conv2d(channels, channels, KERNEL, padding=padding)]
        )
        self.register_buffer("positions", torch.linspace(-1.0, 1.0, num_bins), persistent=False)
        self.proj = nn.Linear(3 * channels * patch_frames, hidden_size)

    def frame_features(self, features: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3 * channels]``: per frame, each channel's mean and max over frequency, then its soft-argmax
        position on the frequency axis."""
        real = (torch.arange(features.shape[1], device=features.device)[None, :] < num_frames[:, None])[:, None, None]
        response = torch.where(real, ((features + FEATURE_SHIFT) / FEATURE_SCALE).transpose(1, 2)[:, None], 0.0)
        for conv in self.convs:  # [B, C, bins, F], frames past the item zeroed after every layer
            response = torch.where(real, F.gelu(conv(response)), 0.0)
        where = (response.softmax(dim=2) * self.positions.to(response.dtype)[:, None]).sum(dim=2)
        return torch.cat([response.mean(dim=2), response.amax(dim=2), where], dim=1).transpose(1, 2)

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        per_frame = self.frame_features(features, num_frames)
        batch, frames, width = per_frame.shape
        return self.proj(per_frame.reshape(batch, frames // self.patch_frames, self.patch_frames * width))
