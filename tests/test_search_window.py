"""Paging, DocsFound, ScoreThreshold and DistinctProductId, through the service on bulk-loaded vectors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.errors import OverflowMaxResultNum
from imagesearch_pg.store import bulk_load
from imagesearch_pg.store.tables import instances

DIM = 1280
PRODUCTS, PER_PRODUCT = 120, 6  # 720 pictures: more than the 500 window


@pytest.fixture(scope="module")
def shop(service):
    """Product p has 6 pictures close to each other; IntAttr = picture number (0..719)."""
    name = f"window-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    rng = np.random.default_rng(3)
    centres = np.abs(rng.standard_normal((PRODUCTS, DIM))).astype(np.float32)
    vectors = np.repeat(centres, PER_PRODUCT, axis=0) + 0.3 * np.abs(rng.standard_normal((PRODUCTS * PER_PRODUCT, DIM)))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    rows = ((f"prod{i // PER_PRODUCT}", f"pic{i}", 88888888, v, i) for i, v in enumerate(vectors))
    with service.database.engine.begin() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
        bulk_load.bulk_load(conn, instance_id, rows, columns=bulk_load.BULK_COLUMNS + ("int_attr",))
    yield name
    service.delete_instance(name)


def search(service, shop, **options):
    return service.search_by_name(shop, "prod7", "pic42", **options)


def keys(result):
    return [(a.product_id, a.pic_name) for a in result.matches]


def test_pages_tile_the_first_500(service, shop):
    pages = [search(service, shop, start=start, num=100) for start in range(0, 500, 100)]
    ranked = [key for page in pages for key in keys(page)]
    assert len(ranked) == 500 == len(set(ranked))
    assert [page.docs_found for page in pages] == [500] * 5  # 720 match; DocsFound stops at the window
    assert keys(search(service, shop, start=499, num=1)) == ranked[499:]
    assert keys(search(service, shop, start=0, num=1)) == [("prod7", "pic42")]
    scores = [a.score for page in pages for a in page.matches]
    assert scores == sorted(scores, reverse=True)
    assert len(search(service, shop, start=400, num=100).matches) == 100
    with pytest.raises(OverflowMaxResultNum):
        search(service, shop, start=401, num=100)


def test_docs_found_counts_the_matches(service, shop):
    assert search(service, shop, filter="int_attr < 50").docs_found == 50
    assert search(service, shop, filter="int_attr < 50", num=100).docs_return == 50
    assert search(service, shop, filter="int_attr >= 715").docs_found == 5
    assert search(service, shop, filter="int_attr = 100000").docs_found == 0


def test_distinct_product_id_gives_each_product_once_with_its_best_picture(service, shop):
    full = [a for start in range(0, 500, 100) for a in search(service, shop, start=start, num=100).matches]
    best = {}
    for auction in full:
        best.setdefault(auction.product_id, auction)
    distinct = search(service, shop, num=100, distinct_product_id=True)
    products = [a.product_id for a in distinct.matches]
    assert len(products) == 100 == len(set(products))  # still Num results, though each product has 6
    for auction in distinct.matches[:80]:  # the first 80 products all lie within the plain top 500
        assert (auction.pic_name, auction.score) == (best[auction.product_id].pic_name, best[auction.product_id].score)
    assert distinct.docs_found == PRODUCTS
    assert search(service, shop, distinct_product_id=True, filter="int_attr < 50").docs_found == 9  # 50 / 6
    paged = search(service, shop, num=10, start=90, distinct_product_id=True)
    assert [a.product_id for a in paged.matches] == products[90:100]
    assert products[:80] == list(best)[:80]  # ranked as their best pictures rank


def test_score_thresholds(service, shop):
    unfiltered = search(service, shop, num=100)
    assert keys(search(service, shop, num=100, score_threshold=0.0)) == keys(unfiltered)
    assert search(service, shop, score_threshold=0.0).docs_found == 500
    cut = unfiltered.matches[30].score
    above = search(service, shop, num=100, score_threshold=cut)
    assert all(a.score >= cut for a in above.matches) and len(above.matches) >= 31
    assert above.docs_found == len(above.matches)
    top = search(service, shop, num=100, score_threshold=1.0)
    assert all(a.score == 1.0 for a in top.matches) and top.docs_found == len(top.matches) <= 1


def test_a_score_threshold_applies_before_paging(service, shop):
    """Start and Num page through the pictures above the threshold, and DocsFound counts all of them, on every
    page: not the page's own rows, nor the pictures below the threshold."""
    ranked = search(service, shop, num=100).matches
    cut = ranked[45].score
    above = [(a.product_id, a.pic_name) for a in ranked if a.score >= cut]
    assert 46 <= len(above) < 100  # the threshold ends the list within the second page of 40
    pages = [search(service, shop, start=start, num=40, score_threshold=cut) for start in (0, 40, 80)]
    assert [keys(page) for page in pages] == [above[:40], above[40:80], []]
    assert [page.docs_found for page in pages] == [len(above)] * 3
