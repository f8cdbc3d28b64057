"""open_clip towers by model name + pretrained tag: the image tower and the text tower of one CLIP model.

Both towers build the model through ``open_clip.create_model`` (so tags download and local checkpoints load
through open_clip's own loader, ``weights_only=True`` or safetensors) and keep their half. ``pooled`` is the
tower's projected embedding, already in the shared CLIP space; ``tokens`` are the unprojected per-token
features (width of the tower), which is why the towers report ``pooled_size`` apart from ``hidden_size``.

QuickGELU: OpenAI's weights (and some others) were trained with QuickGELU, but the plain architecture names
(``ViT-B-32``) build nn.GELU. Loading such weights into a GELU model silently degrades results, so the
activation is resolved from the tag's entry in open_clip's pretrained registry (no download), recorded in
``resolved_quick_gelu``, and an explicit ``quick_gelu`` that contradicts the tag is refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.image.io import load_image


@dataclass(frozen=True)
class OpenCLIPTowerConfig:
    """An open_clip model: a built-in (or ``open_clip.add_model_config``-registered) name and its weights.

    ``pretrained``: a pretrained tag of ``model_name`` (``openai``, ``laion2b_s34b_b79k``, ...), a local
    checkpoint file (``.safetensors`` preferred; ``.pt``/``.bin`` are read with ``weights_only=True``), or
    None for random init. ``quick_gelu``: None takes the tag's setting (a checkpoint file or random init takes
    the architecture's); True/False must agree with the tag. ``model_kwargs`` override top-level keys of the
    open_clip model config (``embed_dim``, ``vision_cfg``, ... — a nested cfg is replaced whole).
    """

    model_name: str
    pretrained: str | None = None
    quick_gelu: bool | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    resolved_quick_gelu: bool | None = None

    def __post_init__(self) -> None:
        if ":" in self.model_name:
            raise ValueError(
                f"model_name {self.model_name!r}: give an open_clip architecture name (open_clip.list_models()) "
                "and put the weights in 'pretrained' (a tag or a local checkpoint file); hf-hub:/local-dir: "
                "names are not supported"
            )
        if "quick_gelu" in self.model_kwargs:
            raise ValueError("set 'quick_gelu' in the config itself, not in model_kwargs, so it is checked against the tag")


def resolve_quick_gelu(model_name: str, pretrained: str | None, quick_gelu: bool | None) -> bool:
    """Whether the model must use QuickGELU: the tag's registry entry decides (no download); for a checkpoint
    file or random init, ``quick_gelu`` if given, else the architecture config's setting.

    Raises ``ValueError`` when an explicit ``quick_gelu`` contradicts the tag, which would silently load
    weights into the wrong activation.
    """
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
    if tag_cfg:
        needed = bool(tag_cfg.get("quick_gelu", False))
        if quick_gelu is not None and quick_gelu != needed:
            raise ValueError(
                f"{model_name} + {pretrained!r} was trained with quick_gelu={needed}, but the config sets "
                f"quick_gelu={quick_gelu}; the weights would load into the wrong activation and silently give "
                "worse results. Leave quick_gelu unset (null) to take it from the tag."
            )
        return needed
    if quick_gelu is not None:
        return quick_gelu
    return bool(_architecture_config(model_name).get("quick_gelu", False))


def _architecture_config(model_name: str) -> dict[str, Any]:
    import open_clip

    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"open_clip has no model config named {model_name!r}.{hint} See open_clip.list_models(), or register "
            "your own JSON config with open_clip.add_model_config(path)"
        )
    return model_cfg


def _create_model(config: OpenCLIPTowerConfig, load_pretrained: bool) -> tuple[nn.Module, bool]:
    """The full open_clip model (text tower as a module: ``force_custom_text``) and its QuickGELU setting.

    Without ``load_pretrained`` nothing is read or downloaded, but a tag's preprocessing is still applied, so
    the resolved config is the same either way.
    """
    import open_clip

    _architecture_config(config.model_name)
    quick_gelu = resolve_quick_gelu(config.model_name, config.pretrained, config.quick_gelu)
    tag_cfg = open_clip.get_pretrained_cfg(config.model_name, config.pretrained) if config.pretrained else {}
    checkpoint = config.pretrained if load_pretrained else None
    if checkpoint is not None and not tag_cfg and not Path(checkpoint).is_file():
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(config.model_name)) or "none"
        raise ValueError(
            f"pretrained {checkpoint!r} is neither a pretrained tag of {config.model_name} (tags: {tags}) nor an "
            "existing checkpoint file"
        )
    preprocess = {k: v for k, v in tag_cfg.items() if k in ("mean", "std", "interpolation", "resize_mode")}
    model = open_clip.create_model(
        config.model_name,
        pretrained=checkpoint,
        force_custom_text=True,
        # force_quick_gelu keeps open_clip's own tag check quiet; the kwarg (highest priority) also turns
        # QuickGELU off for a "-quickgelu" architecture when a checkpoint file asks for that.
        force_quick_gelu=quick_gelu,
        force_preprocess_cfg=preprocess,
        require_pretrained=checkpoint is not None,
        weights_only=True,
        **{**config.model_kwargs, "quick_gelu": quick_gelu},
    )
    return model.eval(), quick_gelu


def _plain(value: Any) -> Any:
    """Tuples to lists, so resolved fields equal their JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class OpenCLIPVisionConfig(OpenCLIPTowerConfig):
    """The image tower. ``resolved_preprocess`` holds open_clip's preprocess cfg for the model and tag
    (size, mean, std, interpolation, resize_mode, ...); ``resolved_grid`` the patch grid."""

    resolved_preprocess: dict[str, Any] | None = None
    resolved_grid: tuple[int, int] | None = None

    def num_tokens(self, size: tuple[int, int]) -> int:
        """Patch tokens (CLS excluded) for a preprocessed image of ``size`` (H, W): the grid's area."""
        if self.resolved_grid is None or self.resolved_preprocess is None:
            raise RuntimeError("num_tokens needs a resolved config; build the encoder first")
        expected = tuple(self.resolved_preprocess["size"])
        if tuple(size) != expected:
            raise ValueError(f"{self.model_name} takes {expected[0]}x{expected[1]} images, got {size[0]}x{size[1]}")
        return self.resolved_grid[0] * self.resolved_grid[1]


@dataclass(frozen=True)
class OpenCLIPTextConfig(OpenCLIPTowerConfig):
    """The text tower; ``resolved_context_length`` is the tokenizer's fixed length (77 for CLIP)."""

    resolved_context_length: int | None = None

    def num_tokens(self, size: int) -> int:
        """Tokens for a text of ``size`` token ids (start and end tokens included), after truncation."""
        if self.resolved_context_length is None:
            raise RuntimeError("num_tokens needs a resolved config; build the encoder first")
        return min(size, self.resolved_context_length)


class OpenCLIPVisionEncoder(nn.Module):
    """An open_clip ViT image tower: patch tokens ``[B, grid, width]`` (all real) and the projected image
    embedding as ``pooled`` ``[B, embed_dim]``. ``logit_scale_init`` is the loaded checkpoint's log logit
    scale (open_clip's initial value when no weights are loaded), for a dual encoder built on these towers."""

    config_class = OpenCLIPVisionConfig
    modality = "image"

    def __init__(self, config: OpenCLIPVisionConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        model, quick_gelu = _create_model(config, load_pretrained)
        visual = model.visual
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise ValueError(
                f"{config.model_name}'s image tower is a {type(visual).__name__}"
                f"{' with attentional pooling' if isinstance(visual, VisionTransformer) else ''}; open-clip-vision "
                "needs a plain ViT tower (patch tokens), e.g. ViT-B-32 or ViT-L-14"
            )
        visual.output_tokens = True
        self.visual = visual
        self.hidden_size = int(visual.conv1.out_channels)
        self.pooled_size = int(visual.output_dim)
        self.logit_scale_init = float(model.logit_scale.detach())
        self.config = replace(
            config,
            resolved_quick_gelu=quick_gelu,
            resolved_preprocess=_plain(visual.preprocess_cfg),
            resolved_grid=tuple(int(g) for g in visual.grid_size),
        )

    def num_tokens(self, size: tuple[int, int]) -> int:
        return self.config.num_tokens(size)

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        pooled, tokens = self.visual(pixel_values)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)


class OpenCLIPImageProcessor:
    """Items -> ``pixel_values`` with open_clip's eval transform for the resolved preprocess cfg (never random)."""

    def __init__(self, config: OpenCLIPVisionConfig) -> None:
        from open_clip.transform import PreprocessCfg, image_transform_v2

        if config.resolved_preprocess is None:
            raise ValueError("OpenCLIPImageProcessor needs a resolved config; build the encoder first")
        self.config = config
        self.transform = image_transform_v2(PreprocessCfg(**config.resolved_preprocess), is_train=False)

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        if not items:
            raise InvalidInputError("no images to process")
        pixel_values = torch.stack([self.transform(load_image(item, name=f"image {i}")) for i, item in enumerate(items)])
        size = tuple(pixel_values.shape[-2:])
        return ProcessedBatch(inputs={"pixel_values": pixel_values}, sizes=[size] * len(items))


def eot_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """True from the start token up to and including the end-of-text token, which is the highest id in each
    row (what CLIP's text tower pools on). Pad id 0 is also a real token ("!"), so ``ids != 0`` would be wrong."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return positions.unsqueeze(0) <= input_ids.argmax(dim=1, keepdim=True)


class OpenCLIPTextEncoder(nn.Module):
    """An open_clip text tower: per-token features ``[B, context_length, width]``, the mask from the token ids
    (:func:`eot_mask`), and the projected text embedding as ``pooled`` ``[B, embed_dim]``."""

    config_class = OpenCLIPTextConfig
    modality = "text"

    def __init__(self, config: OpenCLIPTextConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from open_clip.transformer import TextTransformer

        model, quick_gelu = _create_model(config, load_pretrained)
        text = model.text
        if not isinstance(text, TextTransformer) or text.pool_type != "argmax" or text.cls_emb is not None:
            raise ValueError(
                f"{config.model_name}'s text tower does not pool at the end-of-text token (it is a "
                f"{type(text).__name__}, pool_type {getattr(text, 'pool_type', '?')!r}); open-clip-text supports "
                "CLIP-style text towers (pool_type 'argmax'), e.g. ViT-B-32 or ViT-L-14"
            )
        text.output_tokens = True
        self.text = text
        self.hidden_size = int(text.width)
        self.pooled_size = int(text.output_dim)
        self.logit_scale_init = float(model.logit_scale.detach())
        self.config = replace(config, resolved_quick_gelu=quick_gelu, resolved_context_length=int(text.context_length))

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor) -> EncoderOutput:
        pooled, tokens = self.text(input_ids)
        return EncoderOutput(tokens=tokens, mask=eot_mask(input_ids), pooled=pooled)


class OpenCLIPTextProcessor:
    """Texts -> ``input_ids`` ``[B, context_length]`` with the model's open_clip tokenizer.

    ``tokenizer`` (a callable ``texts -> LongTensor``) replaces ``open_clip.get_tokenizer(model_name)``. It is
    kept as ``tokenize``, not ``tokenizer``: it is rebuilt from the config, so nothing is saved with the model.
    """

    def __init__(self, config: OpenCLIPTextConfig, tokenizer: Any = None) -> None:
        import open_clip

        if config.resolved_context_length is None:
            raise ValueError("OpenCLIPTextProcessor needs a resolved config; build the encoder first")
        self.config = config
        self.tokenize = tokenizer or open_clip.get_tokenizer(
            config.model_name, context_length=config.resolved_context_length
        )

    def __call__(self, items: Sequence[str]) -> ProcessedBatch:
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InvalidInputError(f"text item {i} is a {type(text).__name__}, expected str: {text!r:.80}")
        if not items:
            raise InvalidInputError("no texts to process")
        input_ids = self.tokenize(list(items))
        sizes = [int(n) for n in eot_mask(input_ids).sum(1)]
        return ProcessedBatch(inputs={"input_ids": input_ids}, sizes=sizes)


OpenCLIPVisionEncoder.processor_class = OpenCLIPImageProcessor
OpenCLIPTextEncoder.processor_class = OpenCLIPTextProcessor
