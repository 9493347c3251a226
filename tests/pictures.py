"""Test pictures: scikit-image's sample photos and synthetic ones, encoded in memory."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour picture (blurred noise), distinct per seed."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def sample_photos() -> dict[str, np.ndarray]:
    """Photos of different subjects from scikit-image (shipped in the package, no download)."""
    from skimage import data

    return {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "astronaut": data.astronaut(),
        "immunohistochemistry": data.immunohistochemistry(),
        "colorwheel": data.colorwheel()[..., :3],
        "retina": data.retina(),
        "camera": np.stack([data.camera()] * 3, axis=-1),
    }
