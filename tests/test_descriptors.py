"""Unit tests of the pure descriptor helpers on synthetic pictures (no benchmark data, no model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagesearch_pg.vision import descriptors as D


def _logo(colour=(200, 30, 30), background=(255, 255, 255), size=224) -> np.ndarray:
    """A synthetic mark: a ring, a bar and a triangle on a plain background."""
    im = np.zeros((size, size, 3), np.uint8)
    im[:] = background
    cv2.circle(im, (80, 90), 40, colour, 12)
    cv2.rectangle(im, (130, 50), (175, 170), colour, -1)
    cv2.fillPoly(im, [np.array([[40, 190], [110, 150], [120, 200]], np.int32)], colour)
    return im


def _pattern(seed: int, size: int = 240) -> np.ndarray:
    """A textured picture with many corners (random rectangles and ellipses)."""
    rng = np.random.default_rng(seed)
    im = np.full((size, size, 3), 255, np.uint8)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(10, size - 40, 2))
        if rng.random() < 0.5:
            cv2.rectangle(im, (x, y), (x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))), colour, -1)
        else:
            axes = (int(rng.integers(5, 25)), int(rng.integers(5, 25)))
            cv2.ellipse(im, (x, y), axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
    return im


def _rotate_scale(im: np.ndarray, angle: float, scale: float) -> np.ndarray:
    h, w = im.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(im, m, (w, h), borderValue=(255, 255, 255))


# ---------------------------------------------------------------------------------------------- pooling


def test_gem_p1_is_average():
    fm = np.random.default_rng(0).uniform(0, 6, (3, 16, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(D.gem(fm, p=1.0), fm.mean(axis=(2, 3)), rtol=1e-5)
    assert D.gem(fm).shape == (3, 16)


def test_gem_between_mean_and_max():
    fm = np.random.default_rng(1).uniform(0, 6, (2, 8, 7, 7)).astype(np.float32)
    g = D.gem(fm, p=3.0)
    assert np.all(g >= fm.mean(axis=(2, 3)) - 1e-5)
    assert np.all(g <= fm.reshape(2, 8, -1).max(axis=2) + 1e-5)
    # Large p approaches max pooling.
    np.testing.assert_allclose(D.gem(fm, p=60.0), fm.reshape(2, 8, -1).max(axis=2), rtol=0.1)


# ---------------------------------------------------------------------------------------------- colour invariance


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.mark.parametrize(
    "variant",
    [
        _logo(colour=(30, 60, 220)),  # recoloured
        _logo(colour=(240, 220, 40)),  # recoloured to a light colour
        _logo(colour=(255, 255, 255), background=(20, 20, 20)),  # inverted: light mark on dark
        _logo(colour=(250, 120, 0), background=(10, 30, 90)),  # recoloured on a dark background
    ],
)
def test_shape_image_is_colour_and_polarity_invariant(variant):
    original = D.to_shape_image(_logo())
    other = D.to_shape_image(_logo(colour=(10, 10, 10), background=(255, 255, 255)).copy())
    unrelated = D.to_shape_image(_pattern(7, 224))
    v = D.to_shape_image(variant)
    assert v.shape == (224, 224, 3) and v.dtype == np.uint8
    assert _dist(v, original) < 10
    assert _dist(v, other) < 10
    assert _dist(v, original) < _dist(unrelated, original) / 3
    # Raw pixels are far apart for the same variants.
    assert _dist(variant, _logo()) > 2 * _dist(v, original)


# ---------------------------------------------------------------------------------------------- local features


def test_local_features_are_plain_arrays_and_pack():
    kp, desc = D.local_features(_pattern(1), max_keypoints=200)
    assert kp.dtype == np.float32 and kp.shape[1] == 4
    assert desc.dtype == np.uint8 and desc.shape == (len(kp), 128)
    assert len(kp) > 20
    kp2, desc2 = D.unpack_local(D.pack_local((kp, desc)))
    np.testing.assert_array_equal(kp, kp2)
    np.testing.assert_array_equal(desc, desc2)


def test_local_features_empty_picture():
    kp, desc = D.local_features(np.full((120, 120, 3), 255, np.uint8))
    assert kp.shape == (0, 4) and desc.shape == (0, 128)
    assert D.verify_many((kp, desc), [D.local_features(_pattern(1))]) == [0]


def test_verify_rotated_scaled_copy_beats_unrelated():
    original = D.local_features(_pattern(1), both_polarities=False)
    copy = D.local_features(_rotate_scale(_pattern(1), 15, 0.7))
    recoloured_negative = D.local_features(255 - _rotate_scale(_pattern(1), -10, 1.2))
    unrelated = [D.local_features(_pattern(s)) for s in (2, 3, 4)]
    (same,) = D.verify_many(copy, [original])
    (negative,) = D.verify_many(recoloured_negative, [original])
    others = max(D.verify_many(u, [original])[0] for u in unrelated)
    assert same >= 15, same
    assert negative >= 10, negative  # the query's negative descriptors match
    assert others <= 6, others
    assert same > 3 * max(others, 1)


def _verified_one_by_one(query, candidate, ratio=0.8, threshold=6.0, min_matches=3) -> int:
    """verify_many's definition, written plainly for one candidate: brute-force distances, the ratio
    test, one match per candidate keypoint (the closest), RANSAC similarity."""
    (qk, qd), (ck, cd) = query, candidate
    if len(qd) < 2 or len(cd) < 2:
        return 0
    distances = ((qd[:, None, :].astype(np.float64) - cd[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    order = np.argsort(distances, axis=1, kind="stable")
    best, runner_up = distances[np.arange(len(qd)), order[:, 0]], distances[np.arange(len(qd)), order[:, 1]]
    good = [i for i in np.argsort(best, kind="stable") if best[i] < ratio * ratio * runner_up[i]]
    kept, taken = [], set()
    for i in good:
        if order[i, 0] not in taken:
            taken.add(order[i, 0])
            kept.append(i)
    if len(kept) < max(3, min_matches):
        return 0
    src = qk[kept, :2].reshape(-1, 1, 2)
    dst = ck[order[kept, 0], :2].reshape(-1, 1, 2)
    _, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500, confidence=0.99
    )
    return 0 if inliers is None else int(inliers.sum())


@pytest.mark.parametrize("min_matches", [3, 8])
def test_verify_many_counts_as_each_candidate_alone(min_matches):
    """The batched matching (one matrix product for all candidates) gives each candidate the count the
    plain definition gives it, copies, look-alikes, and candidates with 0 or 1 keypoints alike."""
    query = D.local_features(_rotate_scale(_pattern(1), 15, 0.7))
    candidates = [
        D.local_features(_pattern(1), both_polarities=False),
        D.local_features(_pattern(2), both_polarities=False),
        (np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8)),
        D.local_features(255 - _rotate_scale(_pattern(1), -10, 1.2), both_polarities=False),
        tuple(part[:1] for part in D.local_features(_pattern(3), both_polarities=False)),
        D.local_features(_pattern(4), both_polarities=False),
    ]
    expected = [_verified_one_by_one(query, c, min_matches=min_matches) for c in candidates]
    assert D.verify_many(query, candidates, min_matches=min_matches) == expected
    assert expected[0] >= 15 and expected[2] == expected[4] == 0  # the set exercises both outcomes


# ---------------------------------------------------------------------------------------------- colour layers


def _busy_background(size: int = 224) -> np.ndarray:
    """A photo-like background: smooth colour gradients plus a few soft blobs."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    im = np.stack([60 + 120 * x, 90 + 100 * y, 140 + 60 * (1 - x * y)], axis=2)
    for cx, cy, r, c in ((40, 200, 50, (30, 120, 40)), (200, 30, 40, (200, 180, 160))):
        cv2.circle(im, (cx, cy), r, c, -1)
    return cv2.GaussianBlur(im, (0, 0), 3).astype(np.uint8)


def _paste(mark_colour, size: int = 224) -> np.ndarray:
    im = _busy_background(size)
    mask = _logo(colour=(0, 0, 0), background=(255, 255, 255), size=size)[:, :, 0] < 128
    im[mask] = mark_colour
    return im


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _black(view: np.ndarray) -> np.ndarray:
    """The ink of a black-on-white silhouette view."""
    return view[:, :, 0] < 128


def test_ink_is_the_same_whatever_the_colours():
    reference = D.ink(_logo())
    assert reference.dtype == bool and reference.shape == (224, 224)
    for variant in (_logo(colour=(240, 220, 40)), _logo(colour=(255, 255, 255), background=(0, 0, 40))):
        assert _iou(D.ink(variant), reference) > 0.9


@pytest.mark.parametrize("colour", [(200, 30, 30), (250, 0, 250), (20, 20, 20)])
def test_colour_layers_find_a_recoloured_mark_on_a_busy_background(colour):
    reference = D.ink(_logo())
    query = _paste(colour)
    framed, *layers = D.colour_layers(query, k=5)
    assert framed.dtype == np.uint8 and framed.ndim == 3
    assert all(layer.shape == (224, 224, 3) and layer.dtype == np.uint8 for layer in layers)
    best = max(_iou(_black(layer), reference) for layer in layers)
    assert best > 0.8, best
    # Without the layers, the whole picture's ink is mostly background.
    assert _iou(D.ink(query), reference) < best


def test_silhouette_is_framed_so_size_and_place_do_not_matter():
    logo = _logo()
    canvas = np.full((600, 900, 3), 255, np.uint8)
    canvas[350:462, 500:612] = cv2.resize(logo, (112, 112), interpolation=cv2.INTER_AREA)
    small, alone = D.silhouette(canvas), D.silhouette(logo)
    assert small.shape[0] < 200 and alone.shape[0] < 224  # cut to the ink (plus a margin)
    size = (128, 128)
    assert _iou(_black(cv2.resize(small, size)), _black(cv2.resize(alone, size))) > 0.8
    assert D.framed(np.zeros((10, 10), bool)) is None
    blank = np.full((300, 300, 3), 255, np.uint8)
    assert D.silhouette(blank).shape == (300, 300, 3)  # nothing to frame: the whole (empty) picture


def test_colour_layers_deterministic():
    a = D.colour_layers(_paste((200, 30, 30)), k=5)
    b = D.colour_layers(_paste((200, 30, 30)), k=5)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_negative_polarity_descriptors_equal_sift_on_the_negative():
    """The cells-reversed descriptors are what SIFT itself computes on the negative with turned frames."""
    from skimage import data

    grey = cv2.cvtColor(cv2.resize(data.coffee(), (320, 320)), cv2.COLOR_RGB2GRAY)
    points, desc = D.local_features(np.repeat(grey[:, :, None], 3, axis=2))
    half = len(points) // 2
    sift = cv2.SIFT_create(nfeatures=300)  # as local_features finds them (with their octaves)
    found, _ = sift.detectAndCompute(grey, None)
    turned = [cv2.KeyPoint(k.pt[0], k.pt[1], k.size, (k.angle + 180.0) % 360.0, k.response, k.octave) for k in found]
    _, expected = sift.compute(255 - grey, turned)
    assert expected.shape == desc[half:].shape
    assert np.abs(expected.astype(int) - desc[half:].astype(int)).max() <= 2
