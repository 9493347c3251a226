"""Checks of the descriptor variants the benchmarks measure (benchmarks/descriptor_variants.py), kept beside
them: the service does not use these variants, so the product suite (pyproject's testpaths, tests/) does not
run them. Run them when changing the variants or the recipes that measure them:

    .venv/bin/python -m pytest -q benchmarks/test_descriptor_variants.py
"""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks import descriptor_variants as V
from imagesearch_pg.vision import descriptors as D


def _mark(colour=(10, 10, 10), background=(255, 255, 255), size=224) -> np.ndarray:
    """A flat mark: a ring and a bar on a plain background."""
    im = np.full((size, size, 3), background, np.uint8)
    cv2.circle(im, (80, 90), 40, colour, 12)
    cv2.rectangle(im, (130, 50), (175, 170), colour, -1)
    return im


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_region_windows_cover_grid():
    wins = V.region_windows(7, 7, levels=3)
    assert wins[0] == (0, 7, 0, 7)
    assert len(wins) == 1 + 4 + 9
    for y0, y1, x0, x1 in wins:
        assert 0 <= y0 < y1 <= 7 and 0 <= x0 < x1 <= 7


def test_regional_gem_matches_gem_on_windows():
    fm = np.random.default_rng(2).uniform(0, 6, (2, 4, 7, 7)).astype(np.float32)
    reg = V.regional_gem(fm, p=3.0, levels=3)
    wins = V.region_windows(7, 7, 3)
    assert reg.shape == (2, len(wins), 4)
    for r, (y0, y1, x0, x1) in enumerate(wins):
        np.testing.assert_allclose(reg[:, r], D.gem(fm[:, :, y0:y1, x0:x1], p=3.0), rtol=1e-3)


def test_regional_gem_finite_on_sparse_maps():
    # ReLU6 maps are mostly zeros with a few large values: no NaN from integral-image cancellation.
    rng = np.random.default_rng(5)
    fm = np.where(rng.random((2, 64, 10, 10)) < 0.05, 6.0, 0.0).astype(np.float32)
    reg = V.regional_gem(fm, p=3.0, levels=4)
    assert np.all(np.isfinite(reg)) and np.all(reg >= 0)


def test_average_is_gem_with_p_1():
    fm = np.random.default_rng(0).uniform(0, 6, (3, 16, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(V.average(fm), D.gem(fm, p=1.0), rtol=1e-5)


def test_whitening_decorrelates_and_normalises():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mean, proj = V.learn_whitening(x, dim=16, shrinkage=1.0)
    assert proj.shape == (32, 16)
    z = (x - mean) @ proj
    cov = np.cov(z.T)
    np.testing.assert_allclose(cov, np.eye(16), atol=0.05)
    w = V.apply_whitening(x, mean, proj)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)


def test_edge_image_is_polarity_invariant():
    a = V.to_edge_image(_mark())
    b = V.to_edge_image(_mark(colour=(255, 255, 255), background=(0, 0, 0)))
    assert _dist(a, b) < 5
    assert _dist(a, V.to_edge_image(_mark(size=224)[:, ::-1].copy())) > 5  # a different picture differs
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8


def test_to_grey_and_invert():
    im = _mark(colour=(200, 30, 30))
    g = V.to_grey(im)
    assert g.shape == im.shape and np.all(g[..., 0] == g[..., 1]) and np.all(g[..., 1] == g[..., 2])
    assert g[90, 40, 0] < g[0, 0, 0]  # the red ring is darker than the white ground
    np.testing.assert_array_equal(V.invert(V.invert(im)), im)
    assert V.invert(im)[0, 0].tolist() == [0, 0, 0]


def test_verify_is_verify_many_for_one_candidate():
    from skimage import data

    picture = cv2.resize(data.coffee(), (300, 200), interpolation=cv2.INTER_AREA)
    turned = cv2.warpAffine(picture, cv2.getRotationMatrix2D((150, 100), 15, 0.8), (300, 200))
    query, stored = D.local_features(turned), D.local_features(picture, both_polarities=False)
    assert V.verify(query, stored) == D.verify_many(query, [stored])[0] > 0
