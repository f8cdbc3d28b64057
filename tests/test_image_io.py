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


def _png_header(path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` pixels and holds none (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [9000, 100_000])  # over our limit; the second is over Pillow's hard limit too
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    _png_header(path, side, side)
    with pytest.raises(InvalidInputError, match=r"image 2 \(.*bomb.png\): over the limit of 67,108,864 pixels.*MODALZOO_MAX_IMAGE_PIXELS"):
        load_image(path, name="image 2")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(path)
    assert load_image(path, max_pixels=100).size == (10, 10)
    with pytest.raises(InvalidInputError, match=r"over the limit of 99 pixels .*10 x 10 = 100"):
        load_image(path, max_pixels=99)
    monkeypatch.setenv("MODALZOO_MAX_IMAGE_PIXELS", "50")
    with pytest.raises(InvalidInputError, match="over the limit of 50 pixels"):
        load_image(path)
    monkeypatch.setenv("MODALZOO_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="MODALZOO_MAX_IMAGE_PIXELS='lots' is not a positive whole number"):
        load_image(path)


def test_unusable_path_is_an_input_error():
    with pytest.raises(InvalidInputError, match="not a usable path"):
        load_image("x" * 5000)
