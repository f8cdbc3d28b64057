"""Fitting a small EnCodec here (autoencoder, then residual k-means codebooks), reusing a frozen codec's codes
while training, and the codec-lm recipe stage that does both before training the language model."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from encoders.audio.codec import CodecTokenEncoder, CodecTokenEncoderConfig
from encoders.audio.codec_fit import CodecFitConfig, fit_codebooks, fit_codec, kmeans, latent_frames
from tasks.config import load_task
from tasks.data.audio_scenes import generate_audio_scenes, make_clip
from zoo.spec import SpecError
from zoo.training.codec_lm import codec_settings, train_from_recipe

# 25 frames/s at 16 kHz; 16-entry codebooks at 100 bit/s each: 0.4 kbps = 4 codebooks
TINY_CODEC = {
    "model_type": "encodec", "sampling_rate": 16000, "audio_channels": 1, "target_bandwidths": [0.2, 0.4],
    "upsampling_ratios": [8, 5, 4, 4], "num_filters": 4, "hidden_size": 8, "num_lstm_layers": 1, "codebook_size": 16,
}
QUICK = CodecFitConfig(steps=12, batch_size=4, crop_seconds=0.5, lr=3e-3, kmeans_iterations=10)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clips(n: int) -> list[torch.Tensor]:
    return [torch.from_numpy(make_clip(0, i).samples / 32768.0).float() for i in range(n)]


def _encoder() -> CodecTokenEncoder:
    torch.manual_seed(0)
    return CodecTokenEncoder(CodecTokenEncoderConfig(model_config=TINY_CODEC, bandwidth=0.4, hidden_size=16))


def test_kmeans_finds_well_separated_clusters():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=torch.Generator().manual_seed(i)) for i, c in enumerate(centres)])
    centroids, assignment = kmeans(points, 3, iterations=10, seed=0)
    order = [int(torch.cdist(c[None], centroids).argmin()) for c in centres]
    assert sorted(order) == [0, 1, 2]
    assert torch.allclose(centroids[order], centres, atol=0.1)
    assert assignment.tolist() == [order[i // 50] for i in range(150)]
    with pytest.raises(ValueError, match="at least 4 points"):
        kmeans(points[:3], 4, iterations=1, seed=0)


def test_an_unfitted_codec_gives_code_zero_everywhere_and_a_fitted_one_does_not():
    """transformers builds EnCodec's codebooks as zeros: a config-built codec is no tokenizer until fitted."""
    encoder, clips = _encoder(), _clips(6)
    assert encoder.encode_audio(clips[0]).unique().tolist() == [0]
    summary = fit_codec(encoder.codec, clips, QUICK)
    assert summary["final_loss"] < summary["first_loss"]  # the autoencoder learned something in 12 steps
    unexplained = summary["unexplained_after_each_codebook"]
    assert len(unexplained) == 4 and all(a > b for a, b in zip(unexplained, unexplained[1:], strict=False))
    assert unexplained[0] < 1
    codes = encoder.encode_audio(clips[0])
    assert codes.shape[0] == 4 and all(len(row.unique()) > 1 for row in codes)
    assert not any(p.requires_grad for p in encoder.codec.parameters()) and not encoder.codec.training


def test_each_codebook_holds_the_kmeans_centroids_of_the_residual_before_it():
    encoder = _encoder()
    frames = latent_frames(encoder.codec, _clips(6), limit=10_000, seed=0)
    fit_codebooks(encoder.codec, frames, QUICK)
    residual = frames
    for depth, layer in enumerate(encoder.codec.quantizer.layers):
        expected, _ = kmeans(residual, 16, QUICK.kmeans_iterations, QUICK.seed + depth)
        assert torch.equal(layer.codebook.embed, expected)
        residual = residual - expected[torch.cdist(residual, expected).argmin(1)]


def test_fitting_refuses_a_codec_that_is_not_encodec():
    dac = {"model_type": "dac", "sampling_rate": 16000, "encoder_hidden_size": 4, "downsampling_ratios": [2, 4],
           "decoder_hidden_size": 8, "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 4}
    encoder = CodecTokenEncoder(CodecTokenEncoderConfig(model_config=dac, hidden_size=8))
    with pytest.raises(ValueError, match="only a transformers EncodecModel"):
        fit_codec(encoder.codec, _clips(2), QUICK)


def test_reusing_codes_runs_the_codec_once_per_distinct_clip_and_changes_no_token():
    encoder, clips = _encoder(), _clips(3)
    fit_codec(encoder.codec, clips, QUICK)
    calls = []
    original = encoder.codec.encode
    encoder.codec.encode = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    batch = [clips[0], clips[1], clips[0], clips[2], clips[1]]
    expected = [encoder.encode_audio(c) for c in batch]
    assert len(calls) == 5
    calls.clear()
    with encoder.reusing_codes():
        first = [encoder.encode_audio(c) for c in batch]
        again = [encoder.encode_audio(c) for c in batch]
    assert len(calls) == 3
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(expected, first, again, strict=True))
    encoder.encode_audio(clips[0])
    assert len(calls) == 4  # outside the block every call runs the codec again


def test_codec_settings_split_overrides_and_name_the_allowed_keys():
    codec, rest = codec_settings({"codec": {"steps": 400, "clips": 10}, "codec.steps": 3, "max_steps": 5})
    assert codec == {"steps": 3, "clips": 10} and rest == {"max_steps": 5}
    with pytest.raises(SpecError, match="unknown codec setting.*stepz.*allowed: clips, steps"):
        codec_settings({"codec": {"stepz": 1}})


def test_codec_lm_stage_fits_the_codec_then_trains_the_rest_with_the_codec_frozen(tmp_path):
    generate_audio_scenes(tmp_path / "data", 4, seed=0)
    spec = zoo.card("audio-lm-tiny").spec
    spec = {**spec, "encoders": {"audio": {"type": "audio-codec", "config": {
        "model_config": TINY_CODEC, "bandwidth": 0.4, "hidden_size": 128}}}}
    model = zoo.build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = {"codec": {"clips": 3, "steps": 2, "batch_size": 2, "kmeans_iterations": 2}, "max_steps": 2,
                "batch_size": 4, "lr": 1e-3, "progress": False}
    trained = train_from_recipe(model, load_task("audio-instruct"), tmp_path / "data" / "instruct.jsonl", settings,
                                tmp_path / "run")
    fit = json.loads((tmp_path / "run" / "codec_fit.json").read_text())
    assert fit["clips"] == 3 and fit["settings"]["steps"] == 2
    after = trained.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    codebooks = {k for k in changed if ".quantizer." in k}
    assert codebooks and all(k.startswith("encoders.audio.codec.") for k in codebooks)
    assert "encoders.audio.embed.weight" in changed and any(k.startswith("language_model.") for k in changed)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    counted = sum(p.numel() for n, p in trained.named_parameters() if not n.startswith("encoders.audio.codec."))
    assert summary["trainable_parameters"] == counted  # the codec trained before the LM, never with it
    assert trained.encoders["audio"]._reused is None


def test_codec_lm_stage_refuses_a_model_without_a_codec(tmp_path):
    generate_audio_scenes(tmp_path, 2, seed=0)
    model = zoo.build(zoo.card("audio-lm-tiny-mel").spec)
    with pytest.raises(SpecError, match="audio-codec encoder.*Use stage full"):
        train_from_recipe(model, load_task("audio-instruct"), tmp_path / "instruct.jsonl", {}, tmp_path / "run")


def test_codec_lm_stage_refuses_to_refit_a_pretrained_codec(tmp_path, monkeypatch):
    from dataclasses import replace

    generate_audio_scenes(tmp_path, 2, seed=0)
    spec = zoo.card("audio-lm-tiny").spec
    model = zoo.build({**spec, "encoders": {"audio": {"type": "audio-codec", "config": {
        "model_config": TINY_CODEC, "bandwidth": 0.4, "hidden_size": 128}}}})
    encoder = model.encoders["audio"]
    monkeypatch.setattr(encoder, "config", replace(encoder.config, model_config=None, pretrained="facebook/encodec_24khz"))
    with pytest.raises(SpecError, match=r"pretrained \(facebook/encodec_24khz\).*frozen: \[encoders.audio.codec\]"):
        train_from_recipe(model, load_task("audio-instruct"), tmp_path / "instruct.jsonl", {}, tmp_path / "run")
