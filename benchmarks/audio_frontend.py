"""Clips/s of our audio front end (load, resample, pad/trim, features) against torchaudio's own pipeline called
directly, and the encoder's forward on the same batches: does the front end keep up with the encoder?

Two front ends, each as ``zoo`` runs it for an audio encoder, on the same generated WAV files:

- the spectrogram transformer's ``SpectrogramProcessor`` (log-mel, 80 bins at 16 kHz, cut to ``--max-seconds``);
  baseline: ``soundfile.read`` -> channel mean -> ``torchaudio.functional.resample`` -> cut ->
  ``torchaudio.transforms.MelSpectrogram`` with the same parameters -> log -> zero-padded batch;
- Whisper's ``WhisperProcessor`` (transformers' ``WhisperFeatureExtractor``, 80 slaney mel bins, run only as
  far into the 30 s window as the longest clip needs); baseline: the same load and resample, zero-padded to
  30 s, ``MelSpectrogram(mel_scale="slaney", norm="slaney")``, ``log10`` and Whisper's clamp and scaling. A
  middle row calls the extractor over the whole window, as transformers' own examples do.

Each baseline's features are checked against ours (the largest absolute difference is printed): every row
produces the same features. Clips are 1-10 s of a tone in noise, 16-bit PCM, alternately 16 kHz and 44.1 kHz
(every fourth one stereo), seeded. The encoders are built at random init from their real architectures (the
spectrogram transformer's defaults; Whisper base), so nothing is downloaded; their forward runs on the first
``--encoder-clips`` clips, batch by batch. Each front-end pass covers every clip; the passes alternate the
sides ``--repeats`` times so machine load hits all of them, and the best pass counts.

    .venv/bin/python benchmarks/audio_frontend.py [--clips 200] [--batch-size 8] [--repeats 3]
        [--encoder-clips 8] [--max-seconds 10] [--threads N] [--front-ends spectrogram whisper]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402
import torchaudio.functional as AF  # noqa: E402

from encoders.audio.spectrogram_transformer import (  # noqa: E402
    SpectrogramProcessor,
    SpectrogramTransformerConfig,
    SpectrogramTransformerEncoder,
)
from encoders.audio.whisper import WhisperAudioEncoder, WhisperAudioEncoderConfig, WhisperProcessor  # noqa: E402

RATES = (16000, 44100)
TARGET_RATE = 16000
WHISPER_BASE = {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048,
                "num_mel_bins": 80, "max_source_positions": 1500}  # openai/whisper-base's encoder
WHISPER_WINDOW = 30 * TARGET_RATE

Batches = list[list[str]]


def write_clips(folder: Path, count: int, seed: int = 0) -> tuple[list[str], float]:
    """``count`` WAV files of 1-10 s (a tone in noise) and their total length in seconds."""
    rng = np.random.default_rng(seed)
    paths, total = [], 0.0
    for i in range(count):
        rate, seconds = RATES[i % len(RATES)], float(rng.uniform(1.0, 10.0))
        t = np.arange(round(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        samples = np.stack([tone, 0.5 * tone], axis=1) if i % 4 == 3 else tone
        path = folder / f"{i:04d}.wav"
        sf.write(path, (samples * 32767).astype(np.int16), rate)
        paths.append(str(path))
        total += seconds
    return paths, total


def _waveform(path: str) -> torch.Tensor:
    """The baseline's load: float32 samples, channel mean, resampled by ``torchaudio.functional.resample``."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    waveform = torch.from_numpy(data.T).mean(dim=0)
    return AF.resample(waveform, rate, TARGET_RATE) if rate != TARGET_RATE else waveform


def torchaudio_log_mel(config: SpectrogramTransformerConfig) -> Callable[[list[str]], torch.Tensor]:
    """Baseline for the spectrogram transformer: ``[B, frames, n_mels]`` log-mel, zero-padded to whole patches."""
    fe = config.front_end
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=fe.sample_rate, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                               n_mels=fe.n_mels, f_min=fe.f_min, f_max=fe.f_max, center=fe.center)
    max_samples = round(config.max_seconds * fe.sample_rate)

    def run(paths: list[str]) -> torch.Tensor:
        feats = [torch.log(torch.clamp(mel(_waveform(p)[:max_samples]), min=fe.log_floor)).T for p in paths]
        width = -(-max(f.shape[0] for f in feats) // config.patch_frames) * config.patch_frames
        return torch.stack([torch.nn.functional.pad(f, (0, 0, 0, width - f.shape[0])) for f in feats])

    return run


def torchaudio_whisper() -> Callable[[list[str]], torch.Tensor]:
    """Baseline for Whisper: ``[B, 80, 3000]`` log-mel of the 30 s window, as ``WhisperFeatureExtractor`` scales it."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=TARGET_RATE, n_fft=400, hop_length=160, n_mels=80,
                                               mel_scale="slaney", norm="slaney")

    def run(paths: list[str]) -> torch.Tensor:
        window = torch.stack([torch.nn.functional.pad(w, (0, WHISPER_WINDOW - w.shape[0]))
                              for w in (_waveform(p)[:WHISPER_WINDOW] for p in paths)])
        log_spec = torch.clamp(mel(window)[..., :-1], min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log_spec + 4.0) / 4.0

    return run


def best_pass(sides: dict[str, Callable[[list[str]], object]], batches: Batches, repeats: int) -> dict[str, float]:
    """Seconds of the fastest pass over ``batches`` for each side, the sides alternating in every round."""
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(repeats):
        for name, run in sides.items():
            tic = time.perf_counter()
            for batch in batches:
                run(batch)
            best[name] = min(best[name], time.perf_counter() - tic)
    return best


def encoder_seconds(encoder: torch.nn.Module, batches: list[dict[str, torch.Tensor]], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` forward passes over ``batches`` (after a warm-up on the first)."""
    with torch.inference_mode():
        encoder(**batches[0])
        best = float("inf")
        for _ in range(repeats):
            tic = time.perf_counter()
            for batch in batches:
                encoder(**batch)
            best = min(best, time.perf_counter() - tic)
    return best


def max_difference(ours: torch.Tensor, baseline: torch.Tensor) -> float:
    return float((ours - baseline).abs().max())


def _row(name: str, clips: int, seconds: float, ratio: str) -> str:
    return f"  {name:52s} {clips / seconds:9.2f} {ratio:>26s}"


def report(title: str, clips: int, front: dict[str, float], encoder: tuple[str, int, float], diff: float) -> list[str]:
    """One block of the table: the baseline (first in ``front``), the other front ends (ours last) with their
    speed relative to it, and the encoder forward with our front end's speed relative to it."""
    (baseline, base_s), *others = front.items()
    enc_name, enc_clips, enc_s = encoder
    ours_rate, enc_rate = clips / others[-1][1], enc_clips / enc_s
    return [
        f"{title}  (features: max |ours - baseline| = {diff:.1e})",
        _row(baseline + " (baseline)", clips, base_s, "1.00x"),
        *(_row(name, clips, seconds, f"{base_s / seconds:.2f}x baseline") for name, seconds in others),
        _row(enc_name, enc_clips, enc_s, f"front end {ours_rate / enc_rate:.1f}x encoder"),
    ]


def spectrogram_block(paths: list[str], batches: Batches, args: argparse.Namespace) -> list[str]:
    config = SpectrogramTransformerConfig(max_seconds=args.max_seconds)
    processor, baseline = SpectrogramProcessor(config), torchaudio_log_mel(config)
    ours = processor(batches[0]).inputs
    diff = max_difference(ours["features"], baseline(batches[0]))
    front = best_pass({"torchaudio load+resample+MelSpectrogram": baseline, "zoo SpectrogramProcessor": processor},
                      batches, args.repeats)
    encoder = SpectrogramTransformerEncoder(config).eval()
    enc_batches = [processor(b).inputs for b in batches[: _encoder_batches(args)]]
    enc_s = encoder_seconds(encoder, enc_batches, args.repeats)
    c = config
    title = (f"spectrogram transformer: log-mel {c.front_end.n_mels} bins at {c.sample_rate} Hz, cut to "
             f"{c.max_seconds:g} s; encoder {c.hidden_size}-d x {c.num_layers} layers, {c.patch_frames}-frame patches")
    encoded = sum(len(b) for b in batches[: _encoder_batches(args)])
    return report(title, len(paths), front, ("SpectrogramTransformerEncoder forward", encoded, enc_s), diff)


def whisper_block(paths: list[str], batches: Batches, args: argparse.Namespace) -> list[str]:
    encoder = WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=WHISPER_BASE), load_pretrained=False).eval()
    processor, baseline = WhisperProcessor(encoder.config), torchaudio_whisper()
    diff = max_difference(processor(batches[0]).inputs["input_features"], baseline(batches[0]))

    def whole_window(paths: list[str]) -> object:  # the library's own call, as the processor made it before
        return processor.extractor([_waveform(p)[:WHISPER_WINDOW].numpy() for p in paths], sampling_rate=TARGET_RATE,
                                   padding="max_length", max_length=WHISPER_WINDOW, return_attention_mask=True,
                                   return_tensors="pt")

    front = best_pass({"torchaudio load+resample+MelSpectrogram": baseline,
                       "load+resample+WhisperFeatureExtractor, whole window": whole_window,
                       "zoo WhisperProcessor": processor}, batches, args.repeats)
    enc_batches = [processor(b).inputs for b in batches[: _encoder_batches(args)]]
    enc_s = encoder_seconds(encoder, enc_batches, args.repeats)
    title = "Whisper: 80 slaney mel bins over the 30 s window; encoder Whisper base (512-d x 6 layers, random init)"
    encoded = sum(len(b) for b in batches[: _encoder_batches(args)])
    return report(title, len(paths), front, ("WhisperAudioEncoder forward", encoded, enc_s), diff)


def _encoder_batches(args: argparse.Namespace) -> int:
    return max(1, -(-args.encoder_clips // args.batch_size))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoder-clips", type=int, default=8, help="clips the encoder forward is timed on")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="the spectrogram transformer's cut")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--front-ends", nargs="+", choices=("spectrogram", "whisper"), default=["spectrogram", "whisper"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths, seconds = write_clips(Path(tmp), args.clips)
        batches = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
        print(f"{len(paths)} WAV clips, 1-10 s ({seconds:.0f} s of audio), {' / '.join(map(str, RATES))} Hz, "
              f"batch {args.batch_size}, best of {args.repeats}, torch threads {torch.get_num_threads()}")
        print(f"  {'':52s} {'clips/s':>9s} {'ratio':>26s}")
        blocks = {"spectrogram": spectrogram_block, "whisper": whisper_block}
        for name in args.front_ends:
            print("\n".join(blocks[name](paths, batches, args)))
    print("target: ours at least ~1x the torchaudio baseline, and the front end faster than the encoder (ratio > 1x)")


if __name__ == "__main__":
    main()
