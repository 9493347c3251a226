"""The small copy of each stored picture that the console shows (docs/console.md has its size cost)."""

from __future__ import annotations

import cv2
import numpy as np

from imagesearch_pg.vision import transforms

SIDE = 160  # the longest side, in pixels
QUALITY = 80  # JPEG


def thumbnail(image: np.ndarray, side: int = SIDE, quality: int = QUALITY) -> bytes:
    """An upright RGB picture as a JPEG whose longest side is at most ``side`` (never enlarged)."""
    small = transforms.bounded(image, side, quick=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # OpenCV encodes any 8-bit RGB array; this would be a bug
        raise RuntimeError("a thumbnail could not be encoded")
    return encoded.tobytes()
