"""Pure descriptor helpers (numpy in, numpy out) that the encoders use, chosen by ``benchmarks/recipes.py``
(the variants tried and not chosen are in ``benchmarks/descriptor_variants.py``).

Everything here works on arrays the encoder already returns (the last feature map of
EfficientNet-Lite0, N x C x h x w after ReLU6) or on RGB uint8 pictures; nothing loads a model.
Measured gains are on the public benchmarks (see docs in ``benchmarks/recipes.py`` and the
shared notes); the numbers quoted are the held-out half of the queries.
"""

from __future__ import annotations

import cv2
import numpy as np

# ----------------------------------------------------------------------------------------------
# Pooling of the last feature map


def gem(feature_map: np.ndarray, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """Generalised-mean pooling, N x C x h x w -> N x C: ``(mean(x ** p)) ** (1 / p)`` per channel.

    p = 1 is average pooling, p -> inf is max pooling. With p = 3 it weights the strongest
    activations (the object) more than the background. Measured with Lite0 @224 against average
    pooling (held-out queries): logo easy R@1 0.74 -> 0.83, logo hard 0.14 -> 0.16, furniture-type
    P@1 0.65 -> 0.67, at no cost (needs the ``feature_map`` output instead of ``features``).
    """
    x = np.maximum(feature_map.astype(np.float32), eps).reshape(feature_map.shape[0], feature_map.shape[1], -1)
    peak = x.max(axis=2, keepdims=True)  # scale out the maximum so large p cannot overflow
    return np.power(np.power(x / peak, p).mean(axis=2), 1.0 / p) * peak[:, :, 0]


# ----------------------------------------------------------------------------------------------
# Colour-invariant views of a picture (trademark type)


def grey(rgb: np.ndarray) -> np.ndarray:
    """One-channel luminance (a grey picture as it is)."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def grey_to_rgb(channel: np.ndarray) -> np.ndarray:
    return np.repeat(channel[:, :, None], 3, axis=2)


def to_shape_image(rgb: np.ndarray) -> np.ndarray:
    """Colour- and polarity-normalised greyscale view of a picture, as 3-channel RGB uint8.

    Measured as the only view (Lite0 GeM @224): logo hard R@1 0.16 -> 0.23, easy 0.83 -> 0.92;
    far below :func:`colour_layers` on marks pasted on photos.

    Greyscale, contrast stretched (1st-99th percentile), then inverted if the picture's border is
    darker than its middle grey, so a logo on a dark background, or a recoloured logo, looks like
    a dark mark on a light background, as logos are usually filed.
    """
    values = grey(rgb).astype(np.float32)
    lo, hi = np.percentile(values, (1, 99))
    values = np.clip((values - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255)
    border = np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])
    if np.median(border) < 128:
        values = 255 - values
    return grey_to_rgb(values.astype(np.uint8))


def mask_to_shape(mask: np.ndarray) -> np.ndarray:
    """Black where ``mask`` is True, white elsewhere, as RGB: the view silhouettes are encoded from."""
    out = np.full(mask.shape, 255, np.uint8)
    out[mask] = 0
    return grey_to_rgb(out)


def ink(rgb: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """The ink of a mark filed on a plain background, True where a pixel's colour differs from the border's
    median colour by more than ``threshold`` (Lab distance). Whatever the mark's colour, and whether it is
    dark on light or light on dark, it gives the same mask: the gallery side of the colour-layer recipe."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    difference = lab.astype(np.float32) - np.median(border, axis=0).astype(np.float32)
    # squared distances against the squared threshold: no square roots
    return np.einsum("ijk,ijk->ij", difference, difference) > threshold * threshold


def framed(mask: np.ndarray, margin: float = 0.1) -> np.ndarray | None:
    """A silhouette cut to its ink's bounding box plus ``margin`` of its longest side, so that a mark
    small in a big picture and the same mark filling its picture give the same view. None if no ink."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = max(1, int(round(margin * max(y2 - y1, x2 - x1))))
    return mask_to_shape(np.pad(mask[y1:y2, x1:x2], pad))


def silhouette(rgb: np.ndarray) -> np.ndarray:
    """The stored side of the colour-layer recipe: the picture's ink (:func:`ink`), framed."""
    mask = ink(rgb)
    return framed(mask) if mask.any() else mask_to_shape(mask)


def colour_layers(
    rgb: np.ndarray, k: int = 5, min_fraction: float = 0.02, max_fraction: float = 0.6, work: int = 112
) -> list[np.ndarray]:
    """Query-side region proposals by colour: k-means (Lab, on a ``work``-px thumbnail) splits the
    picture into k colour layers; each layer covering ``min_fraction``..``max_fraction`` of the
    picture becomes a black-on-white silhouette (full size), to be encoded and searched against the
    gallery's :func:`silhouette` views. The best-scoring view wins. The picture's own framed
    :func:`silhouette` comes first (a mark on a plain ground). Deterministic (fixed k-means seed).

    A flat-coloured mark pasted on a photo, recoloured or not, is one layer, so its silhouette is
    found whatever its colour and background. Measured (benchmarks/recipes.py, then through the
    service): about 2 views per picture on a plain background, 5-6 on a photo. Framing the layers too
    (cutting each to its pixels' box, or to its largest blobs) lost on logo hard (R@1 of the layers
    0.457 -> 0.367-0.38 on 300 queries): a layer's stray pixels stretch the frame.
    """
    h, w = rgb.shape[:2]
    small = cv2.GaussianBlur(cv2.resize(rgb, (work, work), interpolation=cv2.INTER_AREA), (3, 3), 0)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, _ = cv2.kmeans(lab, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(work, work)
    views = [silhouette(rgb)]
    kernel = np.ones((2, 2), np.uint8)
    for c in range(k):
        m = cv2.morphologyEx((labels == c).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        if not min_fraction <= m.mean() <= max_fraction:
            continue
        full = cv2.resize(m * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127
        views.append(mask_to_shape(full))
    return views


# ----------------------------------------------------------------------------------------------
# Local features and geometric verification (trademark re-ranking)

KEYPOINT_FIELDS = 4  # x, y, size, angle


def local_features(rgb: np.ndarray, max_keypoints: int = 300, both_polarities: bool = True):
    """SIFT keypoints of a picture's greyscale: (keypoints N x 4 float32 [x, y, size, angle],
    descriptors N x 128 uint8). Plain numpy arrays, storable with :func:`pack_local`.

    With ``both_polarities`` the descriptors of the negative are added too, so a light-on-dark mark
    matches a dark-on-light one. They cost nothing: on the negative every gradient turns by 180
    degrees, and so does the keypoint's frame, so the gradients keep their orientation relative to the
    frame while the 4 x 4 grid of cells is turned by 180 degrees: the same histograms, cells reversed.
    """
    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    kps, desc = sift.detectAndCompute(grey(rgb), None)
    points = np.array([[k.pt[0], k.pt[1], k.size, k.angle] for k in kps], np.float32).reshape(-1, KEYPOINT_FIELDS)
    desc = np.zeros((0, 128), np.uint8) if desc is None else np.clip(desc, 0, 255).astype(np.uint8)
    if both_polarities and len(points):
        turned = points.copy()
        turned[:, 3] = (turned[:, 3] + 180.0) % 360.0
        negative = desc.reshape(-1, 4, 4, 8)[:, ::-1, ::-1, :].reshape(-1, 128)
        points, desc = np.concatenate([points, turned]), np.concatenate([desc, negative])
    return points, desc


def pack_local(features) -> bytes:
    """(keypoints, descriptors) -> bytes: uint32 count, keypoints float32, descriptors uint8."""
    kp, desc = features
    return np.uint32(len(kp)).tobytes() + kp.astype(np.float32).tobytes() + desc.astype(np.uint8).tobytes()


def unpack_local(data: bytes):
    """Inverse of :func:`pack_local`."""
    n = int(np.frombuffer(data[:4], np.uint32)[0])
    kp = np.frombuffer(data[4 : 4 + 16 * n], np.float32).reshape(n, KEYPOINT_FIELDS)
    desc = np.frombuffer(data[4 + 16 * n :], np.uint8).reshape(n, 128)
    return kp, desc


def verify_many(
    query_features, candidates: list, ratio: float = 0.8, threshold: float = 6.0, min_matches: int = 3
) -> list[int]:
    """Geometric verification: for each candidate, the number of ratio-test matches that agree with one
    similarity transform (rotation + uniform scale + translation, RANSAC, ``threshold`` px); 0 when fewer
    than ``min_matches`` (at least 3) matches survive the ratio test (nearest candidate descriptor closer
    than ``ratio`` times the second nearest). A caller that acts only on ``n`` inliers or more passes
    ``min_matches=n``: RANSAC cannot find more inliers than there are matches, and most candidates are
    then settled without it.

    A rotated/scaled copy of a picture scores tens of inliers, an unrelated picture 0-4. The distances
    to every candidate come from one matrix product, so the re-ranking's 30 candidates cost a few milliseconds.

    Measured as a re-ranking of the global top-k (a candidate with >= 8 inliers moves to the front,
    ordered by inliers; k and the threshold chosen on the even queries, odd queries reported):
    on top of colour layers + RGB GeM, logo hard R@1 0.44 -> 0.53 (k=100) / 0.52 (k=50), logo
    easy 0.96 -> 0.99; on top of GeM 224+320+flip, hard 0.18 -> 0.29, easy 0.91 -> 0.98.
    """
    qk, qd = query_features
    min_matches = max(3, min_matches)
    counts = [0] * len(candidates)
    usable = [i for i, (_, cd) in enumerate(candidates) if len(cd) >= 2]  # a ratio test needs two
    if len(qd) < 2 or not usable:
        return counts
    sizes = [len(candidates[i][1]) for i in usable]
    q = qd.astype(np.float32)
    c = np.concatenate([candidates[i][1] for i in usable]).astype(np.float32)
    # |c|^2 - 2 c.q for every candidate descriptor (rows) and query descriptor (columns), in one product;
    # |q|^2, the same down a column, is added after the minima are found.
    lhs = np.empty((len(c), 129), np.float32)
    lhs[:, :128], lhs[:, 128] = c, (c * c).sum(axis=1)
    rhs = np.empty((len(q), 129), np.float32)
    rhs[:, :128], rhs[:, 128] = -2.0 * q, 1.0
    partial = lhs @ rhs.T
    query_norms = (q * q).sum(axis=1)
    columns = np.arange(len(q))
    offset = 0
    for index, size in zip(usable, sizes):
        block, offset = partial[offset : offset + size], offset + size  # this candidate's rows
        nearest = block.argmin(axis=0)
        first = np.maximum(block[nearest, columns] + query_norms, 0.0)
        block[nearest, columns] = np.inf
        second = np.maximum(block.min(axis=0) + query_norms, 0.0)
        good = np.nonzero(first < (ratio * ratio) * second)[0]
        if len(good) < min_matches:
            continue
        # One candidate keypoint may be matched by several query keypoints: keep the closest each.
        good = good[np.argsort(first[good], kind="stable")]
        _, once = np.unique(nearest[good], return_index=True)
        good = good[once]
        if len(good) < min_matches:
            continue
        src = qk[good, :2].reshape(-1, 1, 2)
        dst = candidates[index][0][nearest[good], :2].reshape(-1, 1, 2)
        _, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500, confidence=0.99
        )
        counts[index] = 0 if inliers is None else int(inliers.sum())
    return counts
