"""Picture intake: bytes in, an upright RGB array out, or a typed refusal. Every path uses this.

Pillow decodes (it sniffs the format from the bytes and reads the declared size without decoding,
so oversized pictures are refused before any pixel is allocated); OpenCV does the later transforms.
EXIF orientation is honoured: the picture is turned upright before limits and regions apply.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.errors import (
    ImageSearchError,
    InvalidImage,
    InvalidImageFormat,
    InvalidImageSize,
    InvalidRegion,
)

MAX_PICTURE_BYTES = 4 * 1024 * 1024
MAX_SIDE = 4096
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM", "MPO")  # MPO: phone cameras' JPEG
_REGION = re.compile(r" *([+-]?[0-9]{1,9}) *, *([+-]?[0-9]{1,9}) *, *([+-]?[0-9]{1,9}) *, *([+-]?[0-9]{1,9}) *")

# The declared size is checked right after Image.open, before any pixel is decoded, with a message that
# names the size; Pillow's own guard would fire first for very large ones with a vaguer message.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels, x1,y1 top-left (inclusive) and x2,y2 bottom-right (exclusive)."""

    x1: int
    x2: int
    y1: int
    y2: int

    def to_region(self) -> str:
        return f"{self.x1},{self.x2},{self.y1},{self.y2}"


def read_picture(data: bytes, service_type: str) -> np.ndarray:
    """Decode ``data`` into an upright H x W x 3 uint8 RGB array, enforcing the limits of ``service_type``."""
    if not data:
        raise InvalidImage("the picture is empty (0 bytes)")
    if len(data) > MAX_PICTURE_BYTES:
        raise InvalidImageSize(f"the picture is {len(data)} bytes; at most {MAX_PICTURE_BYTES} (4 MB) are allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF etc.; the outcome is what counts
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise InvalidImageFormat(
                    f"picture format {image.format} is not allowed; allowed: {', '.join(ALLOWED_FORMATS)}"
                )
            _check_sides(image.size, service_type)  # declared size, before decoding
            image.seek(0)  # GIF, TIFF: first frame
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright picture
            _check_sides(image.size, service_type)
            return to_rgb(image)
    except ImageSearchError:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(
            f"the bytes are not a picture in a known format; allowed: {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds on hostile bytes; all are the client's
        raise InvalidImage(f"the picture could not be decoded: {type(exc).__name__}: {exc}"[:300]) from None


def _check_sides(size: tuple[int, int], service_type: str) -> None:
    width, height = size
    low = SERVICE_TYPES[service_type].min_side
    if not (low <= width <= MAX_SIDE and low <= height <= MAX_SIDE):
        raise InvalidImageSize(
            f"the picture is {width}x{height} px; each side must be {low}-{MAX_SIDE} px on a {service_type} instance"
        )


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to RGB: alpha composited on white, 16-bit and float scaled down, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8))


def parse_region(region: str, width: int, height: int) -> Box:
    """Parse ``x1,x2,y1,y2`` and check that it is a non-empty box inside a ``width`` x ``height`` picture."""
    match = _REGION.fullmatch(region)
    if match is None:
        raise InvalidRegion(f"Region must be four integers 'x1,x2,y1,y2' (ASCII digits), got {region[:64]!r}")
    x1, x2, y1, y2 = (int(part) for part in match.groups())
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise InvalidRegion(
            f"Region {x1},{x2},{y1},{y2} is not a box inside the {width}x{height} picture "
            "(need 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height)"
        )
    return Box(x1, x2, y1, y2)

