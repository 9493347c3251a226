"""The trademark recipe end to end: silhouettes, colour layers and geometric re-ranking on the real database."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.service import Attributes, reranking
from imagesearch_pg.store import bulk_load
from imagesearch_pg.vision import descriptors
from tests.pictures import encode, sample_photos
from tests.small_vectors import load, unit

PHOTOS = sample_photos()
INK = (200, 30, 30)


def mark(kind: int) -> np.ndarray:
    """A flat-coloured mark on white, 300 x 300; each kind a different design."""
    image = np.full((300, 300, 3), 255, np.uint8)
    if kind == 0:
        cv2.circle(image, (150, 150), 90, INK, thickness=25)
        cv2.rectangle(image, (120, 60), (180, 240), INK, thickness=-1)
    elif kind == 1:
        cv2.putText(image, "AZ", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, INK, 20)
    elif kind == 2:
        cv2.fillPoly(image, [np.array([[150, 40], [260, 250], [40, 250]])], INK)
        cv2.circle(image, (150, 180), 35, (255, 255, 255), thickness=-1)
    elif kind == 3:
        cv2.putText(image, "Kq", (30, 210), cv2.FONT_HERSHEY_TRIPLEX, 5, INK, 14)
    elif kind == 4:
        for i in range(4):
            cv2.rectangle(image, (40 + 55 * i, 60 + 30 * i), (80 + 55 * i, 250), INK, thickness=-1)
    else:
        cv2.ellipse(image, (150, 150), (120, 60), 30, 0, 360, INK, thickness=-1)
        cv2.putText(image, "S", (115, 185), cv2.FONT_HERSHEY_DUPLEX, 3, (255, 255, 255), 10)
    return image


def in_the_wild(logo: np.ndarray, colour=(30, 160, 60), angle: float = 12.0, side: int = 220) -> np.ndarray:
    """The mark recoloured, turned, shrunk and pasted on part of a photo, as a logo is seen on a product
    shot (the logo-simple-icons hard queries are made the same way)."""
    ink = (logo != 255).any(axis=2)
    matrix = cv2.getRotationMatrix2D((150, 150), angle, side / 300)
    matrix[:, 2] += side / 2 - 150
    small_ink = cv2.warpAffine(ink.astype(np.uint8) * 255, matrix, (side, side)) > 127
    photo = cv2.resize(PHOTOS["astronaut"], (512, 512))[200:500, 150:450].copy()
    patch = photo[40 : 40 + side, 50 : 50 + side]
    patch[small_ink] = colour
    return photo


@pytest.fixture(scope="module")
def marks(service, tmp_path_factory):
    name = "tm-" + tmp_path_factory.mktemp("tm").name.replace("_", "-")[-20:]
    service.create_instance(name, "trademark", encoder="efficientnet-lite0-trademark")
    for kind in range(6):
        service.add_image(name, f"mark{kind}", "m.png", encode(mark(kind)), attributes=Attributes(int_attr=kind))
    # photos without any mark, so the marks compete with busy pictures too
    for key in ("coffee", "chelsea", "rocket"):
        service.add_image(name, key, "p.png", encode(PHOTOS[key]), attributes=Attributes(int_attr=9))
    yield name
    service.delete_instance(name)


def stored_views(engine, instance_name):
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT p.product_id, p.silhouette IS NOT NULL, length(p.keypoints) FROM imagesearch.pictures p"
                " JOIN imagesearch.instances i ON i.id = p.instance_id WHERE i.name = :n ORDER BY 1"
            ),
            {"n": instance_name},
        ).all()


def test_trademark_pictures_store_a_silhouette_and_keypoints(engine, service, marks, make_instance):
    rows = stored_views(engine, marks)
    assert len(rows) == 9
    assert all(has_silhouette and keypoint_bytes > 4 for _, has_silhouette, keypoint_bytes in rows)
    plain = make_instance("generic")
    service.add_image(plain.name, "p", "p.png", encode(mark(0)))
    assert stored_views(engine, plain.name) == [("p", False, None)]


@pytest.mark.parametrize("kind", range(6))
def test_a_recoloured_or_inverted_mark_is_found_first(service, marks, kind):
    logo = mark(kind)
    ink = (logo != 255).any(axis=2)
    recoloured = logo.copy()
    recoloured[ink] = (20, 90, 220)
    inverted = np.zeros_like(logo)
    inverted[ink] = (255, 255, 255)
    for query in (recoloured, inverted):
        result = service.search_by_picture(marks, encode(query))
        assert result.matches[0].product_id == f"mark{kind}"
        scores = [a.score for a in result.matches]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)


def test_marks_pasted_on_photos_rank_higher_than_with_the_plain_encoder(service, marks, make_instance):
    """Recoloured, turned marks on a photo: the silhouettes of the colour layers find most of them first,
    where the plain GeM encoder finds none or few (logo hard R@1 0.48 vs 0.24 on the public benchmark)."""
    plain = make_instance("trademark", encoder="efficientnet-lite0-gem")
    for kind in range(6):
        plain_add = service.add_image(plain.name, f"mark{kind}", "m.png", encode(mark(kind)))
        assert plain_add.category_id == 88888888
    for key in ("coffee", "chelsea", "rocket"):
        service.add_image(plain.name, key, "p.png", encode(PHOTOS[key]))

    def ranks(instance_name):
        found = []
        for kind in range(6):
            result = service.search_by_picture(instance_name, encode(in_the_wild(mark(kind))), num=9)
            found.append([a.product_id for a in result.matches].index(f"mark{kind}"))
        return found

    recipe, gem = ranks(marks), ranks(plain.name)
    assert sum(r == 0 for r in recipe) >= 3 and sum(r == 0 for r in recipe) > sum(r == 0 for r in gem)
    assert sum(recipe) < sum(gem)


def test_filters_and_paging_hold_with_silhouettes(service, marks):
    query = encode(in_the_wild(mark(2), colour=(250, 220, 0)))
    only_photos = service.search_by_picture(marks, query, filter="int_attr=9", num=10)
    assert {a.product_id for a in only_photos.matches} == {"coffee", "chelsea", "rocket"}
    found = service.search_by_picture(marks, query, filter="int_attr<9", num=10).matches
    assert found[0].product_id == "mark2" and len(found) == 6
    everything = service.search_by_picture(marks, query, num=9).matches
    assert len({(a.product_id, a.pic_name) for a in everything}) == 9
    second_page = service.search_by_picture(marks, query, start=3, num=3).matches
    assert [a.product_id for a in second_page] == [a.product_id for a in everything[3:6]]
    # A ScoreThreshold or DistinctProductId search fetches a long window: the re-ranking still applies
    wide = service.search_by_picture(marks, query, num=9, score_threshold=0.0, distinct_product_id=True).matches
    assert [a.product_id for a in wide] == [a.product_id for a in everything]


def test_search_by_name_uses_the_stored_silhouette(service, marks):
    result = service.search_by_name(marks, "mark4", "m.png", num=3)
    assert result.matches[0].product_id == "mark4" and result.matches[0].score > 0.99


def test_silhouette_is_the_same_whatever_the_colours():
    logo = mark(0)
    inverted = 255 - logo
    green = logo.copy()
    green[(logo != 255).any(axis=2)] = (30, 160, 60)
    views = [descriptors.silhouette(image) for image in (logo, inverted, green)]
    assert views[0].shape[:2] != logo.shape[:2]  # framed to the ink
    assert (views[0] == views[1]).all() and (views[0] == views[2]).all()


def test_rerank_moves_geometric_matches_first():
    """A turned, shrunk copy (tens of inliers) overtakes a look-alike with a better cosine; scores stay
    ordered and in 0..1; rows past the candidates, or without stored keypoints, keep their place."""
    original = cv2.resize(PHOTOS["coffee"], (300, 300))
    matrix = cv2.getRotationMatrix2D((150, 150), 15, 0.9)
    query = PHOTOS["astronaut"].copy()
    turned = cv2.warpAffine(original, matrix, (300, 300), borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.full((300, 300), 255, np.uint8), matrix, (300, 300)) > 0
    query[100:400, 100:400][inside] = turned[inside]
    features = descriptors.local_features(query)
    stored = {
        (key, "p"): descriptors.pack_local(descriptors.local_features(PHOTOS[photo], both_polarities=False))
        for key, photo in (("other", "chelsea"), ("copy", "coffee"))
    }
    stored[("copy", "p")] = descriptors.pack_local(descriptors.local_features(original, both_polarities=False))

    class Row(tuple):
        product_id = property(lambda self: self[0])
        pic_name = property(lambda self: "p")
        score = property(lambda self: self[1])
        keypoints = property(lambda self: stored.get((self[0], "p")))
        _mapping = property(lambda self: {"product_id": self[0], "pic_name": "p", "score": self[1]})

    stored_copy = descriptors.unpack_local(stored[("copy", "p")])
    assert descriptors.verify_many(features, [stored_copy])[0] >= reranking.MIN_INLIERS
    rows = [Row(("other", 0.9)), Row(("copy", 0.6)), Row(("unstored", 0.5))]
    ranked = reranking.rerank(rows, features)
    assert [r.product_id for r in ranked] == ["copy", "other", "unstored"]
    assert 0.9 < ranked[0].score <= 1.0 and [r.score for r in ranked[1:]] == [0.9, 0.5]
    assert reranking.rerank(rows[:1], features) == rows[:1]  # nothing verified: unchanged
    beyond = [Row((f"x{i}", 0.95)) for i in range(reranking.CANDIDATES)] + rows
    assert reranking.rerank(beyond, features) == beyond  # the copy is past the candidates


# ---- the shipped numbers (README "Trademark instances"), on bulk-loaded rows placed around a real query ----


def at_cosine(target: np.ndarray, cosine: float, rng) -> np.ndarray:
    """A unit vector at ``cosine`` from the unit vector ``target``."""
    side = rng.standard_normal(target.shape).astype(np.float32)
    side -= (side @ target) * target
    return cosine * target + np.sqrt(1.0 - cosine * cosine) * side / np.linalg.norm(side)


def copied_keypoints(features, count: int) -> bytes:
    """Stored keypoints that agree with ``count`` of the query's and nothing else: their descriptors as they
    are, their positions turned, scaled and shifted together. The ratio test keeps exactly those ``count``
    matches and they fit one similarity transform, so verification finds ``count`` inliers."""
    points, descs = features
    _, distinct = np.unique(descs, axis=0, return_index=True)  # two equal descriptors would fail the ratio test
    chosen = np.sort(distinct)[:count]
    matrix = cv2.getRotationMatrix2D((0, 0), 30, 1.5)
    moved = points[chosen].copy()
    moved[:, :2] = points[chosen, :2] @ matrix[:, :2].T + matrix[:, 2] + (40, 10)
    return descriptors.pack_local((moved, descs[chosen]))


@pytest.fixture(scope="module")
def photo_query(service, tmp_path_factory):
    """A photo query (plenty of SIFT keypoints) and what the service computes from it on a trademark instance:
    its picture embedding, its silhouettes and its keypoints."""
    picture = encode(cv2.resize(PHOTOS["astronaut"], (300, 300)))
    name = "tmq-" + tmp_path_factory.mktemp("tmq").name.replace("_", "-")[-20:]
    service.create_instance(name, "trademark")
    prepared = service.pipeline.prepare(service.instances.cached(name), picture, crop=False, region=None,
                                        query=True, keypoints=True)
    service.delete_instance(name)
    return picture, prepared.description, prepared.keypoints.result()


def test_rerank_checks_the_first_30_and_moves_8_inliers_or_more_first(service, make_instance, photo_query):
    """36 pictures at cosines 0.95, 0.94 ... from the query, some with keypoints agreeing with it in a known
    number of places: 8 or more inliers among the first 30 move to the front, most inliers first, scored
    ``top + (1 - top) * n / (n + 8)``; 7 inliers, or the 31st picture, keep their place."""
    picture, description, features = photo_query
    instance = make_instance("trademark")
    inliers = {3: 8, 5: 7, 12: 12, 29: 20, 30: 30}  # by cosine rank
    stored = {rank: copied_keypoints(features, n) for rank, n in inliers.items()}
    assert descriptors.verify_many(features, [descriptors.unpack_local(b) for b in stored.values()]) == \
        list(inliers.values())  # the counts the test relies on, found as the service finds them
    rng = np.random.default_rng(5)
    query = description.embedding / np.linalg.norm(description.embedding)
    rows = [(f"r{rank}", "p", 88888888, at_cosine(query, 0.95 - 0.01 * rank, rng), stored.get(rank))
            for rank in range(36)]
    load(service, instance.name, rows, bulk_load.BULK_COLUMNS + ("keypoints",))

    found = service.search_by_picture(instance.name, picture, crop=False, num=36).matches
    moved = ["r29", "r12", "r3"]  # 20, 12 and 8 inliers
    assert [a.product_id for a in found] == moved + [f"r{rank}" for rank in range(36) if f"r{rank}" not in moved]
    top = found[3].score  # the best unverified picture
    assert top == pytest.approx(0.95, abs=2e-3)
    for hit, n in zip(found, (20, 12, 8)):
        assert hit.score == pytest.approx(top + (1 - top) * n / (n + 8), rel=1e-12)


def test_a_silhouette_match_counts_0_05_less_than_a_picture_match(service, make_instance, photo_query):
    """A stored silhouette equal to one of the query's scores 1 - 0.05 through the trademark encoder, between
    pictures whose embeddings score 0.97 and 0.90."""
    picture, description, _ = photo_query
    instance = make_instance("trademark")
    rng = np.random.default_rng(6)
    query = description.embedding / np.linalg.norm(description.embedding)
    rows = [("picture", "p", 88888888, at_cosine(query, 0.97, rng), None),
            ("shape", "p", 88888888, at_cosine(query, 0.3, rng), description.silhouettes[0]),
            ("below", "p", 88888888, at_cosine(query, 0.9, rng), None)]
    load(service, instance.name, rows, bulk_load.BULK_COLUMNS + ("silhouette",))
    found = service.search_by_picture(instance.name, picture, crop=False).matches
    assert [a.product_id for a in found] == ["picture", "shape", "below"]
    assert found[1].score == pytest.approx(0.95, abs=1e-3)


def test_search_by_vector_on_a_trademark_instance_uses_the_picture_vectors_alone(service, make_instance):
    """A picture whose silhouette is the query vector itself but whose embedding is far (cosine 0.3) stays
    below one whose embedding is at 0.8; the vector's length, tiny or past what a halfvec holds, changes
    nothing, since it is scaled to unit length."""
    instance = make_instance("trademark")
    rng = np.random.default_rng(7)
    query = unit(rng.random(1280) + 0.05)
    rows = [("twin-shape", "p", 88888888, at_cosine(query, 0.3, rng), query),
            ("picture", "p", 88888888, at_cosine(query, 0.8, rng), None)]
    load(service, instance.name, rows, bulk_load.BULK_COLUMNS + ("silhouette",))
    for length in (1e-9, 1.0, 1e8):
        found = service.search_by_vector(instance.name, (length * query).tolist()).matches
        assert [a.product_id for a in found] == ["picture", "twin-shape"], length
        np.testing.assert_allclose([a.score for a in found], [0.8, 0.3], atol=2e-3)
