"""Image loading: every accepted form becomes RGB, orientation follows EXIF, bad input names the item."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from encoders.base import InvalidInputError
from encoders.image import load_image


def test_modes_become_rgb(tmp_path):
    gray = Image.new("L", (5, 4), 128)
    rgba = Image.new("RGBA", (5, 4), (255, 0, 0, 0))  # fully transparent red -> white background
    assert load_image(gray).mode == "RGB"
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    path = tmp_path / "g.png"
    gray.save(path)
    assert load_image(path).getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (6, 3), (0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.size == (3, 6)


def test_arrays_in_every_layout():
    hwc = np.zeros((4, 5, 3), np.uint8)
    assert load_image(hwc).size == (5, 4)
    assert load_image(np.zeros((3, 4, 5), np.float32)).size == (5, 4)  # CHW float in [0, 1]
    assert load_image(np.zeros((4, 5), np.uint8)).mode == "RGB"


@pytest.mark.parametrize(
    "item, message",
    [
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or Inf"),
        (np.full((4, 4, 3), 2.0, np.float32), r"must lie in \[0, 1\]"),
        (np.zeros((4, 4, 3), np.int64), "dtype int64 is not supported"),
        (np.zeros((4,), np.uint8), "is not an image"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (42, "a int is not an image"),
        ("/no/such/file.png", "file not found"),
    ],
)
def test_bad_items_give_clear_errors(item, message):
    with pytest.raises(InvalidInputError, match=message):
        load_image(item, name="image 7")


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(InvalidInputError, match=r"image 3 \(.*cut.png\): not a readable image"):
        load_image(path, name="image 3")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "x.bin"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError):
        load_image(path)
