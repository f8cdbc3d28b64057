"""Image encoder from any timm model: patch tokens, pooled features, and the model's own preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.image.io import load_image


@dataclass(frozen=True)
class TimmImageEncoderConfig:
    """A timm model by name. ``model_kwargs`` go to ``timm.create_model`` (e.g. ``img_size``, ``depth``).

    ``feature_layer`` -1 takes the final normed features; another index takes that block's output through
    ``forward_intermediates``. Prefix tokens (CLS, registers) are dropped unless ``keep_prefix_tokens``.
    The ``resolved_*`` fields are filled in when the model is built, and are what the processor uses.
    """

    model_name: str
    pretrained: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    feature_layer: int = -1
    keep_prefix_tokens: bool = False
    resolved_data_config: dict[str, Any] | None = None
    resolved_grid: tuple[int, int] | None = None
    resolved_prefix_tokens: int | None = None

    def num_tokens(self, size: tuple[int, int]) -> int:
        """Tokens for a preprocessed image of ``size`` (H, W); the model accepts only its own input size."""
        if self.resolved_grid is None or self.resolved_data_config is None:
            raise RuntimeError("num_tokens needs a resolved config; build the encoder first")
        expected = tuple(self.resolved_data_config["input_size"][1:])
        if tuple(size) != expected:
            raise ValueError(f"{self.model_name} takes {expected[0]}x{expected[1]} images, got {size[0]}x{size[1]}")
        grid = self.resolved_grid[0] * self.resolved_grid[1]
        return grid + (self.resolved_prefix_tokens or 0) * self.keep_prefix_tokens


class TimmImageEncoder(nn.Module):
    """Wraps ``timm.create_model(num_classes=0)``; tokens ``[B, N, D]``, all real (mask all True)."""

    config_class = TimmImageEncoderConfig
    modality = "image"

    def __init__(self, config: TimmImageEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        import timm
        from timm.data import resolve_data_config

        self.model = timm.create_model(
            config.model_name,
            pretrained=config.pretrained and load_pretrained,
            num_classes=0,
            **config.model_kwargs,
        )
        if not hasattr(self.model, "patch_embed"):
            raise ValueError(f"timm model {config.model_name!r} has no patch_embed; use a ViT-family model")
        self.hidden_size = int(self.model.num_features)
        data_config = resolve_data_config({}, model=self.model)
        # The pretrained config keeps the checkpoint's size even when ``img_size`` was overridden.
        data_config["input_size"] = (3, *(int(d) for d in self.model.patch_embed.img_size))
        self.config = replace(
            config,
            resolved_data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
            resolved_grid=tuple(int(g) for g in self.model.patch_embed.grid_size),
            resolved_prefix_tokens=int(getattr(self.model, "num_prefix_tokens", 0)),
        )

    def num_tokens(self, size: tuple[int, int]) -> int:
        return self.config.num_tokens(size)

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        if self.config.feature_layer == -1:
            features = self.model.forward_features(pixel_values)
        else:
            features = self.model.forward_intermediates(
                pixel_values, indices=[self.config.feature_layer], output_fmt="NLC", intermediates_only=True,
                return_prefix_tokens=self.config.keep_prefix_tokens,
            )[0]
            if self.config.keep_prefix_tokens:
                spatial, prefix = features
                features = torch.cat([prefix, spatial], dim=1)
        pooled = self.model.forward_head(features, pre_logits=True) if self.config.feature_layer == -1 else (
            features.mean(1)
        )
        prefix = self.config.resolved_prefix_tokens or 0
        if self.config.feature_layer == -1 and not self.config.keep_prefix_tokens:
            features = features[:, prefix:]
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return EncoderOutput(tokens=features, mask=mask, pooled=pooled)


class TimmImageProcessor:
    """Items -> ``pixel_values`` with timm's eval transform (resize, centre crop, normalise): never random."""

    def __init__(self, config: TimmImageEncoderConfig) -> None:
        from timm.data import create_transform

        if config.resolved_data_config is None:
            raise ValueError("TimmImageProcessor needs a resolved config; build the encoder first")
        self.config = config
        data_config = dict(config.resolved_data_config)
        for key in ("input_size", "mean", "std"):
            data_config[key] = tuple(data_config[key])
        self.transform = create_transform(**data_config, is_training=False)

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        tensors = []
        for i, item in enumerate(items):
            image = load_image(item, name=f"image {i}")
            tensors.append(self.transform(image))
        if not tensors:
            raise InvalidInputError("no images to process")
        pixel_values = torch.stack(tensors)
        size = tuple(pixel_values.shape[-2:])
        return ProcessedBatch(inputs={"pixel_values": pixel_values}, sizes=[size] * len(tensors))


TimmImageEncoder.processor_class = TimmImageProcessor
