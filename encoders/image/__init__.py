"""Image encoders and the image processor (loading, orientation, colour mode, model preprocessing)."""

from encoders.image.io import load_image

__all__ = ["load_image"]
