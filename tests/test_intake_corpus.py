"""Broken and hostile files: every one is refused with a typed error or decoded, never a crash or a hang."""

from __future__ import annotations

import io
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from flask_app import protocol
from imagesearch_pg.errors import ImageSearchError, InvalidImage, InvalidImageFormat, InvalidImageSize
from imagesearch_pg.vision import intake
from tests.pictures import encode, noise

PICTURE = noise(160, 120, seed=9)
VALID = {
    "PNG": encode(PICTURE, "PNG"),
    "JPEG": encode(PICTURE, "JPEG", quality=90),
    "BMP": encode(PICTURE, "BMP"),
    "GIF": encode(PICTURE, "GIF"),
    "WEBP": encode(PICTURE, "WEBP", quality=80),
    "TIFF": encode(PICTURE, "TIFF", compression="tiff_deflate"),
    "PPM": encode(PICTURE, "PPM"),
}


@contextmanager
def pixel_buffers():
    """The (width, height) of every picture buffer Pillow allocates meanwhile (decoding writes into one).
    One with a side over intake.MAX_SIDE is refused with MemoryError rather than allocated."""
    sizes: list[tuple[int, int]] = []
    real = {name: getattr(Image.core, name) for name in ("new", "fill")}

    def recording(name):
        def allocate(mode, size, *rest):
            sizes.append(tuple(size))
            if max(size) > intake.MAX_SIDE:
                raise MemoryError(f"the test refuses a {size[0]}x{size[1]} buffer")
            return real[name](mode, size, *rest)
        return allocate

    for name in real:
        setattr(Image.core, name, recording(name))
    try:
        yield sizes
    finally:
        for name, function in real.items():
            setattr(Image.core, name, function)


def decode_or_refuse(data: bytes) -> str:
    """'ok' or the error's code; anything else (another exception type) fails the test. Whatever the bytes
    say, no picture larger than the limits is decoded (its size is checked first): the work is bounded."""
    with pixel_buffers() as sizes:
        try:
            image = intake.read_picture(data, "generic")
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            outcome = "ok"
        except ImageSearchError as exc:
            assert protocol.http_status(exc) == 400 and exc.message
            outcome = exc.code
    assert all(max(size) <= intake.MAX_SIDE for size in sizes), sizes
    return outcome


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_every_truncation_is_refused_or_decoded(fmt):
    data = VALID[fmt]
    cuts = sorted({0, 1, 2, 4, 8, 16, 32, 64, 100, len(data) // 4, len(data) // 2, len(data) - 10, len(data) - 1})
    outcomes = {cut: decode_or_refuse(data[:cut]) for cut in cuts if cut < len(data)}
    assert outcomes[0] == "InvalidImage" and outcomes[8] in ("InvalidImage", "InvalidImageFormat")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(VALID)), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                            min_size=1, max_size=8))
def test_corrupted_bytes_never_crash(fmt, flips):
    data = bytearray(VALID[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    decode_or_refuse(bytes(data))


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash(data):
    # refused as no picture, or as a picture of the wrong format or size; random bytes decode to none
    assert decode_or_refuse(data) in ("InvalidImage", "InvalidImageFormat", "InvalidImageSize")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


HUGE = [
    # PNG whose header says 60000 x 60000
    b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _png_chunk(b"IEND", b""),
    # GIF logical screen 65535 x 65535 with a tiny frame
    b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b",\x00\x00\x00\x00"
    + struct.pack("<HH", 65535, 65535) + b"\x00\x02\x02D\x01\x00;",
    # BMP header claiming 50000 x 50000 x 24 bit
    b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 0, 0, 0, 0),
    # PPM claiming 100000 x 100000
    b"P6\n100000 100000\n255\n" + b"\x00" * 64,
]


@pytest.mark.parametrize("data", HUGE, ids=["png", "gif", "bmp", "ppm"])
def test_huge_declared_sizes_are_refused_before_decoding(data):
    with pixel_buffers() as sizes, pytest.raises((InvalidImageSize, InvalidImage)):
        intake.read_picture(data, "generic")
    assert sizes == []  # not a pixel allocated, let alone decoded


def test_jpeg_with_huge_declared_size_is_refused():
    data = bytearray(VALID["JPEG"])
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width in the SOF0 segment
    with pytest.raises(InvalidImageSize, match="65000x65000"):
        intake.read_picture(bytes(data), "generic")


def test_polyglots_are_judged_by_their_leading_format():
    # A PNG with a ZIP archive appended still is a PNG (and only its picture is used).
    zip_tail = b"PK\x03\x04" + b"\x00" * 26 + b"evil.sh" + b"#!/bin/sh\nrm -rf /\n"
    assert intake.read_picture(VALID["PNG"] + zip_tail, "generic").shape == (120, 160, 3)
    # Script text that starts with a GIF signature is not a picture.
    with pytest.raises(InvalidImage):
        intake.read_picture(b"GIF89a=1;alert(document.cookie)//" + b"\x00" * 40, "generic")
    # HTML / SVG / PDF are not pictures we take.
    for data in (b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7\n", b"<html><img src=x></html>"):
        with pytest.raises((InvalidImage, InvalidImageFormat)):
            intake.read_picture(data, "generic")


def test_other_pillow_formats_are_refused_by_name():
    for fmt, options in (("ICO", {}), ("TGA", {}), ("PCX", {}), ("JPEG2000", {}), ("DDS", {})):
        try:
            data = encode(Image.fromarray(noise(128, 128)), fmt, **options)
        except (OSError, KeyError):
            continue  # this Pillow build cannot write it
        with pytest.raises(InvalidImageFormat, match="not allowed"):
            intake.read_picture(data, "generic")


def test_cmyk_jpeg_and_animated_webp():
    cmyk = encode(Image.fromarray(PICTURE).convert("CMYK"), "JPEG", quality=90)
    assert intake.read_picture(cmyk, "generic").shape == (120, 160, 3)
    frames = [Image.fromarray(np.full((120, 160, 3), v, np.uint8)) for v in (10, 240)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert intake.read_picture(buffer.getvalue(), "generic").max() < 30  # the first frame
