"""Audio: loading (mixdown, resampling, errors), length policy, front-ends, the four encoders (codec tokens,
Whisper, CLAP, spectrogram transformer) on real audio, their hub paths, exact token counts, and the zoo route."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from encoders.audio.batching import load_clips
from encoders.audio.clap import ClapAudioEncoder, ClapAudioEncoderConfig
from encoders.audio.codec import CodecTokenEncoder, CodecTokenEncoderConfig
from encoders.audio.crop import CropPolicy
from encoders.audio.features import FbankConfig, LogFrequencyConfig, LogMelConfig, front_end_config
from encoders.audio.io import MAX_CACHED_KERNEL_PHASES, _resampler, load_audio
from encoders.audio.spectrogram_transformer import SpectrogramTransformerConfig, SpectrogramTransformerEncoder
from encoders.audio.whisper import WhisperAudioEncoder, WhisperAudioEncoderConfig
from encoders.base import InvalidInputError

TINY_ENCODEC = {
    "model_type": "encodec", "sampling_rate": 24000, "audio_channels": 1, "target_bandwidths": [1.5, 3.0],
    "hidden_size": 16, "num_filters": 4, "num_residual_layers": 1, "num_lstm_layers": 1, "codebook_size": 64,
    "codebook_dim": 16,
}
TINY_DAC = {
    "model_type": "dac", "sampling_rate": 16000, "encoder_hidden_size": 4, "downsampling_ratios": [2, 4],
    "decoder_hidden_size": 8, "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 4,
}
TINY_WHISPER = {
    "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 80, "vocab_size": 100, "max_target_positions": 16,
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 3,
}
TINY_CLAP = {
    "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 8, "depths": [1, 1], "num_attention_heads": [2, 2],
    "window_size": 4, "hidden_size": 16, "projection_dim": 8, "patch_stride": 4, "patch_size": 4,
}
TINY_SPECTROGRAM = {
    "front_end": {"type": "log-mel", "n_mels": 16}, "patch_frames": 4, "hidden_size": 32, "num_layers": 1,
    "num_heads": 2, "ffn_size": 64, "max_seconds": 4.0,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models here are tiny: thread fan-out costs more than it saves, and on a busy shared machine the
    per-step barriers of EnCodec's LSTM stall for seconds. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noise(num_samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.RandomState(seed).randn(num_samples)).astype(np.float32)


@pytest.fixture(scope="module")
def jfk(shared_dir):
    return shared_dir / "data" / "audio" / "jfk.flac"


@pytest.fixture(scope="module")
def encodec_wav(shared_dir):
    return shared_dir / "data" / "audio" / "encodec_test_24k.wav"


ENCODERS = {
    "spectrogram-log-mel": lambda: SpectrogramTransformerEncoder(SpectrogramTransformerConfig(**TINY_SPECTROGRAM)),
    "spectrogram-fbank": lambda: SpectrogramTransformerEncoder(
        SpectrogramTransformerConfig(**{**TINY_SPECTROGRAM, "front_end": {"type": "kaldi-fbank", "num_mel_bins": 16}})
    ),
    "encodec": lambda: CodecTokenEncoder(
        CodecTokenEncoderConfig(model_config=TINY_ENCODEC, bandwidth=3.0, hidden_size=32, max_seconds=1.0)
    ),
    "dac": lambda: CodecTokenEncoder(
        CodecTokenEncoderConfig(model_config=TINY_DAC, num_quantizers=2, hidden_size=32, max_seconds=1.0)
    ),
    "whisper": lambda: WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=TINY_WHISPER)),
    "clap": lambda: ClapAudioEncoder(
        ClapAudioEncoderConfig(model_config=TINY_CLAP, feature_extractor={"max_length_s": 2})
    ),
}
_built: dict[str, torch.nn.Module] = {}


def encoder(name: str) -> torch.nn.Module:
    """Each tiny encoder is built once per test session, in eval mode."""
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = ENCODERS[name]().eval()
    return _built[name]


# ---- loading ----------------------------------------------------------------------------------------------


def test_file_is_mixed_down_and_resampled_deterministically(jfk):
    stereo, rate = sf.read(jfk, dtype="float32")
    assert stereo.ndim == 2 and stereo.shape[1] == 2 and rate == 44100
    native = load_audio(jfk, 44100)
    torch.testing.assert_close(native, torch.from_numpy(stereo.mean(axis=1)))
    at_16k = load_audio(jfk, 16000)
    assert at_16k.shape == (math.ceil(stereo.shape[0] * 16000 / 44100),) and at_16k.dtype == torch.float32
    assert torch.equal(at_16k, load_audio(jfk, 16000))
    assert torch.equal(at_16k, load_audio((stereo.T, 44100), 16000))  # (channels, samples)
    assert torch.equal(at_16k, load_audio({"array": stereo, "sampling_rate": 44100}, 16000))  # soundfile layout


@pytest.mark.parametrize("channels", [1, 2, 5, 16])
def test_mixdown_is_the_channel_mean_in_either_layout(channels):
    samples = np.stack([noise(1000, seed=c) for c in range(channels)])  # (channels, samples)
    expected = torch.from_numpy(samples.mean(axis=0))
    torch.testing.assert_close(load_audio((samples, 16000), 16000), expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(load_audio((samples.T.copy(), 16000), 16000), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("rate, target", [(44100, 16000), (22050, 48000), (1031, 1024)])
def test_resampling_gives_torchaudio_functional_samples_and_keeps_only_small_kernels(rate, target):
    samples = noise(3 * rate, seed=rate)
    expected = torchaudio.functional.resample(torch.from_numpy(samples), rate, target)
    _resampler.cache_clear()
    for _ in range(2):  # built, then reused
        assert torch.equal(load_audio((samples, rate), target), expected)
    small = (rate // math.gcd(rate, target)) * (target // math.gcd(rate, target)) <= MAX_CACHED_KERNEL_PHASES
    assert _resampler.cache_info()[:4] == ((1, 1, 8, 1) if small else (0, 0, 8, 0))  # hits, misses, max, size


def test_mono_file_at_the_target_rate_is_read_unchanged(encodec_wav):
    samples, rate = sf.read(encodec_wav, dtype="float32")
    assert rate == 24000 and samples.ndim == 1
    assert torch.equal(load_audio(str(encodec_wav), 24000), torch.from_numpy(samples))
    int16, _ = sf.read(encodec_wav, dtype="int16")
    torch.testing.assert_close(load_audio((int16, 24000), 24000), torch.from_numpy(samples))


def test_crop_policy_pads_and_trims_the_end_deterministically_and_random_crops_follow_the_seed():
    wave = torch.arange(1, 101, dtype=torch.float32)
    start = CropPolicy()
    assert torch.equal(start(wave, 30), wave[:30])
    assert torch.equal(start(wave, 120, pad=True), torch.cat([wave, torch.zeros(20)]))
    assert torch.equal(start(wave, 120), wave) and torch.equal(start(wave, None), wave)

    def crops(policy):
        return [policy(wave, 30)[0].item() for _ in range(8)]

    first = crops(CropPolicy("random", seed=7))
    assert first == crops(CropPolicy("random", seed=7))
    assert first != crops(CropPolicy("random", seed=8))
    assert len(set(first)) > 1
    policy = CropPolicy("random", seed=7)
    crops(policy)
    policy.reset()
    assert crops(policy) == first
    with pytest.raises(ValueError, match="explicit seed"):
        CropPolicy("random")


def test_processor_output_is_identical_for_the_same_input(jfk):
    processor = encoder("spectrogram-log-mel").processor_class(encoder("spectrogram-log-mel").config)
    a, b = processor([jfk, (noise(9000), 22050)]), processor([jfk, (noise(9000), 22050)])
    assert torch.equal(a.inputs["features"], b.inputs["features"]) and a.sizes == b.sizes
    assert a.sizes[0] == 4 * 16000  # jfk (11 s) cut to max_seconds, keeping the start
    processor.crop = CropPolicy("random", seed=3)
    c = processor([jfk]).inputs["features"]
    processor.crop = CropPolicy("random", seed=3)
    assert torch.equal(c, processor([jfk]).inputs["features"])


def _bad_items(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    return {
        "zero-length": ((np.zeros(0, np.float32), 16000), "zero length"),
        "NaN": ((np.array([0.1, np.nan, 0.2], np.float32), 16000), "NaN or Inf"),
        "Inf": ((np.array([0.1, np.inf], np.float32), 16000), "NaN or Inf"),
        "rank 3": ((np.ones((2, 2, 100), np.float32), 16000), "3 dims"),
        "unsupported file": (str(text), "not a readable audio file"),
        "missing file": (str(tmp_path / "missing.flac"), "file not found"),
        "zero rate": ((noise(100), 0), "sample rate"),
        "huge rate": ((noise(100), 1_000_000), "sample rate"),
        "fractional rate": ((noise(100), 44100.5), "sample rate"),
        "silence": ((np.zeros(1000, np.float32), 16000), "silent"),
        "bare array": (noise(100), r"pass \(array, sample_rate\)"),
        "too short": ((noise(50), 16000), "too short"),
    }


@pytest.mark.parametrize(
    "case",
    ["zero-length", "NaN", "Inf", "rank 3", "unsupported file", "missing file", "zero rate", "huge rate",
     "fractional rate", "silence", "bare array", "too short"],
)
def test_bad_audio_is_an_error_naming_the_item(case, tmp_path):
    item, message = _bad_items(tmp_path)[case]
    config = SpectrogramTransformerConfig(**TINY_SPECTROGRAM)
    processor = SpectrogramTransformerEncoder.processor_class(config)
    with pytest.raises(InvalidInputError, match=message) as err:
        processor([(noise(4000), 16000), item])
    assert "audio item 1" in str(err.value)
    if isinstance(item, str):
        assert item in str(err.value)


def test_silence_is_accepted_when_allowed():
    clips = load_clips([(np.zeros(1000, np.float32), 16000)], 16000, None, CropPolicy(), allow_silence=True)
    assert torch.equal(clips[0], torch.zeros(1000))


# ---- front-ends --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "front_end",
    [LogMelConfig(n_mels=16), LogMelConfig(n_mels=16, center=False), FbankConfig(num_mel_bins=16),
     FbankConfig(num_mel_bins=16, snip_edges=False), LogFrequencyConfig(n_bins=16),
     LogFrequencyConfig(n_bins=16, center=False)],
    ids=["log-mel", "log-mel-uncentered", "fbank", "fbank-unsnipped", "log-frequency", "log-frequency-uncentered"],
)
@settings(max_examples=25, deadline=None)
@given(offset=st.integers(0, 2000))
def test_front_end_frame_count_is_exact(front_end, offset):
    n = front_end.min_samples + offset
    feats = front_end(torch.from_numpy(noise(n)))
    assert feats.shape == (front_end.num_frames(n), front_end.num_bins)
    assert torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="at least"):
        front_end.num_frames(front_end.min_samples - 1)


@pytest.mark.parametrize("base_hz", [440.0, 660.0])
def test_on_the_log_frequency_axis_an_octave_is_a_shift_of_the_same_pattern(base_hz):
    front_end = LogFrequencyConfig(n_bins=71, f_min=100.0, f_max=6400.0)  # 72 steps over 6 octaves: 12 per octave
    t = torch.arange(16000, dtype=torch.float64) / 16000

    def harmonic_stack(f0):  # four partials at 1 / h, as the procedural chimes are made
        return sum(torch.sin(2 * torch.pi * h * f0 * t) / h for h in range(1, 5)).float()

    low, high = (front_end(harmonic_stack(f))[20] for f in (base_hz, 2 * base_hz))
    shift = 12
    assert int(high.argmax()) - int(low.argmax()) == shift
    # the four partials are the same four peaks, moved up by the shift, with the same levels
    def peaks(energies):
        inner = torch.arange(1, len(energies) - 1)
        is_peak = (energies[inner] > energies[inner - 1]) & (energies[inner] > energies[inner + 1])
        return inner[is_peak & (energies[inner] > energies.max() - 6)]

    assert len(peaks(low)) == 4 and torch.equal(peaks(low) + shift, peaks(high))
    assert torch.allclose(low[peaks(low)], high[peaks(high)], atol=0.2)


def test_log_frequency_refuses_a_range_outside_the_band():
    with pytest.raises(ValueError, match="0 < f_min < f_max <= sample_rate / 2"):
        LogFrequencyConfig(f_min=100.0, f_max=9000.0)
    with pytest.raises(ValueError, match="0 < f_min"):
        front_end_config({"type": "log-frequency", "f_min": 0.0})


def test_front_end_configs_round_trip_through_plain_dicts():
    config = SpectrogramTransformerConfig(**{**TINY_SPECTROGRAM, "front_end": {"type": "kaldi-fbank"}})
    assert config.front_end == FbankConfig()
    assert front_end_config({"type": "log-mel", "n_mels": 16}) == LogMelConfig(n_mels=16)
    with pytest.raises(ValueError, match="allowed"):
        front_end_config({"type": "mfcc"})
    with pytest.raises(ValueError, match="unknown log-mel front-end keys"):
        front_end_config({"type": "log-mel", "num_mel_bins": 16})


# ---- encoders ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_forward_backward_on_real_audio(name, jfk, encodec_wav):
    enc = encoder(name)
    batch = enc.processor_class(enc.config)([jfk, (noise(7000), 16000), encodec_wav])
    enc.train()
    out = enc(**batch.inputs)
    enc.eval()
    assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == enc.hidden_size
    assert out.mask.sum(1).tolist() == [enc.num_tokens(s) for s in batch.sizes]
    assert bool(out.mask[:, 0].all())
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    (out.tokens[out.mask].pow(2).mean() + out.pooled.pow(2).mean()).backward()
    trainable = [p for p in enc.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    enc.zero_grad()


def test_codec_tokens_follow_the_codec_frames_and_the_codec_stays_frozen(encodec_wav):
    enc = encoder("encodec")
    assert enc.config.resolved_hop_length == 320 and enc.config.resolved_num_codebooks == 6  # 3 kbps / (75 Hz * 6 bit)
    enc.train()
    assert not enc.codec.training and not any(p.requires_grad for p in enc.codec.parameters())
    enc.eval()
    wave = load_audio(encodec_wav, 24000)[:24000]
    with torch.no_grad():
        codes = enc.codec.encode(wave.view(1, 1, -1), bandwidth=3.0).audio_codes  # [chunks, B, n_q, T]
    assert codes.shape == (1, 1, 6, 75)
    assert torch.equal(enc.encode_audio(wave), codes[0, 0])


@pytest.mark.parametrize("name", ["encodec", "dac", "whisper", "spectrogram-log-mel"])
def test_batch_padding_does_not_change_an_items_tokens(name, encodec_wav):
    enc = encoder(name)
    processor = enc.processor_class(enc.config)
    short = (noise(3333), enc.config.sample_rate)
    with torch.no_grad():
        alone = enc(**processor([short]).inputs)
        together = enc(**processor([encodec_wav, short]).inputs)
    n = enc.num_tokens(3333)
    torch.testing.assert_close(together.tokens[1, :n], alone.tokens[0, :n], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together.pooled[1], alone.pooled[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_resolved_config_survives_json_and_rebuilds_identically(name):
    from zoo.spec import config_to_dict, make_config

    enc = encoder(name)
    saved = json.loads(json.dumps(config_to_dict(enc.config)))
    rebuilt = type(enc)(make_config(type(enc).config_class, saved, "config"), load_pretrained=False)
    assert rebuilt.config == enc.config
    assert rebuilt.state_dict().keys() == enc.state_dict().keys()


def test_precomputed_codes_are_an_audio_codec_encoder():
    enc = CodecTokenEncoder(CodecTokenEncoderConfig(model_config=TINY_DAC, inputs="codes", hidden_size=8))
    assert enc.modality == "audio_codec" and enc.codec is None and enc.config.resolved_num_codebooks == 3
    processor = enc.processor_class(enc.config)
    rng = np.random.RandomState(0)
    batch = processor([rng.randint(0, 16, (3, 5)), torch.randint(0, 16, (3, 2))])
    assert batch.sizes == [5, 2] and batch.inputs["codes"].shape == (2, 3, 5)
    out = enc(**batch.inputs)
    assert out.mask.sum(1).tolist() == [enc.num_tokens(5), enc.num_tokens(2)] == [5, 2]
    for bad, message in [
        (rng.randint(0, 16, (2, 5)), r"expected \(3, frames\)"),
        (rng.randint(0, 99, (3, 5)), r"\[0, 16\)"),
        (rng.rand(3, 5), "integers"),
    ]:
        with pytest.raises(InvalidInputError, match=message) as err:
            processor([rng.randint(0, 16, (3, 5)), bad])
        assert "audio_codes item 1" in str(err.value)


def test_codec_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="one of"):
        CodecTokenEncoder(CodecTokenEncoderConfig(model_config=TINY_ENCODEC, bandwidth=6.0))
    with pytest.raises(ValueError, match="num_quantizers"):
        CodecTokenEncoder(CodecTokenEncoderConfig(model_config=TINY_DAC, bandwidth=6.0))
    with pytest.raises(ValueError, match="48 kHz"):
        CodecTokenEncoder(CodecTokenEncoderConfig(model_config={**TINY_ENCODEC, "audio_channels": 2}))


def test_whisper_masks_the_frames_of_real_audio_or_the_whole_window():
    enc = encoder("whisper")
    assert enc.config.resolved_window_samples == 480000 and enc.config.resolved_conv_layers == [[3, 1, 1], [3, 2, 1]]
    assert [enc.num_tokens(n) for n in (1, 320, 321, 16000, 480000)] == [1, 1, 2, 50, 1500]
    padded = WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=TINY_WHISPER, pad_to_max=True))
    batch = padded.processor_class(padded.config)([(noise(16000), 16000)])
    assert batch.sizes == [480000] and batch.inputs["input_features"].shape == (1, 80, 3000)
    with torch.no_grad():
        assert padded(**batch.inputs).mask.sum().item() == 1500
    with pytest.raises(ValueError, match="window"):
        WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=TINY_WHISPER, max_seconds=31))


@pytest.mark.parametrize("extractor", [{}, {"dither": 1e-3}, {"padding_value": 0.5}])
@pytest.mark.parametrize("lengths", [[5], [3333], [401, 112_017], [479_841, 7], [480_000]])
def test_whisper_features_equal_the_extractor_over_the_whole_window(extractor, lengths):
    """The processor runs the STFT only as far as the longest clip needs and copies the all-padding frame into
    the rest of the window: the features must be the extractor's own over the full 30 s (to rounding: the FFT's
    last bit can depend on the signal's length) and the mask exactly."""
    enc = WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=TINY_WHISPER, feature_extractor=extractor))
    processor = enc.processor_class(enc.config)
    clips = [noise(n, seed=n) for n in lengths]
    torch.manual_seed(0)  # the same dither noise on both sides
    ours = processor([(clip, 16000) for clip in clips]).inputs
    torch.manual_seed(0)
    full = processor.extractor(clips, sampling_rate=16000, padding="max_length", max_length=480_000,
                               return_attention_mask=True, return_tensors="pt")
    assert ours["input_features"].shape == (len(clips), 80, 3000)
    torch.testing.assert_close(ours["input_features"], full["input_features"], rtol=0, atol=1e-6)
    assert torch.equal(ours["attention_mask"], full["attention_mask"])


def test_clap_features_are_deterministic_even_for_fusion_models(jfk):
    enc = encoder("clap")
    assert enc.num_tokens(1) == enc.num_tokens(10**6) == 64 and enc.pooled_size == 8
    fusion = ClapAudioEncoder(
        ClapAudioEncoderConfig(
            model_config={**TINY_CLAP, "enable_fusion": True}, feature_extractor={"max_length_s": 2}
        )
    ).eval()
    processor = fusion.processor_class(fusion.config)
    items = [jfk, (noise(3000), 48000)]
    runs = [processor(items) for _ in range(3)]
    assert runs[0].inputs["input_features"].shape[1] == 4  # fusion's four mel views
    for run in runs[1:]:
        assert torch.equal(run.inputs["input_features"], runs[0].inputs["input_features"])
    assert not runs[0].inputs["is_longer"].any()
    with torch.no_grad():
        a, b = fusion(**runs[0].inputs), fusion(**runs[1].inputs)
    assert torch.equal(a.pooled, b.pooled) and a.tokens.shape == (2, 64, 16)


# ---- hub path: a saved checkpoint directory as ``pretrained`` -----------------------------------------------


@pytest.mark.parametrize("codec", ["encodec", "dac"])
def test_codec_loads_a_saved_checkpoint(codec, tmp_path):
    from transformers import AutoConfig, AutoModel

    params = dict(TINY_ENCODEC if codec == "encodec" else TINY_DAC)
    torch.manual_seed(1)
    source = AutoModel.from_config(AutoConfig.for_model(params.pop("model_type"), **params)).eval()
    source.save_pretrained(tmp_path)
    enc = CodecTokenEncoder(CodecTokenEncoderConfig(pretrained=str(tmp_path), hidden_size=8))
    for key, value in source.state_dict().items():
        assert torch.equal(enc.codec.state_dict()[key], value), key
    assert enc.config.resolved_codec == codec
    skeleton = CodecTokenEncoder(enc.config, load_pretrained=False)
    assert skeleton.config == enc.config
    assert skeleton.state_dict().keys() == enc.state_dict().keys()


def test_whisper_loads_a_saved_checkpoint(tmp_path):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(1)
    source = WhisperForConditionalGeneration(WhisperConfig(**TINY_WHISPER, max_source_positions=50))
    source.save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    enc = WhisperAudioEncoder(WhisperAudioEncoderConfig(pretrained=str(tmp_path))).eval()
    for key, value in source.model.encoder.state_dict().items():
        assert torch.equal(enc.model.state_dict()[key], value), key
    assert enc.config.resolved_window_samples == 16000  # 50 positions * 2 (conv stride) * 160 (hop)
    batch = enc.processor_class(enc.config)([(noise(5000), 16000)])
    with torch.no_grad():
        assert enc(**batch.inputs).mask.sum().item() == enc.num_tokens(5000) == 16
    assert WhisperAudioEncoder(enc.config, load_pretrained=False).config == enc.config


def test_clap_loads_a_saved_checkpoint(tmp_path):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(1)
    text = {"vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16}
    source = ClapModel(ClapConfig(text_config=text, audio_config=TINY_CLAP, projection_dim=8))
    source.save_pretrained(tmp_path)
    ClapFeatureExtractor(feature_size=16, max_length_s=2, truncation="rand_trunc").save_pretrained(tmp_path)
    enc = ClapAudioEncoder(ClapAudioEncoderConfig(pretrained=str(tmp_path))).eval()
    full = source.state_dict()
    for key, value in enc.model.state_dict().items():
        assert torch.equal(value, full[key]), key
    assert ClapAudioEncoder(enc.config, load_pretrained=False).config == enc.config


# ---- token counts: processor and model agree for every length -----------------------------------------------


def lengths_near(hop: int, low: int, high: int) -> st.SearchStrategy[int]:
    """Any length in [low, high], or one within a sample of a multiple of ``hop``."""
    near = st.builds(lambda k, d: k * hop + d, st.integers(1, high // hop), st.sampled_from([-1, 0, 1]))
    return st.one_of(st.integers(low, high), near.filter(lambda n: low <= n <= high))


def _counts_agree(name: str, lengths: list[int]) -> None:
    enc = encoder(name)
    rate = enc.config.sample_rate
    processor = enc.processor_class(enc.config)
    batch = processor([(noise(n, seed=i), rate) for i, n in enumerate(lengths)])
    assert batch.sizes == lengths
    with torch.no_grad():
        produced = enc(**batch.inputs).mask.sum(1).tolist()
    assert produced == [enc.num_tokens(n) for n in lengths]


@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(lengths_near(320, 1, 3000), min_size=1, max_size=3))
@example(lengths=[1, 319, 320]).via("edge")
@example(lengths=[321, 640, 641]).via("edge")
def test_encodec_token_counts(lengths):
    _counts_agree("encodec", lengths)


@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(lengths_near(8, 1, 400), min_size=1, max_size=3))
@example(lengths=[1, 7, 8]).via("edge")
@example(lengths=[9, 16, 17]).via("edge")
def test_dac_token_counts(lengths):
    _counts_agree("dac", lengths)


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(lengths_near(320, 1, 480000), min_size=1, max_size=2))
@example(lengths=[1, 159, 160]).via("edge")
@example(lengths=[161, 319, 320, 321]).via("edge")
@example(lengths=[479999, 480000]).via("edge")
def test_whisper_token_counts(lengths):
    _counts_agree("whisper", lengths)


@pytest.mark.parametrize("name", ["spectrogram-log-mel", "spectrogram-fbank"])
@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(lengths_near(640, 400, 64000), min_size=1, max_size=3))
@example(lengths=[400, 639, 640]).via("edge")
@example(lengths=[641, 1279, 1280, 1281]).via("edge")
def test_spectrogram_token_counts(name, lengths):
    _counts_agree(name, lengths)


# ---- through the zoo ---------------------------------------------------------------------------------------


def test_multimodal_lm_with_an_audio_encoder_trains_generates_and_round_trips(jfk, tmp_path):
    import zoo

    spec = zoo.card("tiny-test-vlm").spec
    spec = {
        **spec,
        "encoders": {**spec["encoders"], "audio": {"type": "spectrogram-transformer", "config": TINY_SPECTROGRAM}},
        "projectors": {**spec["projectors"], "audio": {"type": "linear", "config": {}}},
    }
    model = zoo.build(spec).eval()
    prompts = ["<audio> Describe the sound.", "<audio> Describe the sound."]
    items = {"audio": [[jfk], [(noise(20000), 22050)]]}
    batch = model.processor(prompts, items, targets=["a speech", "noise"])
    pid = model.processor.placeholder_ids["audio"]
    resampled = math.ceil(20000 * 16000 / 22050)
    expected = [model.encoders["audio"].num_tokens(n) for n in (4 * 16000, resampled)]
    assert (batch["input_ids"] == pid).sum(1).tolist() == expected
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.encoders["audio"].patch_embed.weight.grad is not None
    model.zero_grad()
    texts = model.generate_text(prompts[:1], {"audio": [[jfk]]}, max_new_tokens=3, do_sample=False)
    assert len(texts) == 1 and isinstance(texts[0], str)
    loaded = zoo.load(model.save_pretrained(tmp_path / "audio-lm"))
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
