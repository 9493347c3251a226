"""Descriptor variants measured by the benchmarks and not used by the service (benchmarks/recipes.py,
texture_recipes.py): other poolings, whitening, other views of a picture, one-candidate verification."""

from __future__ import annotations

import cv2
import numpy as np

from imagesearch_pg.vision import descriptors as D

def average(feature_map: np.ndarray) -> np.ndarray:
    """Average pooling, N x C x h x w -> N x C (what the network's own ``features`` output is)."""
    return feature_map.reshape(feature_map.shape[0], feature_map.shape[1], -1).mean(axis=2)


def region_windows(h: int, w: int, levels: int = 3) -> list[tuple[int, int, int, int]]:
    """R-MAC style square windows (y0, y1, x0, x1) over an h x w grid: the whole grid, then for
    l = 2..levels an l x l grid of windows of side ``2 * min(h, w) / (l + 1)`` (about 40 % overlap)."""
    windows = [(0, h, 0, w)]
    for level in range(2, levels + 1):
        side = max(1, int(round(2 * min(h, w) / (level + 1))))
        ys = np.unique(np.linspace(0, h - side, level).round().astype(int))
        xs = np.unique(np.linspace(0, w - side, level).round().astype(int))
        windows += [(y, y + side, x, x + side) for y in ys for x in xs]
    return windows


def regional_gem(feature_map: np.ndarray, p: float = 3.0, levels: int = 3) -> np.ndarray:
    """GeM over each window of :func:`region_windows`: N x C x h x w -> N x R x C.

    These are region proposals over the query at the cost of one network pass: each region is
    searched and the best-scoring region wins (``max`` over regions of the cosine)."""
    x = np.power(np.maximum(feature_map.astype(np.float32), 1e-6), p)
    # Integral image over the grid makes each window sum O(1).
    integral = np.zeros(x.shape[:2] + (x.shape[2] + 1, x.shape[3] + 1), np.float64)
    integral[:, :, 1:, 1:] = x.cumsum(axis=2).cumsum(axis=3)
    out = []
    for y0, y1, x0, x1 in region_windows(x.shape[2], x.shape[3], levels):
        total = integral[:, :, y1, x1] - integral[:, :, y0, x1] - integral[:, :, y1, x0] + integral[:, :, y0, x0]
        # Differences of an integral image can come out a hair below zero: clamp before the root.
        out.append(np.power(np.maximum(total / ((y1 - y0) * (x1 - x0)), 0.0), 1.0 / p).astype(np.float32))
    return np.stack(out, axis=1)


# ----------------------------------------------------------------------------------------------
# Whitening


def learn_whitening(vectors: np.ndarray, dim: int = 256, shrinkage: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """PCA-whitening learned from L2-normalised descriptors (rows). Returns (mean, projection C x dim).

    ``shrinkage`` is the power of the eigenvalues divided out (1 = full whitening, 0 = plain PCA).
    It helps instance search (logos) and hurts category search: use it for the trademark/generic
    types only. It must be learned from pictures of the user's own instance (e.g. the first few
    thousand pictures added, re-fitted as the collection grows), stored with the index, and every
    stored vector re-projected when it is re-fitted.
    """
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    cov = centred.T @ centred / max(1, len(vectors) - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:dim]
    eigval, eigvec = np.maximum(eigval[order], 1e-9), eigvec[:, order]
    return mean.astype(np.float32), (eigvec / np.power(eigval, shrinkage / 2)).astype(np.float32)


def apply_whitening(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Project with :func:`learn_whitening`'s output and L2-normalise the rows."""
    out = (vectors - mean) @ projection
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Greyscale as a 3-channel RGB picture (hue no longer matters; luminance and polarity still do)."""
    return D.grey_to_rgb(D.grey(rgb))


def invert(rgb: np.ndarray) -> np.ndarray:
    """Photographic negative: a dark logo on white becomes a light logo on black."""
    return 255 - rgb


def to_edge_image(rgb: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gradient-magnitude line drawing (dark edges on white), invariant to colour and polarity."""
    grey = cv2.GaussianBlur(D.grey(rgb).astype(np.float32), (0, 0), sigma)
    mag = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    scale = max(float(np.percentile(mag, 99)), 1e-3)
    return D.grey_to_rgb((255 - np.clip(mag * (255.0 / scale), 0, 255)).astype(np.uint8))


def verify(query_features, candidate_features, ratio: float = 0.8, threshold: float = 6.0) -> int:
    """Geometric verification of one candidate: see :func:`verify_many`."""
    return D.verify_many(query_features, [candidate_features], ratio, threshold)[0]
