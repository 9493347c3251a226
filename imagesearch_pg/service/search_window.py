"""The result window every search shares: Start and Num, ScoreThreshold, DistinctProductId and DocsFound,
over any source of rows ranked best first."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from imagesearch_pg.service import validation
from imagesearch_pg.service.models import Match, PicInfo, SearchResult
from imagesearch_pg.store import picture_search
from imagesearch_pg.store.filters import Node
from imagesearch_pg.store.instances import InstanceRef

# A DistinctProductId search fetches more and more pictures until it has enough products; it gives up past
# this many (a product with thousands of near-identical pictures would otherwise cost a scan of them all).
MAX_DISTINCT_FETCH = 20_000

# fetch(conn, instance, limit, expected): the ``limit`` best rows (each with a ``score``), best first;
# ``expected`` is the planner's estimate of the pictures the filter and category match (None without them).
Fetch = Callable[[sa.Connection, InstanceRef, int, "picture_search.Estimate | None"], list]


@dataclass(frozen=True)
class Window:
    """A search request's options, checked."""

    start: int
    num: int
    threshold: float | None
    distinct: bool
    filter: Node | None
    category_id: int | None  # searched within (product instances), else None
    exclude_product: str | None = None  # a search by a product leaves its own pictures out


def ranked(conn: sa.Connection, instance: InstanceRef, fetch: Fetch, window: Window) -> tuple[list, int]:
    """The first ``start + num`` rows of ``fetch`` after the score threshold and DistinctProductId, and
    DocsFound: how many results there are, up to the 500 window. The planner's estimate of the matches is
    asked once and serves both the plan and the count."""
    expected = picture_search.estimate(conn, instance.id, window.filter, window.category_id, window.exclude_product)
    wanted = window.start + window.num
    threshold = window.threshold
    # With a threshold every result above it must be seen to count them; scores descend, so the first
    # one below it ends the list.
    target = validation.MAX_WINDOW if threshold is not None else wanted
    limit = target
    while True:
        rows = fetch(conn, instance, limit, expected)
        kept = [row for row in rows if threshold is None or row.score >= threshold]
        ended = len(rows) < limit or len(kept) < len(rows)
        if window.distinct:
            seen: set[str] = set()
            kept = [row for row in kept if not (row.product_id in seen or seen.add(row.product_id))]
        if ended or len(kept) >= target or limit >= MAX_DISTINCT_FETCH:
            break
        limit = min(limit * 4, MAX_DISTINCT_FETCH)
    if threshold is not None or ended:
        docs_found = min(len(kept), validation.MAX_WINDOW)
    else:
        docs_found = picture_search.count(
            conn, instance.id, window.filter, window.category_id, window.distinct, validation.MAX_WINDOW, expected,
            rows, window.exclude_product,
        )
    return kept[:wanted], docs_found


def result(rows: list, docs_found: int, start: int, began: float, pic_info: PicInfo | None = None,
           scored: bool = True) -> SearchResult:
    """Rows from ``start`` on as a SearchResult; ``began``: the search's perf_counter() at its start."""
    return SearchResult(
        docs_found=docs_found,
        search_time_ms=round((time.perf_counter() - began) * 1000),
        matches=[Match.from_row(row, float(row.score) if scored else None) for row in rows[start:]],
        pic_info=pic_info,
    )
