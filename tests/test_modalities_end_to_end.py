"""Issue-5 proof: an image, a sound file and a codec-token stream each go through processor -> encoder ->
every projector -> MultimodalLM, and into a DualEncoder; each saves and loads back identically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from tests.helpers import TINY_BERT, TINY_VIT, image

TINY_SPECTROGRAM = {
    "front_end": {"type": "log-mel", "n_mels": 16}, "patch_frames": 4, "hidden_size": 32, "num_layers": 1,
    "num_heads": 2, "ffn_size": 64, "max_seconds": 2.0,
}
TINY_DAC = {
    "model_type": "dac", "sampling_rate": 16000, "encoder_hidden_size": 4, "downsampling_ratios": [2, 4],
    "decoder_hidden_size": 8, "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 4,
}
ENCODERS = {
    "image": {"type": "timm", "config": TINY_VIT},
    "audio": {"type": "spectrogram-transformer", "config": TINY_SPECTROGRAM},
    "audio_codec": {"type": "audio-codec", "config": {"model_config": TINY_DAC, "inputs": "codes", "hidden_size": 32}},
}
PROJECTORS = {
    "linear": {},
    "mlp": {"depth": 2},
    "qformer": {"num_queries": 4, "num_layers": 2, "num_heads": 2, "hidden_size": 16, "intermediate_size": 32},
    "window-qformer": {"window": 4, "stride": 4, "queries_per_window": 1, "num_layers": 1, "num_heads": 2,
                       "hidden_size": 16, "intermediate_size": 32},
    "perceiver": {"num_latents": 4, "depth": 1, "heads": 2, "dim_head": 8, "ff_mult": 2},
    "avgpool-linear": {"pool": 2},
    "star-mlp": {"width_factor": 2},
}
PLACEHOLDER = {"image": "<image>", "audio": "<audio>", "audio_codec": "<audio_codes>"}


def _item(modality: str, seed: int):
    rng = np.random.RandomState(seed)
    if modality == "image":
        return image(seed)
    if modality == "audio":  # a 16 kHz chirp with noise: real sound, deterministic
        t = np.arange(int(16000 * (0.5 + 0.25 * seed))) / 16000
        return (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + 0.01 * rng.randn(len(t)), 16000)
    return rng.randint(0, 16, (3, 6 + 3 * seed))  # codec codes [n_q, T]


def _lm_spec(modality: str, projector: str) -> dict:
    spec = zoo.card("tiny-test-vlm").spec
    return {
        **spec,
        "encoders": {modality: ENCODERS[modality]},
        "projectors": {modality: {"type": projector, "config": PROJECTORS[projector]}},
    }


@pytest.mark.parametrize("projector", sorted(PROJECTORS))
@pytest.mark.parametrize("modality", sorted(ENCODERS))
def test_every_modality_through_every_projector_into_the_lm(modality, projector, tmp_path):
    model = zoo.build(_lm_spec(modality, projector)).eval()
    tag = PLACEHOLDER[modality]
    prompts = [f"{tag} Describe it.", f"Compare {tag} and {tag}."]
    items = {modality: [[_item(modality, 0)], [_item(modality, 1), _item(modality, 2)]]}
    batch = model.processor(prompts, items, targets=["something", "they differ"])
    with torch.no_grad():
        logits = model(**batch).logits
        assert torch.isfinite(model(**batch).loss)
    reloaded = zoo.load(model.save_pretrained(tmp_path / "m"))
    with torch.no_grad():
        assert torch.equal(reloaded(**reloaded.processor(prompts, items, targets=["something", "they differ"])).logits, logits)


@pytest.mark.parametrize("modality", sorted(ENCODERS))
def test_every_modality_as_a_dual_encoder_tower(modality, tmp_path):
    spec = {
        "type": "dual-encoder",
        "towers": {modality: ENCODERS[modality]},
        "text_tower": {"type": "hf-text", "config": {"model_config": TINY_BERT, "tokenizer": "bundled:tiny-bpe"}},
        "embed_dim": 16,
    }
    model = zoo.build(spec).eval()
    items = [_item(modality, 0), _item(modality, 1)]
    with torch.no_grad():
        embedded = model.embed(modality, items)
    torch.testing.assert_close(embedded.norm(dim=-1), torch.ones(2))
    reloaded = zoo.load(model.save_pretrained(tmp_path / "d"))
    with torch.no_grad():
        assert torch.equal(reloaded.embed(modality, items), embedded)
