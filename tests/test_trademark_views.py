"""The views a trademark query is searched with, and the query's keypoints (no timing here: the speed of a
trademark search is measured in benchmarks/trademark_search.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagesearch_pg.vision import descriptors, subject, transforms
from imagesearch_pg.vision.intake import Box
from tests.pictures import sample_photos

INK = (200, 30, 30)


def mark_on(picture: np.ndarray, x: int = 150, y: int = 120, side: int = 260) -> np.ndarray:
    """A flat mark (a ring and a bar) drawn on a copy of ``picture`` at (x, y)."""
    out = picture.copy()
    cv2.circle(out, (x + side // 2, y + side // 2), side // 3, INK, thickness=side // 10)
    cv2.rectangle(out, (x + side // 2 - side // 12, y), (x + side // 2 + side // 12, y + side), INK, thickness=-1)
    return out


@pytest.fixture(scope="module")
def trademark(encoders):
    return encoders.get("efficientnet-lite0-trademark")


def silhouettes_of(encoder, views: list[np.ndarray]) -> np.ndarray:
    return encoder.encode(views, size=encoder.silhouette_size).embeddings


def test_plain_ground_is_the_detectors_border_test():
    plain = mark_on(np.full((600, 600, 3), 255, np.uint8))
    photo = sample_photos()["astronaut"]
    assert subject.plain_ground(plain) and not subject.plain_ground(photo)
    settings = subject.DEFAULT_SETTINGS
    for picture in (plain, photo, mark_on(photo)):
        lab = cv2.cvtColor(picture, cv2.COLOR_RGB2LAB).astype(np.float32)
        expected = subject.plain_background(lab, settings.border_tolerance, settings.border_plain_fraction) is not None
        assert subject.plain_ground(picture) == expected


def test_a_mark_cut_from_a_plain_ground_is_searched_by_its_framed_silhouette_alone(trademark):
    picture = mark_on(np.full((1000, 1000, 3), 250, np.uint8), x=300, y=250, side=500)
    box = subject.plain_subjects(picture)[0]
    assert (box.x2 - box.x1, box.y2 - box.y1) != (1000, 1000)
    described = trademark.describe(picture, box, query=True)
    whole = transforms.bounded(picture, trademark.work_side)
    assert len(descriptors.colour_layers(whole)) > 1  # what it was searched with before
    np.testing.assert_allclose(
        described.silhouettes, silhouettes_of(trademark, [descriptors.silhouette(whole)]), atol=1e-5
    )


@pytest.mark.parametrize("case", ["busy, whole picture", "busy, a region of it", "plain, whole picture"])
def test_other_queries_keep_the_colour_layers_of_the_whole_picture(trademark, case):
    if case.startswith("busy"):
        picture = mark_on(cv2.resize(sample_photos()["astronaut"], (600, 600)))
    else:
        picture = mark_on(np.full((600, 600, 3), 255, np.uint8))
    height, width = picture.shape[:2]
    box = Box(100, 450, 80, 420) if "region" in case else subject.whole(height, width)
    described = trademark.describe(picture, box, query=True)
    views = descriptors.colour_layers(transforms.bounded(picture, trademark.work_side))
    assert len(views) > 1
    np.testing.assert_allclose(described.silhouettes, silhouettes_of(trademark, views), atol=1e-5)


def test_stored_pictures_keep_one_silhouette(trademark):
    picture = mark_on(np.full((600, 600, 3), 255, np.uint8))
    described = trademark.describe(picture, subject.plain_subjects(picture)[0], query=False)
    assert described.silhouettes.shape[0] == 1


def test_the_picture_vector_is_the_subjects_whatever_thread_encodes_it(trademark):
    picture = mark_on(cv2.resize(sample_photos()["coffee"], (700, 500)))
    box = Box(50, 650, 20, 480)
    subject_picture = transforms.bounded(transforms.crop(picture, box), trademark.work_side)
    expected = trademark.encode([subject_picture])
    for query in (True, False):
        described = trademark.describe(picture, box, query=query)
        np.testing.assert_allclose(described.embedding, expected.embeddings[0], atol=1e-6)
        np.testing.assert_allclose(described.logits, expected.logits[0], atol=1e-4)


def test_query_keypoints_come_from_a_smaller_copy_than_stored_ones(trademark):
    """A query's SIFT runs on at most query_keypoint_side (both polarities), a stored picture's on at most
    work_side (one polarity): the stored keypoints are as before, so stored pictures need no migration."""
    picture = mark_on(cv2.resize(sample_photos()["astronaut"], (1000, 1000)), x=300, y=300, side=400)
    box = subject.whole(1000, 1000)
    assert trademark.query_keypoint_side < trademark.work_side
    for query, side in ((True, trademark.query_keypoint_side), (False, trademark.work_side)):
        points, desc = trademark.keypoints(picture, box, query=query)
        expected_points, expected_desc = descriptors.local_features(
            transforms.bounded(picture, side), both_polarities=query
        )
        np.testing.assert_array_equal(points, expected_points)
        np.testing.assert_array_equal(desc, expected_desc)
        assert points[:, :2].max() <= side
