"""The console's thumbnails (vision/thumbnails.py): size, aspect, never enlarged, and faithful to the picture
whether shrunk a little (bilinear) or a lot (area averaging)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagesearch_pg.vision.thumbnails import SIDE, thumbnail
from tests.pictures import sample_photos


def decoded(jpeg: bytes) -> np.ndarray:
    assert jpeg[:2] == b"\xff\xd8"
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(error, 1e-9))


@pytest.mark.parametrize("width,height", [(224, 224), (300, 200), (1200, 900), (90, 4000)])
def test_the_longest_side_is_at_most_side_and_the_aspect_kept(width, height):
    picture = cv2.resize(sample_photos()["astronaut"], (width, height), interpolation=cv2.INTER_AREA)
    small = decoded(thumbnail(picture))
    scale = SIDE / max(width, height)
    assert small.shape[:2] == (max(1, round(height * scale)), max(1, round(width * scale)))


def test_a_small_picture_is_not_enlarged():
    picture = cv2.resize(sample_photos()["coffee"], (120, 80), interpolation=cv2.INTER_AREA)
    small = decoded(thumbnail(picture))
    assert small.shape == picture.shape and psnr(small, picture) > 30


@pytest.mark.parametrize("side", [224, 300, 2000])
def test_a_shrunk_picture_matches_the_area_average_of_it(side):
    picture = cv2.resize(sample_photos()["chelsea"], (side, side * 3 // 4), interpolation=cv2.INTER_CUBIC)
    small = decoded(thumbnail(picture))
    reference = cv2.resize(picture, small.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert psnr(small, reference) > 30


def test_fine_detail_shrunk_a_lot_averages_out_rather_than_aliasing():
    stripes = np.zeros((1600, 1600, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: any sampling of them without averaging is black or white
    small = decoded(thumbnail(stripes)).astype(np.float64)
    assert abs(small.mean() - 127.5) < 8 and small.std() < 8
