"""Fit a small EnCodec on local clips, for machines that cannot download a pretrained codec.

A transformers ``EncodecModel`` built from a config starts with random convolutions and all-zero codebooks, so
every frame gets code 0. This module makes such a codec usable as a tokenizer in two steps:

1. **Autoencoder training**: the encoder and decoder learn to reconstruct random crops of the clips under
   EnCodec's reconstruction losses (Défossez et al. 2022, section 3.4): L1 on the waveform plus L1 on log-mel
   spectrograms at several STFT scales. Left out: the adversarial and feature-matching losses, the loss balancer,
   and the quantizer in the loop (the bottleneck stays continuous while training).
2. **Codebooks by residual k-means**: each residual-VQ layer gets the k-means centroids of what the layers
   before it left unexplained, over the encoder's latent frames. EnCodec seeds its own codebooks the same way
   (k-means on the first batch) before refining them with moving averages.

Both steps are seeded, so the same clips and settings give the same codec on the same machine. Only EnCodec
is supported (DAC's quantizer projects into its own low-dimensional codebook space).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio
from torch import nn

MEL_SCALES: tuple[int, ...] = (256, 512, 1024)  # STFT sizes of the multi-scale log-mel loss (hop n/4, n/8 mels)
LOG_FLOOR = 1e-5


@dataclass(frozen=True)
class CodecFitConfig:
    """How to fit the codec: ``steps`` Adam steps at ``lr`` on batches of ``batch_size`` random crops of
    ``crop_seconds``, then ``kmeans_iterations`` Lloyd iterations per codebook on at most ``kmeans_frames``
    latent frames drawn at random from all clips."""

    steps: int = 400
    batch_size: int = 8
    crop_seconds: float = 1.0
    lr: float = 3e-3
    kmeans_frames: int = 40_000
    kmeans_iterations: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.kmeans_frames, self.kmeans_iterations) < 1:
            raise ValueError("codec fit steps, batch_size, kmeans_frames and kmeans_iterations must be at least 1")
        if self.crop_seconds <= 0 or self.lr <= 0:
            raise ValueError("codec fit crop_seconds and lr must be positive")


def _check_encodec(codec: nn.Module) -> None:
    if getattr(getattr(codec, "config", None), "model_type", None) != "encodec":
        raise ValueError(f"only a transformers EncodecModel can be fitted here, not {type(codec).__name__}")


class MultiScaleMelLoss(nn.Module):
    """L1 between waveforms plus, at each STFT size in :data:`MEL_SCALES`, L1 between log-mel spectrograms."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n, hop_length=n // 4, n_mels=n // 8)
            for n in MEL_SCALES
        )

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = (predicted - target).abs().mean()
        for mel in self.mels:
            loss = loss + (torch.log(mel(predicted) + LOG_FLOOR) - torch.log(mel(target) + LOG_FLOOR)).abs().mean()
        return loss


def _crops(clips: Sequence[torch.Tensor], size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``[count, size]``: random clips, each cut at a random start (zero-padded if shorter than ``size``)."""
    batch = torch.zeros(count, size)
    for row, index in enumerate(torch.randint(len(clips), (count,), generator=generator).tolist()):
        clip = clips[index]
        start = int(torch.randint(max(1, clip.shape[0] - size + 1), (1,), generator=generator))
        piece = clip[start : start + size]
        batch[row, : piece.shape[0]] = piece
    return batch


def train_autoencoder(codec: nn.Module, clips: Sequence[torch.Tensor], config: CodecFitConfig) -> list[float]:
    """Train ``codec``'s encoder and decoder to reconstruct crops of ``clips`` (mono waveforms at the codec's
    rate); returns the loss of every step. The codec is left in eval mode with gradients off."""
    _check_encodec(codec)
    if not clips:
        raise ValueError("no clips to train the codec on")
    generator = torch.Generator().manual_seed(config.seed)
    size = round(config.crop_seconds * codec.config.sampling_rate)
    loss_fn = MultiScaleMelLoss(codec.config.sampling_rate)
    parameters = [*codec.encoder.parameters(), *codec.decoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    codec.train()
    for parameter in parameters:
        parameter.requires_grad_(True)
    losses = []
    for _ in range(config.steps):
        audio = _crops(clips, size, config.batch_size, generator).unsqueeze(1)
        rebuilt = codec.decoder(codec.encoder(audio))[..., :size]
        loss = loss_fn(rebuilt.squeeze(1), audio.squeeze(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    codec.requires_grad_(False).eval()
    return losses


@torch.no_grad()
def latent_frames(codec: nn.Module, clips: Sequence[torch.Tensor], limit: int, seed: int) -> torch.Tensor:
    """``[N, D]``: at most ``limit`` encoder output frames, drawn at random (seeded) from all clips' frames."""
    _check_encodec(codec)
    frames = torch.cat([codec.encoder(clip.view(1, 1, -1))[0].transpose(0, 1) for clip in clips])
    if frames.shape[0] <= limit:
        return frames
    return frames[torch.randperm(frames.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]]


def kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k starting centroids by k-means++ (Arthur & Vassilvitskii 2007): each next one drawn with probability
    proportional to the squared distance to the nearest one chosen so far, so no cluster starts without one."""
    chosen = [int(torch.randint(points.shape[0], (1,), generator=generator))]
    nearest = (points - points[chosen[0]]).pow(2).sum(1)
    for _ in range(k - 1):
        weights = nearest if float(nearest.sum()) > 0 else torch.ones_like(nearest)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        nearest = torch.minimum(nearest, (points - points[chosen[-1]]).pow(2).sum(1))
    return points[chosen].clone()


def kmeans(points: torch.Tensor, k: int, iterations: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from a k-means++ start (an empty cluster is re-seeded on the point farthest from its
    centroid); returns the centroids ``[k, D]`` and each point's cluster ``[N]``."""
    if points.shape[0] < k:
        raise ValueError(f"k-means needs at least {k} points, got {points.shape[0]}; give more clips or frames")
    centroids = kmeans_plus_plus(points, k, torch.Generator().manual_seed(seed))
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=k)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        for empty in (counts == 0).nonzero().flatten().tolist():
            distance = (points - centroids[assignment]).norm(dim=1)
            farthest = int(distance.argmax())
            centroids[empty], assignment[farthest] = points[farthest], empty
    return centroids, torch.cdist(points, centroids).argmin(1)


@torch.no_grad()
def fit_codebooks(codec: nn.Module, frames: torch.Tensor, config: CodecFitConfig) -> list[float]:
    """Set every residual-VQ codebook of ``codec`` to k-means centroids of the residual left by the layers before
    it; returns, after each layer, the residual's energy relative to the frames' variance (the share of it that is
    still unexplained)."""
    _check_encodec(codec)
    residual = frames.clone()
    total = float((frames - frames.mean(0)).pow(2).sum())
    unexplained = []
    for depth, layer in enumerate(codec.quantizer.layers):
        book = layer.codebook
        centroids, assignment = kmeans(residual, book.codebook_size, config.kmeans_iterations, config.seed + depth)
        book.embed.copy_(centroids)
        book.embed_avg.copy_(centroids)  # EnCodec's moving-average state, consistent with the fitted codebook
        book.cluster_size.copy_(torch.bincount(assignment, minlength=book.codebook_size).to(book.cluster_size))
        residual = residual - centroids[assignment]
        unexplained.append(float(residual.pow(2).sum()) / total)
    return unexplained


def fit_codec(codec: nn.Module, clips: Sequence[torch.Tensor], config: CodecFitConfig) -> dict[str, Any]:
    """Train the autoencoder, then fit the codebooks (both above); returns what happened, JSON-ready."""
    started = time.perf_counter()
    losses = train_autoencoder(codec, clips, config)
    trained = time.perf_counter()
    frames = latent_frames(codec, clips, config.kmeans_frames, config.seed)
    unexplained = fit_codebooks(codec, frames, config)
    tail = losses[-max(1, math.ceil(len(losses) / 20)) :]
    return {
        "clips": len(clips),
        "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail),  # the mean over the last 5% of steps
        "autoencoder_seconds": trained - started,
        "kmeans_frames": int(frames.shape[0]),
        "unexplained_after_each_codebook": unexplained,
        "kmeans_seconds": time.perf_counter() - trained,
    }
