"""Vision towers from Hugging Face CLIP/SigLIP checkpoints, with LLaVA's feature layer and CLS selection.

A full dual checkpoint (``CLIPModel``, ``SiglipModel``) or a vision-only one loads as its vision model. Tokens
are ``hidden_states[vision_feature_layer]`` (index 0 is the embeddings, -1 the last layer, -2 LLaVA's
default); strategy ``"default"`` drops the CLS token and ``"full"`` keeps it. Whether there is a CLS token is
read from the model (SigLIP has none, so ``"default"`` drops nothing there, unlike LLaVA's fixed ``[:, 1:]``).
With ``post_layernorm`` the selected hidden state passes the tower's own final LayerNorm first: BLIP-2's
Q-Former reads the last layer after it (``Blip2VisionModel``'s ``last_hidden_state``, CLS kept).

A BLIP-2 vision config (``blip_2_vision_model``), which ``AutoModel`` does not map because the tower only
exists inside the larger model, is built as the transformers class :data:`TOWER_CLASSES` names for it (our
table; nothing in a config chooses the class).

``pooled`` is the model's own ``pooler_output``: CLIP's post-layernorm CLS state, SigLIP's attention-pool
head; a SigLIP without a head (``vision_use_head=False``) pools by the mean of its last hidden state. Neither is
projected into a CLIP text space (that projection belongs to the dual model, not the vision tower).

Preprocessing is the checkpoint's Hugging Face image processor. Its full parameter dict (size, crop_size,
mean, std, resample, do_center_crop, ... and the processor class) is stored in the resolved config, and the
processor is rebuilt from that dict, so a saved model cannot drift from the preprocessing it was built with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.image.io import load_image

FEATURE_SELECT_STRATEGIES: tuple[str, ...] = ("default", "full")
# Vision configs AutoModel does not map -> the transformers class that is that tower.
TOWER_CLASSES: dict[str, str] = {
    "blip_2_vision_model": "Blip2VisionModel", "instructblip_vision_model": "InstructBlipVisionModel",
}


@dataclass(frozen=True)
class HFVisionEncoderConfig:
    """Either ``pretrained`` (hub id or directory) or ``model_config`` (random init from a config dict with
    ``model_type``, e.g. ``clip_vision_model``, ``siglip_vision_model``). ``post_layernorm`` applies the tower's
    final LayerNorm to the selected hidden state (BLIP-2: layer -1, strategy ``"full"``).

    ``image_processor`` (the contents of a ``preprocessor_config.json``) replaces the checkpoint's own; a
    ``model_config`` model needs it. The ``resolved_*`` fields are filled in when the model is built.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    image_processor: dict[str, Any] | None = None
    vision_feature_layer: int = -2
    feature_select_strategy: str = "default"
    post_layernorm: bool = False
    resolved_image_processor: dict[str, Any] | None = None
    resolved_image_size: tuple[int, int] | None = None
    resolved_grid: tuple[int, int] | None = None
    resolved_prefix_tokens: int | None = None

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.model_config is not None and self.image_processor is None:
            raise ValueError(
                "a vision tower built from 'model_config' needs 'image_processor' (preprocessor_config.json "
                "contents, e.g. {'image_processor_type': 'CLIPImageProcessor', 'size': {...}, ...})"
            )
        if self.feature_select_strategy not in FEATURE_SELECT_STRATEGIES:
            raise ValueError(
                f"unknown feature_select_strategy {self.feature_select_strategy!r}; allowed: "
                f"{', '.join(FEATURE_SELECT_STRATEGIES)} ('default' drops the CLS token, 'full' keeps it)"
            )

    def num_tokens(self, size: tuple[int, int]) -> int:
        """Tokens for a preprocessed image of ``size`` (H, W): grid area, plus the CLS token under "full"."""
        if self.resolved_grid is None or self.resolved_image_size is None or self.resolved_prefix_tokens is None:
            raise RuntimeError("num_tokens needs a resolved config; build the encoder first")
        if tuple(size) != tuple(self.resolved_image_size):
            h, w = self.resolved_image_size
            raise ValueError(f"this vision tower takes {h}x{w} images, got {size[0]}x{size[1]}")
        prefix = self.resolved_prefix_tokens if self.feature_select_strategy == "full" else 0
        return self.resolved_grid[0] * self.resolved_grid[1] + prefix


def _vision_config(config: HFVisionEncoderConfig) -> Any:
    """The vision part of the checkpoint's (or ``model_config``'s) transformers config."""
    from transformers import AutoConfig

    if config.model_config is not None:
        params = dict(config.model_config)
        hf_config = AutoConfig.for_model(params.pop("model_type"), **params)
    else:
        hf_config = AutoConfig.from_pretrained(config.pretrained, revision=config.revision)
    return getattr(hf_config, "vision_config", hf_config)


def _load_model(config: HFVisionEncoderConfig, vision_config: Any, load_pretrained: bool) -> nn.Module:
    import transformers
    from transformers import AutoModel

    tower = TOWER_CLASSES.get(getattr(vision_config, "model_type", ""))
    if config.pretrained is None or not load_pretrained:
        if tower is None:
            return AutoModel.from_config(vision_config)
        return getattr(transformers, tower)._from_config(vision_config)
    if tower is not None:
        raise ValueError(
            f"{config.pretrained} holds a {tower} only inside a larger model, whose weights hf-vision does not load "
            "by itself; load the whole checkpoint (zoo.load('hf:...')) or give the tower's weights through a card"
        )
    model, info = AutoModel.from_pretrained(
        config.pretrained, config=vision_config, revision=config.revision, output_loading_info=True
    )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ValueError(
            f"{config.pretrained} has no weights for {len(missing)} vision tower parameter(s) "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); point 'pretrained' at a CLIP/SigLIP "
            "(or vision-only) checkpoint"
        )
    return model


def _image_processor_dict(config: HFVisionEncoderConfig) -> dict[str, Any]:
    """The image processor's full parameter dict as plain JSON data (enums and tuples flattened)."""
    from transformers import AutoImageProcessor

    if config.image_processor is not None:
        processor = _processor_from_dict(config.image_processor)
    else:
        try:
            processor = AutoImageProcessor.from_pretrained(config.pretrained, revision=config.revision)
        except OSError as err:
            raise ValueError(
                f"{config.pretrained} has no image processor config; give 'image_processor' "
                "(preprocessor_config.json contents) in the encoder config"
            ) from err
    return json.loads(json.dumps(processor.to_dict()))


def _processor_from_dict(values: dict[str, Any]) -> Any:
    from transformers.models.auto.image_processing_auto import get_image_processor_class_from_name

    name = values.get("image_processor_type")
    cls = get_image_processor_class_from_name(name) if name else None
    if cls is None:
        raise ValueError(
            f"image processor config names no known 'image_processor_type' (got {name!r}); use e.g. "
            "CLIPImageProcessor or SiglipImageProcessor"
        )
    return cls.from_dict(values)


def _output_size(processor: dict[str, Any]) -> tuple[int, int]:
    """The fixed (H, W) the image processor produces: its crop when it crops, else its resize target."""
    target = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    if not processor.get("do_resize", True) or not target or "height" not in target or "width" not in target:
        raise ValueError(
            "the image processor does not produce a fixed image size (size="
            f"{processor.get('size')}, do_center_crop={processor.get('do_center_crop')}, crop_size="
            f"{processor.get('crop_size')}); set a crop_size or a size with height and width"
        )
    return int(target["height"]), int(target["width"])


class HFVisionEncoder(nn.Module):
    """A transformers CLIP/SigLIP vision model: tokens from ``vision_feature_layer`` (all real), ``pooled`` the
    model's ``pooler_output``; ``hidden_size`` is the tower's width."""

    config_class = HFVisionEncoderConfig
    modality = "image"

    def __init__(self, config: HFVisionEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        vision_config = _vision_config(config)
        self.model = _load_model(config, vision_config, load_pretrained)
        embeddings = getattr(self.model, "embeddings", None)
        if not hasattr(embeddings, "num_patches") or not hasattr(embeddings, "num_positions"):
            raise ValueError(
                f"{type(self.model).__name__} is not a CLIP/SigLIP-style vision transformer; hf-vision supports "
                "CLIPVisionModel, SiglipVisionModel and Blip2VisionModel checkpoints"
            )
        if config.post_layernorm and not isinstance(getattr(self.model, "post_layernorm", None), nn.Module):
            raise ValueError(f"post_layernorm is set but {type(self.model).__name__} has no post_layernorm; unset it")
        layers = int(vision_config.num_hidden_layers)
        if not -(layers + 1) <= config.vision_feature_layer <= layers:
            raise ValueError(
                f"vision_feature_layer {config.vision_feature_layer} is out of range for a {layers}-layer tower; "
                f"use -{layers + 1}..{layers} (0 is the embeddings, -1 the last layer)"
            )
        grid = int(vision_config.image_size) // int(vision_config.patch_size)
        image_size = (int(vision_config.image_size),) * 2
        processor = _image_processor_dict(config)
        if (made := _output_size(processor)) != image_size:
            raise ValueError(
                f"the image processor makes {made} images but the model takes {image_size}; "
                "fix the checkpoint's preprocessor_config.json or pass 'image_processor'"
            )
        self.hidden_size = int(vision_config.hidden_size)
        self.config = replace(
            config,
            resolved_image_processor=processor,
            resolved_image_size=image_size,
            resolved_grid=(grid, grid),
            resolved_prefix_tokens=int(embeddings.num_positions - embeddings.num_patches),
        )

    def num_tokens(self, size: tuple[int, int]) -> int:
        return self.config.num_tokens(size)

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        tokens = out.hidden_states[self.config.vision_feature_layer]
        if self.config.post_layernorm:
            tokens = self.model.post_layernorm(tokens)
        if self.config.feature_select_strategy == "default":
            tokens = tokens[:, self.config.resolved_prefix_tokens :]
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)


class HFVisionProcessor:
    """Items -> ``pixel_values`` with the Hugging Face image processor rebuilt from the resolved parameters
    (resize, centre crop, rescale, normalise: deterministic)."""

    def __init__(self, config: HFVisionEncoderConfig) -> None:
        if config.resolved_image_processor is None:
            raise ValueError("HFVisionProcessor needs a resolved config; build the encoder first")
        self.config = config
        self.image_processor = _processor_from_dict(config.resolved_image_processor)

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        if not items:
            raise InvalidInputError("no images to process")
        images = [load_image(item, name=f"image {i}") for i, item in enumerate(items)]
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        size = tuple(pixel_values.shape[-2:])
        return ProcessedBatch(inputs={"pixel_values": pixel_values}, sizes=[size] * len(items))


HFVisionEncoder.processor_class = HFVisionProcessor
