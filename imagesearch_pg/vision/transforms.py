"""Pure preprocessing functions (numpy in, numpy out) shared by every encoder."""

from __future__ import annotations

import cv2
import numpy as np

from imagesearch_pg.vision.intake import Box


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    return image[box.y1 : box.y2, box.x1 : box.x2]


def widened(box: Box, fraction: float, width: int, height: int) -> Box:
    """The box grown by ``fraction`` of its longest side on every side, kept inside the picture."""
    pad = int(round(fraction * max(box.x2 - box.x1, box.y2 - box.y1)))
    return Box(max(0, box.x1 - pad), min(width, box.x2 + pad), max(0, box.y1 - pad), min(height, box.y2 + pad))


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    # Area averaging when shrinking avoids aliasing; linear when enlarging.
    shrinking = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def bounded(image: np.ndarray, longest_side: int, *, quick: bool = False) -> np.ndarray:
    """The picture shrunk so that its longest side is at most ``longest_side`` (unchanged if it already is).

    ``quick`` (for pictures only looked at): bilinear when shrinking by at most half, where it still uses
    every source pixel, at a third of area averaging's cost."""
    height, width = image.shape[:2]
    scale = longest_side / max(height, width)
    if scale >= 1:
        return image
    interpolation = cv2.INTER_LINEAR if quick and scale >= 0.5 else cv2.INTER_AREA
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=interpolation)


def to_nchw(images: list[np.ndarray], mean: float | tuple, std: float | tuple) -> np.ndarray:
    """Stack equally sized H x W x 3 uint8 arrays into a normalised float32 N x 3 x H x W batch."""
    batch = np.stack(images).astype(np.float32)
    batch -= np.asarray(mean, dtype=np.float32)
    batch /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
