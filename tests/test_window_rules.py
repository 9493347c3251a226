"""The result window's rules (imagesearch_pg/service/search_window.py) over a source of ranked rows made
here: what the window asks of its source (how many rows, with which planner estimate), which rows it keeps
and what it reports as DocsFound, counted by the real database over a real instance's pictures."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from imagesearch_pg.attributes import ATTRIBUTE_NAMES
from imagesearch_pg.service.search_window import MAX_DISTINCT_FETCH, Window, ranked, result
from imagesearch_pg.store import bulk_load, instances, picture_search
from imagesearch_pg.store.filters import parse_filter

PRODUCTS, PER_PRODUCT = 4, 3  # the instance's pictures: product p{i} has pictures 0..2, int_attr = picture number
CATEGORY = 88888888  # theirs (a product instance's category id)


@pytest.fixture(scope="module")
def stored(service):
    """A real instance holding 12 pictures (4 products x 3), for the database's counts."""
    name = f"rules-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    vectors = np.abs(np.random.default_rng(5).standard_normal((PRODUCTS * PER_PRODUCT, 1280))).astype(np.float32)
    rows = ((f"p{i // PER_PRODUCT}", f"pic{i}", CATEGORY, vector / np.linalg.norm(vector), i)
            for i, vector in enumerate(vectors))
    with service.database.engine.begin() as conn:
        instance = instances.find(conn, name)
        bulk_load.bulk_load(conn, instance.id, rows, columns=bulk_load.BULK_COLUMNS + ("int_attr",))
    yield instance
    service.delete_instance(name)


def made_rows(products: int, per_product: int, total: int | None = None) -> list:
    """Rows ranked best first, as a walk gives them: product k's pictures together, scores descending."""
    rows = []
    for index in range(products * per_product):
        row = SimpleNamespace(product_id=f"p{index // per_product}", pic_name=f"pic{index}", category_id=3,
                              score=1.0 - index / 100_000, **dict.fromkeys(ATTRIBUTE_NAMES))
        if total is not None:
            setattr(row, picture_search.TOTAL, total)  # the instance's count, as unfiltered walks carry it
        rows.append(row)
    return rows


class Source:
    """A fetch over ``rows``: records each limit and estimate the window asked with."""

    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def __call__(self, conn, instance, limit, expected):
        self.asked.append((limit, expected))
        return self.rows[:limit]

    @property
    def limits(self):
        return [limit for limit, _ in self.asked]


def window(start=0, num=10, threshold=None, distinct=False, filter=None, category=None, exclude=None) -> Window:
    return Window(start, num, threshold, distinct, None if filter is None else parse_filter(filter), category, exclude)


def run(database, instance, source, **options):
    with database.reading() as conn:
        kept, docs_found = ranked(conn, instance, source, window(**options))
    return [row.pic_name for row in kept], docs_found


def test_a_plain_window_asks_for_start_plus_num_rows_and_counts_the_instance(database, stored):
    source = Source(made_rows(10, 1, total=321))
    assert run(database, stored, source, start=2, num=3) == (["pic0", "pic1", "pic2", "pic3", "pic4"], 321)
    assert source.asked == [(5, None)]
    capped = Source(made_rows(10, 1, total=5000))
    assert run(database, stored, capped, num=3)[1] == 500  # DocsFound stops at the window


def test_a_source_that_runs_out_gives_docs_found_from_its_rows(database, stored):
    source = Source(made_rows(3, 1, total=321))
    assert run(database, stored, source, start=1, num=5) == (["pic0", "pic1", "pic2"], 3)
    assert source.limits == [6]


@pytest.mark.parametrize("threshold,kept", [(0.0, 8), (1.0 - 4 / 100_000, 5), (1.0, 1), (1.5, 0)])
def test_a_threshold_reads_up_to_the_window_and_keeps_scores_at_or_above_it(database, stored, threshold, kept):
    source = Source(made_rows(8, 1, total=321))
    names, docs_found = run(database, stored, source, num=3, threshold=threshold)
    assert names == [f"pic{i}" for i in range(min(kept, 3))] and docs_found == kept
    assert source.limits == [500]


def test_docs_found_with_a_threshold_stops_at_the_window(database, stored):
    source = Source(made_rows(700, 1))
    names, docs_found = run(database, stored, source, start=495, num=5, threshold=0.0)
    assert (len(names), docs_found, source.limits) == (500, 500, [500])


def test_distinct_products_read_four_times_more_until_enough(database, stored):
    source = Source(made_rows(4, 6))  # 24 rows: asked 5, then 20, then 80, which they do not fill
    names, docs_found = run(database, stored, source, num=5, distinct=True)
    assert names == ["pic0", "pic6", "pic12", "pic18"] and docs_found == 4 and source.limits == [5, 20, 80]


def test_distinct_products_that_fill_the_window_are_counted_by_the_database(database, stored):
    source = Source(made_rows(30, 2))
    names, docs_found = run(database, stored, source, start=1, num=2, distinct=True)
    assert names == ["pic0", "pic2", "pic4"] and source.limits == [3, 12]
    assert docs_found == PRODUCTS  # the stored instance's distinct products, not the source's


def test_distinct_products_stop_reading_at_the_fetch_limit(database, stored):
    source = Source(made_rows(1, MAX_DISTINCT_FETCH + 10))  # one product, more pictures than it will read
    names, docs_found = run(database, stored, source, num=2, distinct=True)
    assert names == ["pic0"] and source.limits == [2, 8, 32, 128, 512, 2048, 8192, MAX_DISTINCT_FETCH]
    assert docs_found == PRODUCTS


def test_a_filtered_window_asks_the_planner_once_and_the_database_counts(database, stored):
    source = Source(made_rows(10, 1))
    names, docs_found = run(database, stored, source, num=4, filter="int_attr < 5")
    assert names == ["pic0", "pic1", "pic2", "pic3"] and docs_found == 5  # the stored pictures 0..4
    [(limit, expected)] = source.asked
    assert limit == 4 and isinstance(expected, picture_search.Estimate)


@pytest.mark.parametrize("category,found", [(CATEGORY, PRODUCTS * PER_PRODUCT), (CATEGORY + 1, 0)])
def test_a_window_within_a_category_asks_the_planner_and_counts_the_category(database, stored, category, found):
    source = Source(made_rows(10, 1))
    assert run(database, stored, source, num=4, category=category)[1] == found
    assert isinstance(source.asked[0][1], picture_search.Estimate)


def test_a_search_by_product_leaves_its_pictures_out_of_the_count(database, stored):
    source = Source(made_rows(10, 1))
    names, docs_found = run(database, stored, source, num=4, exclude="p0")
    assert docs_found == PRODUCTS * PER_PRODUCT - PER_PRODUCT
    assert isinstance(source.asked[0][1], picture_search.Estimate)
    _, distinct_found = run(database, stored, Source(made_rows(10, 1)), num=2, exclude="p0", distinct=True)
    assert distinct_found == PRODUCTS - 1


def test_the_result_takes_rows_from_start_with_their_scores_and_the_time_taken():
    rows = made_rows(3, 1)
    began = time.perf_counter() - 1_000_000  # a search that began a million seconds ago
    info = object()
    answer = result(rows, 42, 1, began, pic_info=info)
    assert [(m.pic_name, m.score, m.category_id) for m in answer.matches] == [
        ("pic1", rows[1].score, 3), ("pic2", rows[2].score, 3)]
    assert answer.docs_found == 42 and answer.pic_info is info
    assert 1_000_000_000 <= answer.search_time_ms < 1_000_600_000  # milliseconds, whatever this test's pace
    assert [m.score for m in result(rows, 3, 0, time.perf_counter(), scored=False).matches] == [None] * 3
    assert result(rows, 3, 0, time.perf_counter()).pic_info is None
