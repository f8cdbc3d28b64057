"""The spectrogram transformer's frequency-conv stem: what it hears does not move with pitch, where it hears it
does, and an item's tokens do not depend on the longer items it is batched with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.audio.frequency_stem import FrequencyConvStem
from encoders.audio.spectrogram_transformer import SpectrogramTransformerConfig, SpectrogramTransformerEncoder

BINS, FRAMES, CHANNELS = 32, 8, 4


def _stem() -> FrequencyConvStem:
    torch.manual_seed(0)
    return FrequencyConvStem(BINS, patch_frames=4, hidden_size=16, channels=CHANNELS).eval()


def _partials(lowest: int) -> torch.Tensor:
    """``[1, FRAMES, BINS]`` log energies: silence (-20) with three partials 3 bins apart from bin ``lowest``."""
    features = torch.full((1, FRAMES, BINS), -20.0)
    features[:, :, [lowest, lowest + 3, lowest + 6]] = torch.tensor([2.0, 0.0, -2.0])
    return features


def test_what_it_hears_is_the_same_at_any_pitch():
    stem = _stem()
    with torch.no_grad():
        low, high = (stem.frame_features(_partials(lowest), torch.tensor([FRAMES])) for lowest in (8, 16))
    what = slice(0, 2 * CHANNELS)  # clear of the edges, the mean and max over frequency see the same responses
    torch.testing.assert_close(high[..., what], low[..., what])
    assert not torch.allclose(high[..., 2 * CHANNELS :], low[..., 2 * CHANNELS :])


def test_where_is_the_place_of_the_partials_a_channel_detects():
    stem = _stem()
    with torch.no_grad():  # every channel: the energy of its own bin, amplified (silence stays near 0)
        for conv in stem.convs:
            conv.weight.zero_()
            conv.bias.zero_()
        stem.convs[0].weight[:, 0, 2, 1] = 4.0
        stem.convs[1].weight[range(CHANNELS), range(CHANNELS), 2, 1] = 4.0
        low, high = (stem.frame_features(_partials(lowest), torch.tensor([FRAMES])) for lowest in (8, 16))
    moved = high[..., 2 * CHANNELS :] - low[..., 2 * CHANNELS :]
    torch.testing.assert_close(moved, torch.full_like(moved, 8 * 2 / (BINS - 1)), rtol=0, atol=1e-3)


def test_an_items_tokens_do_not_depend_on_its_batch():
    config = SpectrogramTransformerConfig(
        front_end={"type": "log-mel", "n_mels": BINS}, patch_frames=4, hidden_size=16, num_layers=1, num_heads=2,
        ffn_size=32, stem="frequency-conv", stem_channels=CHANNELS,
    )
    torch.manual_seed(0)
    encoder = SpectrogramTransformerEncoder(config).eval()
    processor = encoder.processor_class(config)
    rng = np.random.default_rng(0)
    short = (rng.uniform(-0.5, 0.5, 2400).astype(np.float32), 16000)  # 16 frames: whole patches, nothing to pad
    long = (rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 16000)
    with torch.no_grad():
        alone = encoder(**processor([short]).inputs)
        batched = encoder(**processor([short, long]).inputs)
    tokens = int(alone.mask.sum())
    assert int(batched.mask[0].sum()) == tokens < batched.mask.shape[1]
    torch.testing.assert_close(batched.tokens[0, :tokens], alone.tokens[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched.pooled[0], alone.pooled[0], rtol=1e-5, atol=1e-5)


def test_an_unknown_stem_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown stem 'conv'; allowed: linear, frequency-conv"):
        SpectrogramTransformerConfig(stem="conv")
