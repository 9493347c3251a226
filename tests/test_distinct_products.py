"""The README's numbers for DistinctProductId and DocsFound, as shipped: "DistinctProductId keeps each product's
best picture and fetches further until Num products are found (up to 20,000 pictures deep)", and "DocsFound
counts matches up to 500 (when the planner expects 5,000 or more, it is 500 without counting)".

The instances hold vectors of a small registered encoder (tests/small_vectors.py), placed so that the answer
is known: one product's pictures crowd the query, the other products lie beyond them at known distances. The
numbers are written here, not read from the code."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from imagesearch_pg.store import bulk_load
from imagesearch_pg.store import picture_search
from imagesearch_pg.store.filters import parse_filter
from tests.small_vectors import instance_id, load, register_small_encoder, unit

DIM = 16
QUERY = np.eye(DIM, dtype=np.float32)[0]
FETCH_CAP = 20_000  # README: "up to 20,000 pictures deep"
WINDOW = 500  # README: DocsFound counts up to 500
UNCOUNTED_FROM = 5_000  # README: "when the planner expects 5,000 or more, it is 500 without counting"
INT_COLUMNS = bulk_load.BULK_COLUMNS + ("int_attr", "int_attr2", "int_attr3", "int_attr4")


@pytest.fixture(scope="module")
def encoder(service, tmp_path_factory) -> str:
    return register_small_encoder(service, tmp_path_factory.mktemp("encoder"), DIM)


@pytest.fixture
def fresh(service, encoder):
    made = []

    def make() -> str:
        name = f"distinct-{uuid.uuid4().hex[:12]}"
        service.create_instance(name, "generic", encoder=encoder)
        made.append(name)
        return name

    yield make
    for name in made:
        service.delete_instance(name)


def crowd(rng, count: int) -> np.ndarray:
    """``count`` near-duplicates of the query (cosine > 0.99)."""
    return unit(QUERY + 0.01 * rng.standard_normal((count, DIM)))


def beyond(rng, count: int) -> list[np.ndarray]:
    """``count`` vectors at cosines 0.9, 0.88, 0.86 ... from the query: each farther than the one before and
    than every picture of the crowd."""
    vectors = []
    for k in range(count):
        side = unit(np.r_[0.0, rng.standard_normal(DIM - 1)])
        cosine = 0.9 - 0.02 * k
        vectors.append((cosine * QUERY + np.sqrt(1 - cosine**2) * side).astype(np.float32))
    return vectors


def products(result) -> list[str]:
    return [match.product_id for match in result.matches]


def test_distinct_products_are_fetched_from_past_the_500_window(service, fresh):
    """Product A's 700 pictures are all nearer than any other product's: the other products are past rank 500 of
    the plain ranking, yet Num=10 with DistinctProductId finds A and the 9 nearest others, each at its score."""
    name = fresh()
    rng = np.random.default_rng(20)
    others = beyond(rng, 30)
    rows = [("A", f"a{i:03d}", 0, v, 1, 1, 1, 1) for i, v in enumerate(crowd(rng, 700))]
    rows += [(f"other{k:02d}", "only.jpg", 0, v, 1, 1, 1, 1) for k, v in enumerate(others)]
    load(service, name, rows, INT_COLUMNS)

    plain = [m for start in range(0, WINDOW, 100)
             for m in service.search_by_vector(name, QUERY, start=start, num=100).matches]
    assert len(plain) == WINDOW and {m.product_id for m in plain} == {"A"}  # the window holds A alone

    expected = ["A"] + [f"other{k:02d}" for k in range(9)]
    for options in ({}, {"filter": "int_attr = 1"}):  # the HNSW walk, and the exact scan of a filter's matches
        found = service.search_by_vector(name, QUERY, num=10, distinct_product_id=True, **options)
        assert products(found) == expected, options
        assert found.docs_found == 31  # every product: the fetch reached the end of the instance
        for match, vector in zip(found.matches[1:], others):
            assert match.score == pytest.approx(float(vector @ QUERY), abs=2e-3)


def test_distinct_products_are_fetched_at_most_20000_pictures_deep(service, fresh):
    """Product A's pictures crowd the query; 10 other products lie beyond. With 19,991 pictures of A ahead, the
    nearest 20,000 hold 9 other products: all found. With 20,000 of A ahead, the nearest 20,000 hold A alone: the
    search stops there, with A only (DocsFound still counts the 11 products the filter matches).

    A filter on four attributes, each true for the same half of the rows, makes the planner (which takes them as
    independent) expect a sixteenth of the rows, under 5,000: every match is scored exactly, so the depth reached
    is exactly the depth fetched (an HNSW walk through 20,000 near-duplicates would miss some of them)."""
    name = fresh()
    rng = np.random.default_rng(21)
    matching = "int_attr = 1 AND int_attr2 = 1 AND int_attr3 = 1 AND int_attr4 = 1"
    rows = [("A", f"a{i:05d}", 0, v, 1, 1, 1, 1) for i, v in enumerate(crowd(rng, FETCH_CAP - 9))]
    rows += [(f"other{k}", "only.jpg", 0, v, 1, 1, 1, 1) for k, v in enumerate(beyond(rng, 10))]
    rows += [(f"filler{i:05d}", "x", 0, v, 0, 0, 0, 0) for i, v in enumerate(crowd(rng, FETCH_CAP + 10))]
    load(service, name, rows, INT_COLUMNS)
    with service.database.reading() as conn:  # what the test relies on: the exact scan is the plan
        expected = picture_search.estimate(conn, instance_id(service, name), parse_filter(matching), None)
    assert picture_search.walk_breadth(expected) is None, expected

    found = service.search_by_vector(name, QUERY, num=10, distinct_product_id=True, filter=matching)
    assert products(found) == ["A"] + [f"other{k}" for k in range(9)]
    assert found.docs_found == 11

    load(service, name, [("A", f"b{i}", 0, v, 1, 1, 1, 1) for i, v in enumerate(crowd(rng, 9))], INT_COLUMNS)
    capped = service.search_by_vector(name, QUERY, num=10, distinct_product_id=True, filter=matching)
    assert products(capped) == ["A"]
    assert capped.docs_found == 11


def test_docs_found_is_500_uncounted_when_the_planner_expects_5000_or_more(service, fresh):
    """24,000 pictures, every row read by ANALYZE, so the planner's estimates are exact products of each
    attribute's share (it takes attributes as independent). int_attr = 1 on half the rows; int_attr2 = 1 on
    10,000 rows and int_attr3 = 1 on 9,998, each overlapping int_attr = 1 in 20 rows only. So the planner
    expects 5,000 matches of "int_attr = 1 AND int_attr2 = 1" (DocsFound 500, though 20 match) and 4,999 of
    "int_attr = 1 AND int_attr3 = 1" (counted: DocsFound 20)."""
    name = fresh()
    rng = np.random.default_rng(22)
    total = 24_000
    vectors = unit(rng.random((total, DIM)) + 0.05)
    rows = [(f"p{i:05d}", "n", 0, vectors[i], int(i < 12_000), int(11_980 <= i < 21_980),
             int(11_980 <= i < 21_978), 0) for i in range(total)]
    load(service, name, rows, INT_COLUMNS)
    uncounted, counted = "int_attr = 1 AND int_attr2 = 1", "int_attr = 1 AND int_attr3 = 1"
    with service.database.reading() as conn:
        estimates = [picture_search.estimate(conn, instance_id(service, name), parse_filter(f), None).matching
                     for f in (uncounted, counted)]
    assert estimates == [UNCOUNTED_FROM, UNCOUNTED_FROM - 1]  # the setting the test relies on

    found = service.search_by_vector(name, QUERY, num=5, filter=uncounted)
    assert len(found.matches) == 5 and found.docs_found == WINDOW
    found = service.search_by_vector(name, QUERY, num=5, filter=counted)
    assert len(found.matches) == 5 and found.docs_found == 20
    # Fewer matches than Num: the search itself saw them all, so DocsFound is exact whatever the planner expected.
    assert service.search_by_vector(name, QUERY, num=50, filter=uncounted).docs_found == 20
