"""Turn any supported image item (PIL image, path, uint8/float array) into an RGB PIL image, or say why not.

Image files are checked against a pixel limit before they are decoded: a small file whose header claims, say,
100000 x 100000 pixels (a decompression bomb) would otherwise take gigabytes of memory. The limit is
``DEFAULT_MAX_PIXELS`` (8192 x 8192), or the ``MODALZOO_MAX_IMAGE_PIXELS`` environment variable, or the
``max_pixels`` argument of :func:`load_image`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from encoders.base import InvalidInputError

DEFAULT_MAX_PIXELS = 8192 * 8192
MAX_PIXELS_ENV = "MODALZOO_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit for image files: ``MODALZOO_MAX_IMAGE_PIXELS`` if set, else ``DEFAULT_MAX_PIXELS``."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r} is not a positive whole number of pixels; unset it or fix it")
    return int(value)


def _open_checked(path: Path, name: str, max_pixels: int) -> Image.Image:
    """Decode ``path`` (EXIF orientation applied) only if the size in its header is within ``max_pixels``."""
    too_big = f"{name}: over the limit of {max_pixels:,} pixels for an image file (a decompression-bomb guard)"
    advice = f"if the image is genuine, raise {MAX_PIXELS_ENV}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(path) as opened:
                width, height = opened.size
                # exif_transpose returns a loaded copy, so truncation shows up here
                image = ImageOps.exif_transpose(opened) if width * height <= max_pixels else None
    except Image.DecompressionBombError as err:  # Pillow's own hard limit, checked while opening
        raise InvalidInputError(f"{too_big}, and over Pillow's own limit ({err}); {advice} and PIL.Image.MAX_IMAGE_PIXELS") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{name}: not a readable image ({err})") from err
    if image is None:
        raise InvalidInputError(f"{too_big}: its header claims {width} x {height} = {width * height:,}; {advice}")
    return image


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


def load_image(item: Any, name: str = "image", max_pixels: int | None = None) -> Image.Image:
    """An RGB image from a PIL image, a file path, or an array; EXIF orientation applied.

    Raises :class:`InvalidInputError` naming ``name`` (and the file) for missing, truncated or non-image files,
    and for files over ``max_pixels`` (default: :func:`max_image_pixels`), checked before decoding.
    """
    if isinstance(item, (str, Path)):
        path = Path(item)
        name = f"{name} ({path})"
        try:
            found = path.is_file()
        except OSError as err:  # e.g. a name longer than the file system allows
            raise InvalidInputError(f"{name}: not a usable path ({err.strerror})") from err
        if not found:
            raise InvalidInputError(f"{name}: file not found")
        image = _open_checked(path, name, max_image_pixels() if max_pixels is None else max_pixels)
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
