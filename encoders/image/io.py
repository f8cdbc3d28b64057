"""Turn any supported image item (PIL image, path, uint8/float array) into an RGB PIL image, or say why not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from encoders.base import InvalidInputError


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InvalidInputError(f"{name}: array of shape {array.shape} is not an image (H×W, H×W×3 or H×W×4)")
    if array.size == 0:
        raise InvalidInputError(f"{name}: array of shape {array.shape} is empty")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{name}: float image contains NaN or Inf")
        if array.min() < 0.0 or array.max() > 1.0:
            raise InvalidInputError(f"{name}: float image values must lie in [0, 1], got [{array.min()}, {array.max()}]")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InvalidInputError(f"{name}: array dtype {array.dtype} is not supported; use uint8 or float in [0, 1]")
    return Image.fromarray(array)


def load_image(item: Any, name: str = "image") -> Image.Image:
    """An RGB image from a PIL image, a file path, or an array; EXIF orientation applied.

    Raises :class:`InvalidInputError` naming ``name`` (and the file) for missing, truncated or non-image files.
    """
    if isinstance(item, (str, Path)):
        path = Path(item)
        name = f"{name} ({path})"
        if not path.is_file():
            raise InvalidInputError(f"{name}: file not found")
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened)  # a loaded copy, so truncation shows up here
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise InvalidInputError(f"{name}: not a readable image ({err})") from err
    elif isinstance(item, Image.Image):
        image = ImageOps.exif_transpose(item)
    elif isinstance(item, np.ndarray) or hasattr(item, "__array__"):
        image = _from_array(np.asarray(item), name)
    else:
        raise InvalidInputError(f"{name}: a {type(item).__name__} is not an image; pass a PIL image, path or array")
    if image.width == 0 or image.height == 0:
        raise InvalidInputError(f"{name}: image has zero size {image.size}")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
