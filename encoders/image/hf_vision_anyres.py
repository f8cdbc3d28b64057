"""LLaVA-NeXT's any-resolution vision tower: a base view plus the tiles of a best-fit resolution, one CLIP pass.

The checkpoint's ``LlavaNextImageProcessor`` (its parameter dict stored in the resolved config, as ``hf-vision``
stores its processor) resizes each image to the tower's size (the base view) and, separately, to the resolution
in ``image_grid_pinpoints`` that fits it best, padded and cut into tower-sized tiles. Every view goes through
the tower; the tile features are laid out as one feature map, the rows or columns that only saw padding are cut
off (LLaVA-NeXT's "unpad", so the map keeps the image's aspect ratio), and a row-end slot follows each row.

Tokens per image: the base view's grid, then the unpadded map row by row, each row followed by its slot, so the
count depends on the image size (:func:`anyres_layout` is the one place it is computed, for the processor's
placeholders and for the forward pass alike). Tokens are one wider than the tower: its features with a
last channel that is 1.0 at a row-end slot (features all 0 there) and 0.0 elsewhere. Row ends belong in the
language model's space (LLaVA-NeXT learns one ``image_newline`` vector there), so a projector fills them: the
``anyres-mlp`` projector (``projectors/anyres.py``) projects the features and puts its newline at the slots.
Cutting the padding before projecting is exact: the projector works token by token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.image.hf_vision import HFVisionEncoder, HFVisionEncoderConfig, HFVisionProcessor
from encoders.image.io import load_image


@dataclass(frozen=True)
class AnyresLayout:
    """Where an image's tokens come from: ``tiles`` (rows, columns) of tower-sized tiles, and the rows
    ``[top, bottom)`` and columns ``[left, right)`` of their joint feature map that hold the image."""

    tiles: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]

    def num_tokens(self, grid: tuple[int, int]) -> int:
        """The base view's ``grid`` tokens plus the kept map, each row followed by its row-end slot."""
        height, width = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        return grid[0] * grid[1] + height * (width + 1)


def anyres_layout(
    size: tuple[int, int], pinpoints: Sequence[Sequence[int]], tile: int, grid: tuple[int, int]
) -> AnyresLayout:
    """The layout of an image of ``size`` (H, W): the best-fit resolution among ``pinpoints`` (transformers'
    own choice), cut into ``tile``-pixel tiles of ``grid`` tokens each, with the feature rows (or columns) that
    the aspect-preserving resize left as padding cut off, rounding as LLaVA-NeXT does."""
    from transformers.image_processing_utils import select_best_resolution

    height, width = size
    best_height, best_width = select_best_resolution((height, width), [list(p) for p in pinpoints])
    tiles = (best_height // tile, best_width // tile)
    rows, cols = tiles[0] * grid[0], tiles[1] * grid[1]
    top = left = 0
    if width / height > cols / rows:  # wider than the map: padding above and below
        top = (rows - int(round(height * (cols / width), 7))) // 2
    else:
        left = (cols - int(round(width * (rows / height), 7))) // 2
    return AnyresLayout(tiles, (top, rows - top), (left, cols - left))


@dataclass(frozen=True)
class HFVisionAnyresEncoderConfig(HFVisionEncoderConfig):
    """``hf-vision``'s fields; the image processor must be a LLaVA-NeXT one (it holds ``image_grid_pinpoints``,
    each a multiple of the tower's image size). An item's size is the image's own (H, W)."""

    def layout(self, size: tuple[int, int]) -> AnyresLayout:
        """:func:`anyres_layout` for an image of ``size`` under the resolved processor and tower."""
        if self.resolved_grid is None or self.resolved_image_size is None or self.resolved_image_processor is None:
            raise RuntimeError("layout needs a resolved config; build the encoder first")
        pinpoints = self.resolved_image_processor["image_grid_pinpoints"]
        return anyres_layout(tuple(size), pinpoints, self.resolved_image_size[0], self.resolved_grid)

    def num_tokens(self, size: tuple[int, int]) -> int:
        """Tokens for an image of ``size`` (H, W), row-end slots included."""
        return self.layout(size).num_tokens(self.resolved_grid)


def _check_pinpoints(processor: dict[str, Any], tile: int) -> list[list[int]]:
    pinpoints = processor.get("image_grid_pinpoints")
    if (
        not isinstance(pinpoints, list) or not pinpoints
        or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) for v in p) for p in pinpoints)
    ):
        raise ValueError(
            f"hf-vision-anyres needs a LLaVA-NeXT image processor with image_grid_pinpoints (a list of [height, "
            f"width] pairs), got {pinpoints!r} from a {processor.get('image_processor_type')}; use the "
            "checkpoint's LlavaNextImageProcessor config or pass 'image_processor'"
        )
    if any(v <= 0 or v % tile for p in pinpoints for v in p):
        raise ValueError(f"every image_grid_pinpoints size must be a positive multiple of the tower's {tile}-pixel "
                         f"image size, got {pinpoints}")
    return pinpoints


def _checkpoint_pinpoints(config: HFVisionEncoderConfig) -> Any:
    """The ``image_grid_pinpoints`` the checkpoint's model config names (None when it names none)."""
    if config.pretrained is None:
        return None
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(config.pretrained, revision=config.revision), "image_grid_pinpoints",
                   None)


class HFVisionAnyresEncoder(HFVisionEncoder):
    """An ``hf-vision`` tower run on LLaVA-NeXT's base view and tiles; tokens are laid out as the module
    docstring says, ``hidden_size`` is the tower's width + 1 (the row-end channel), ``pooled`` the base view's
    ``pooler_output``."""

    config_class = HFVisionAnyresEncoderConfig

    def __init__(self, config: HFVisionAnyresEncoderConfig, load_pretrained: bool = True) -> None:
        super().__init__(config, load_pretrained)
        resolved = self.config
        if resolved.resolved_prefix_tokens and resolved.feature_select_strategy != "default":
            raise ValueError(
                "hf-vision-anyres lays tile tokens out as the patch grid, so the CLS token must go: use "
                "feature_select_strategy 'default'"
            )
        pinpoints = _check_pinpoints(resolved.resolved_image_processor, resolved.resolved_image_size[0])
        named = _checkpoint_pinpoints(config)
        if named is not None and [list(p) for p in named] != pinpoints:
            raise ValueError(
                f"{config.pretrained}: config.json image_grid_pinpoints {named} differ from its image processor's "
                f"{pinpoints}; the model would lay tiles out other than they were cut — fix one of them"
            )
        self.hidden_size += 1

    def forward(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> EncoderOutput:
        """``pixel_values`` ``[n_images, max_views, 3, S, S]`` (base view first, then the tiles, zero views as
        padding) and ``image_sizes`` ``[n_images, 2]`` (H, W), as the processor gives them."""
        layouts = [self.config.layout(tuple(size)) for size in image_sizes.tolist()]
        counts = [1 + layout.tiles[0] * layout.tiles[1] for layout in layouts]
        views = torch.cat([pixels[:n] for pixels, n in zip(pixel_values, counts, strict=True)])
        tower = super().forward(views)  # hf-vision's own token selection, view by view
        items = [self._arrange(views_of_item, layout)
                 for views_of_item, layout in zip(tower.tokens.split(counts), layouts, strict=True)]
        tokens = nn.utils.rnn.pad_sequence(items, batch_first=True)
        lengths = torch.tensor([len(item) for item in items], device=tokens.device)
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]
        base_views = [sum(counts[:i]) for i in range(len(counts))]
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tower.pooled[base_views])

    def _arrange(self, features: torch.Tensor, layout: AnyresLayout) -> torch.Tensor:
        """One image's view features ``[1 + tiles, grid, D]`` as its token sequence ``[M, D + 1]``."""
        (grid_h, grid_w), (tiles_h, tiles_w) = self.config.resolved_grid, layout.tiles
        base, tiles = features[0], features[1:]
        width = tiles.shape[-1]
        feature_map = (
            tiles.reshape(tiles_h, tiles_w, grid_h, grid_w, width)
            .permute(0, 2, 1, 3, 4)
            .reshape(tiles_h * grid_h, tiles_w * grid_w, width)[slice(*layout.rows), slice(*layout.cols)]
        )
        row_ends = feature_map.new_zeros(feature_map.shape[0], 1, width + 1)
        row_ends[..., -1] = 1.0
        rows = torch.cat([nn.functional.pad(feature_map, (0, 1)), row_ends], dim=1)
        return torch.cat([nn.functional.pad(base, (0, 1)), rows.reshape(-1, width + 1)])


class HFVisionAnyresProcessor(HFVisionProcessor):
    """Items -> ``pixel_values`` (each image's base view and tiles, padded with zero views to the batch's
    most) and ``image_sizes`` with the checkpoint's LLaVA-NeXT image processor; an item's size is its (H, W)."""

    def __call__(self, items: Sequence[Any]) -> ProcessedBatch:
        if not items:
            raise InvalidInputError("no images to process")
        images = [load_image(item, name=f"image {i}") for i, item in enumerate(items)]
        out = self.image_processor(images, return_tensors="pt", do_pad=True)
        sizes = [tuple(size) for size in out["image_sizes"].tolist()]
        return ProcessedBatch(inputs={"pixel_values": out["pixel_values"], "image_sizes": out["image_sizes"]},
                              sizes=sizes)


HFVisionAnyresEncoder.processor_class = HFVisionAnyresProcessor
