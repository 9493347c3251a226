"""Picture intake: formats sniffed from bytes, limits of api.md, orientation, colour modes, regions."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from flask_app import protocol
from imagesearch_pg.errors import (
    InvalidImage,
    InvalidImageFormat,
    InvalidImageSize,
    InvalidParameter,
    InvalidRegion,
)
from imagesearch_pg.vision import intake
from tests.pictures import encode, noise


@pytest.mark.parametrize(
    "fmt,options",
    [("PNG", {}), ("JPEG", {"quality": 95}), ("BMP", {}), ("GIF", {}), ("WEBP", {"lossless": True}),
     ("TIFF", {}), ("PPM", {})],
)
def test_every_allowed_format_decodes_to_rgb(fmt, options):
    picture = noise(160, 120, seed=1)
    decoded = intake.read_picture(encode(picture, fmt, **options), "generic")
    assert decoded.shape == (120, 160, 3) and decoded.dtype == np.uint8
    tolerance = 40 if fmt in ("JPEG", "GIF") else 0
    assert np.abs(decoded.astype(int) - picture.astype(int)).mean() <= max(tolerance, 0.0)


def test_format_is_sniffed_from_bytes_not_name():
    # A PNG is a PNG whatever it is called; bytes of another kind are refused by content.
    assert intake.read_picture(encode(noise(128, 128), "PNG"), "generic").shape == (128, 128, 3)
    with pytest.raises(InvalidImage):
        intake.read_picture(b"GIF89a this is not really a gif", "generic")


def test_disallowed_format_is_invalid_image_format():
    ico = encode(Image.fromarray(noise(128, 128)), "ICO", sizes=[(128, 128)])
    with pytest.raises(InvalidImageFormat, match="ICO"):
        intake.read_picture(ico, "generic")


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"hello world", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_invalid_image(data):
    with pytest.raises(InvalidImage):
        intake.read_picture(data, "generic")


def test_truncated_picture_is_invalid_image():
    data = encode(noise(400, 400, seed=2), "JPEG", quality=90)
    with pytest.raises(InvalidImage):
        intake.read_picture(data[: len(data) // 2], "generic")


def test_more_than_4_mb_is_refused():
    with pytest.raises(InvalidImageSize, match="4 MB"):
        intake.read_picture(b"\xff" * (4 * 1024 * 1024 + 1), "generic")


@pytest.mark.parametrize(
    "service_type,low",
    [("product", 100), ("generic", 100), ("trademark", 200), ("fabric", 448)],
)
def test_side_limits_per_service_type(service_type, low):
    assert intake.read_picture(encode(noise(low, low)), service_type).shape == (low, low, 3)
    for width, height in [(low - 1, low), (low, low - 1)]:
        with pytest.raises(InvalidImageSize, match=f"{low}-4096"):
            intake.read_picture(encode(noise(width, height)), service_type)


def test_longest_side_4096_allowed_and_4097_refused():
    assert intake.read_picture(encode(np.zeros((100, 4096, 3), np.uint8)), "generic").shape == (100, 4096, 3)
    with pytest.raises(InvalidImageSize, match="4097x100"):
        intake.read_picture(encode(np.zeros((100, 4097, 3), np.uint8)), "generic")


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge size (a decompression bomb's first step)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_huge_declared_size_is_refused_before_decoding():
    with pytest.raises(InvalidImageSize, match="100000x100000"):
        intake.read_picture(_png_declaring(100_000, 100_000), "generic")


def test_exif_orientation_is_applied():
    picture = np.zeros((200, 300, 3), np.uint8)
    picture[:, :150] = 255  # left half white
    image = Image.fromarray(picture)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = intake.read_picture(encode(image, "JPEG", exif=exif.tobytes(), quality=95), "generic")
    assert decoded.shape == (300, 200, 3)
    assert decoded[:100].mean() > 200 and decoded[200:].mean() < 50  # the white half is now on top


def test_alpha_is_composited_on_white():
    rgba = np.zeros((128, 128, 4), np.uint8)  # fully transparent black
    decoded = intake.read_picture(encode(rgba, "PNG"), "generic")
    assert decoded.min() == 255


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "1", "LA"])
def test_colour_modes_become_rgb(mode):
    base = Image.fromarray(noise(128, 128, seed=3))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257))
        data = encode(image, "PNG")
    else:
        image = base.convert(mode)
        data = encode(image, "TIFF" if mode == "CMYK" else "PNG")
    decoded = intake.read_picture(data, "generic")
    assert decoded.shape == (128, 128, 3) and decoded.dtype == np.uint8
    assert decoded.std() > 5  # content survived the conversion


def test_16_bit_is_scaled_not_clipped():
    grey = np.full((128, 128), 32768, np.uint16)
    decoded = intake.read_picture(encode(Image.fromarray(grey), "PNG"), "generic")
    assert 120 <= decoded.mean() <= 135


def test_gif_first_frame():
    frames = [Image.fromarray(np.full((128, 128, 3), v, np.uint8)) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert intake.read_picture(buffer.getvalue(), "generic").max() < 10


def test_base64():
    assert protocol.picture("aGVsbG8=") == b"hello"
    with pytest.raises(InvalidParameter, match="base64"):
        protocol.picture("not base64!")


def test_region_parsing():
    assert intake.parse_region("10,50,20,60", 100, 100) == intake.Box(10, 50, 20, 60)
    assert intake.parse_region(" 0, 100, 0, 100 ", 100, 100).to_region() == "0,100,0,100"
    for bad in ["", "1,2,3", "a,b,c,d", "1,2,3,4,5", "1.5,2,3,4"]:
        with pytest.raises(InvalidRegion, match="four integers"):
            intake.parse_region(bad, 100, 100)
    for outside in ["50,10,0,10", "0,101,0,10", "-1,10,0,10", "0,10,5,5"]:
        with pytest.raises(InvalidRegion, match="inside"):
            intake.parse_region(outside, 100, 100)


def test_region_numbers_are_ascii_digits():
    for bad in ["١,50,0,50", "0,5٠,0,50", "0,50,0,50\u00a0", "0,50,0,5\uff10"]:
        with pytest.raises(InvalidRegion, match="four integers"):
            intake.parse_region(bad, 100, 100)


def test_mpo_from_phone_cameras_is_read_as_its_first_frame():
    first, second = noise(200, 160, seed=1), noise(200, 160, seed=2)
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "MPO", save_all=True, append_images=[Image.fromarray(second)], quality=95)
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    decoded = intake.read_picture(buffer.getvalue(), "generic")
    assert decoded.shape == (160, 200, 3)
    assert np.abs(decoded.astype(int) - first).mean() < np.abs(decoded.astype(int) - second).mean()


def test_a_jpeg_whose_data_ends_early_is_decoded_as_far_as_it_goes():
    # Decided (README, "Pictures"): such a file is accepted as browsers show it, the missing part grey;
    # the declared size is still held to 4096 px per side before decoding.
    data = bytearray(encode(noise(200, 160, seed=1), "JPEG", quality=90))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", 1000, 1000)  # SOF0 claims 1000 x 1000
    decoded = intake.read_picture(bytes(data), "generic")
    assert decoded.shape == (1000, 1000, 3) and (decoded[500:] == 128).all()
