"""The nearest-picture queries: HNSW walks, exact scans of filtered matches, silhouette fusion, counts.

Searches name the instance's partition (tables.partition) and repeat its index expression (the cast to
the instance's dimension), so that the planner uses the partition's own HNSW index.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from imagesearch_pg.store.filters import Node, to_sql
from imagesearch_pg.store.pictures import on_shard, result_columns
from imagesearch_pg.store.query_vectors import Halfvec, cosine_distance, halfvec_parameter
from imagesearch_pg.store import instances as instance_store
from imagesearch_pg.store.tables import key_digest, partition

# Every connection starts with these (database.create_engine). ef_search 80: recall@10 0.98-0.99 with
# held-out queries on 100k clustered vectors (60: 0.96-0.985, 100: 0.99-0.995), docs/benchmarks.md;
# strict_order iterative scans let one HNSW scan go past ef_search rows, still in exact distance order, so a
# window of up to 500 results needs no per-query setting.
HNSW_SETTINGS = {"hnsw.ef_search": "80", "hnsw.iterative_scan": "strict_order"}
_DIALECT = psycopg_dialect()


@dataclass(frozen=True)
class StoredPicture:
    """A query that is a stored picture's own ``embedding`` (or ``silhouette``): read by the search statement
    itself, so that a search by a stored picture is one round trip."""

    product_id: str
    pic_name: str
    column: str = "embedding"


def _stored_vector(part: sa.TableClause, dim: int, column: str, key) -> sa.ScalarSelect:
    return sa.select(sa.cast(part.c[column], Halfvec(dim))).where(part.c.key_digest == key).scalar_subquery()


TOTAL = "instance_pictures"


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once to the driver's SQL text, its bound values processed by their own types
    (the query vector to pgvector's binary form) on each run: SQLAlchemy's per-execution statement work
    cost more than the walk of a small instance (docs/benchmarks.md). psycopg prepares it on the server
    after a few runs on a connection."""

    text: str
    defaults: dict
    processors: dict

    @classmethod
    def of(cls, statement: sa.Executable) -> "_DriverStatement":
        compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
        processors = {name: bind.type.bind_processor(_DIALECT) for name, bind in compiled.binds.items()}
        return cls(compiled.string, dict(compiled.params), {n: p for n, p in processors.items() if p})

    def execute(self, conn: sa.Connection, values: dict) -> list[tuple]:
        """The rows, as named tuples, from the driver's own cursor: SQLAlchemy's result objects cost
        0.13 ms a search (driver errors are translated by store.database as SQLAlchemy's are)."""
        params = {**self.defaults, **values}
        for name, process in self.processors.items():
            params[name] = process(params[name])
        with conn.connection.dbapi_connection.cursor(row_factory=namedtuple_row) as cursor:
            cursor.execute(self.text, params)
            return cursor.fetchall()


def _query_and_limit(part: sa.TableClause, dim: int, by_stored_picture: bool):
    """The query (a vector ``q``, or the stored picture whose digest is ``key``) and the ``limit`` as
    parameters; placeholder values, since compiling a filter's IN lists wants a value for each."""
    query = (_stored_vector(part, dim, "embedding", sa.bindparam("key", b"")) if by_stored_picture
             else halfvec_parameter("q", None, dim))
    return query, sa.bindparam("limit", 0, type_=sa.Integer)


@functools.lru_cache(maxsize=4096)
def _walk(instance_id: int, dim: int, by_stored_picture: bool, filter: Node | None, category_id: int | None,
          excluded: bool) -> _DriverStatement:
    """The HNSW walk, built once per instance, filter and category (a parsed filter is hashable, its values
    in it), with the query and the limit as parameters (_walk_values). Unfiltered, each row also carries
    the instance's picture count (column TOTAL)."""
    part = partition(instance_id)
    conditions = _conditions(part, filter, category_id, excluded)
    walk = walk_statement(part, dim, *_query_and_limit(part, dim, by_stored_picture), conditions)
    if not conditions:
        # DocsFound of an unfiltered search is the instance's kept count: read in the same round trip (an
        # InitPlan, evaluated once).
        walk = walk.add_columns(instance_store.picture_count_of(instance_id).label(TOTAL))
    return _DriverStatement.of(walk)


@functools.lru_cache(maxsize=4096)
def _exact(instance_id: int, dim: int, by_stored_picture: bool, filter: Node | None, category_id: int | None,
           excluded: bool) -> _DriverStatement:
    """The exact scan of a filter's matches, built once as _walk is."""
    part = partition(instance_id)
    query, limit = _query_and_limit(part, dim, by_stored_picture)
    conditions = _conditions(part, filter, category_id, excluded)
    return _DriverStatement.of(_exact_statement(part, query, limit, conditions, [], 0.0, 0))


def _walk_values(query: np.ndarray | StoredPicture, limit: int, exclude_product: str | None) -> dict:
    values = {"limit": limit} if exclude_product is None else {"limit": limit, EXCLUDED: exclude_product}
    if isinstance(query, StoredPicture):
        return {"key": key_digest(query.product_id, query.pic_name), **values}
    return {"q": query, **values}


@dataclass(frozen=True)
class Estimate:
    """The planner's estimate of the pictures a filter and category match, and of all the instance's."""

    matching: float
    total: float

    @property
    def share(self) -> float:
        return self.matching / self.total if self.total > 0 else 1.0


# A filtered search whose matches the planner estimates at no more than this many scores every match
# exactly (bitmap scans over the attribute indexes of migration 0008); above it, the matches are common
# enough that the HNSW walk, skipping the others, finds the nearest ones quickly. Chosen with
# benchmarks/filtered_search.py (docs/benchmarks.md).
EXACT_SCAN_MAX_ROWS = 5000
DEFAULT_BREADTH = int(HNSW_SETTINGS["hnsw.ef_search"])
# A walk with a filter keeps about ``share`` of the candidates it holds: at 10 % or more of the pictures it
# holds MATCHING_BREADTH matching ones (ef_search = MATCHING_BREADTH / share) for recall@10 >= 0.95 on
# held-out queries. Below 10 % the breadth needed grows faster than 1 / share (8 %: 0.948 at ef_search 500)
# while an exact scan of the matches costs about what such a walk costs, so those are scanned exactly
# (benchmarks/filtered_recall.py, docs/benchmarks.md). The limit sits a little under 10 % because the
# planner's estimate of a 10 % filter falls on either side of it.
MATCHING_BREADTH = 40
MIN_WALK_SHARE = 0.095


def walk_breadth(expected: Estimate | None) -> int | None:
    """The hnsw.ef_search of a search's HNSW walk, or None when every match is scored exactly instead
    (few matches, or too small a share of the pictures for a walk to find them)."""
    if expected is None:
        return DEFAULT_BREADTH
    if expected.matching <= EXACT_SCAN_MAX_ROWS or expected.share < MIN_WALK_SHARE:
        return None
    return max(DEFAULT_BREADTH, math.ceil(MATCHING_BREADTH / expected.share))


def nearest(
    conn: sa.Connection,
    instance_id: int,
    dim: int,
    query: np.ndarray | StoredPicture,
    limit: int,
    filter: Node | None = None,
    category_id: int | None = None,
    silhouettes: list[np.ndarray | StoredPicture] | None = None,
    expected: Estimate | None = None,
    keypoints_for: int = 0,
    silhouette_margin: float = 0.0,
    exclude_product: str | None = None,
) -> list[sa.Row]:
    """The ``limit`` nearest pictures by cosine distance, best first, each with a ``score`` column; with a
    ``filter`` (parsed) or a category, the ``limit`` nearest among the matching pictures, or all of them
    when fewer match: never fewer because an index walk gave up.

    The plan is chosen per query: unfiltered, the HNSW index; filtered, an exact scan of the matching rows
    when the planner expects few of them, else the HNSW walk with the filter, falling back to the exact
    scan if the walk ends with fewer than ``limit`` rows (hnsw.max_scan_tuples reached).
    With ``silhouettes`` (vectors or StoredPictures, trademark encoder) a picture's distance
    is the least of its embedding's to ``query`` and its silhouette's to each of them plus
    ``silhouette_margin``.
    A filtered walk is as broad as the filter's share of the pictures needs (walk_breadth).
    ``expected``: the planner's estimate of the matches (estimate()), if the caller has it already.
    ``keypoints_for`` (searches with ``silhouettes``): the first that many rows carry the stored
    ``keypoints`` too, the others None, for re-ranking without a second round trip.
    ``exclude_product``: that product's pictures are left out (a search by a product), like a filter.
    """
    part = partition(instance_id)
    excluded = exclude_product is not None
    filtered = filter is not None or category_id is not None or excluded
    if not silhouettes:
        key = (instance_id, dim, isinstance(query, StoredPicture), filter, category_id, excluded)
        values = _walk_values(query, limit, exclude_product)
        if not filtered:
            return _walk(*key).execute(conn, values)
        if expected is None:
            expected = estimate(conn, instance_id, filter, category_id, exclude_product)
        breadth = walk_breadth(expected)
        if breadth is not None:
            with _breadth(conn, breadth):
                rows = _walk(*key).execute(conn, values)
            if len(rows) == limit:
                return rows
        return _exact(*key).execute(conn, values)
    conditions = _conditions(part, filter, category_id)
    query = vector(part, query, dim)
    silhouette_queries = [vector(part, s, dim, f"s{i}") for i, s in enumerate(silhouettes or ())]
    if keypoints_for and not silhouette_queries:
        raise ValueError("keypoints come with searches by silhouettes (trademark encoders)")
    if excluded:
        raise ValueError("searches by silhouettes leave no product out")
    fusion = (silhouette_queries, silhouette_margin, keypoints_for)
    if not conditions:
        return list(conn.execute(_fused_statement(part, dim, query, limit, *fusion)))
    return list(conn.execute(_exact_statement(part, query, limit, conditions, *fusion)))


def count(conn: sa.Connection, instance_id: int, filter: Node | None, category_id: int | None,
          distinct_products: bool, cap: int, expected: Estimate | None = None, rows: list = (),
          exclude_product: str | None = None) -> int:
    """How many pictures (or distinct products) match, counting no further than ``cap``; ``rows``: those
    the search found, whose TOTAL column (unfiltered walks) spares reading the instance's count.

    Rows are about a page each (the vector stays in line), so counting reads a page per match: when the
    planner expects ten times ``cap`` matching pictures or more, the answer is ``cap`` without counting.
    """
    excluded = exclude_product is not None
    filtered = filter is not None or category_id is not None or excluded
    if not distinct_products and not filtered:  # the instance keeps its own count
        total = getattr(rows[0], TOTAL, None) if rows else None
        return min(cap, instance_store.picture_count(conn, instance_id) if total is None else total)
    if not distinct_products:
        expected = estimate(conn, instance_id, filter, category_id, exclude_product) if expected is None else expected
        if expected.matching >= 10 * cap:
            return cap
    values = {"cap": cap} if not excluded else {"cap": cap, EXCLUDED: exclude_product}
    return _count(instance_id, filter, category_id, distinct_products, excluded).execute(conn, values)[0][0]


@functools.lru_cache(maxsize=4096)
def _count(instance_id: int, filter: Node | None, category_id: int | None, distinct_products: bool,
           excluded: bool) -> _DriverStatement:
    """The count of a filter's matches (or their distinct products) up to ``cap``, built once as _walk is."""
    part = partition(instance_id)
    column = part.c.product_id if distinct_products else sa.literal(1)
    matching = sa.select(column).select_from(part).where(*_conditions(part, filter, category_id, excluded))
    if distinct_products:
        matching = matching.distinct()
    capped = matching.limit(sa.bindparam("cap", 0, type_=sa.Integer)).subquery()
    return _DriverStatement.of(sa.select(sa.func.count()).select_from(capped))


def estimate(conn: sa.Connection, instance_id: int, filter: Node | None, category_id: int | None,
             exclude_product: str | None = None) -> Estimate | None:
    """The planner's estimate of the pictures a filter and category match (less an excluded product's),
    and of all of them (bound parameters, nothing executed, one round trip); None when nothing narrows
    the search."""
    if filter is None and category_id is None and exclude_product is None:
        return None
    excluded = exclude_product is not None
    values = {EXCLUDED: exclude_product} if excluded else {}
    if on_shard(conn, instance_id):
        return _counted(conn, instance_id, filter, category_id, excluded, values)
    plan = _explain(instance_id, filter, category_id, excluded).execute(conn, values)[0][0][0]["Plan"]
    if plan["Node Type"] == "Append" and len(plan["Plans"]) == 2:
        matching, every = plan["Plans"]
        return Estimate(float(matching["Plan Rows"]), float(every["Plan Rows"]))
    return Estimate(0.0, float(plan["Plan Rows"]))  # the planner proved that nothing matches


def _counted(conn: sa.Connection, instance_id: int, filter: Node | None, category_id: int | None, excluded: bool,
             values: dict) -> Estimate:
    """An instance on a shard: counted, as far as the plan needs. The local planner cannot estimate a bound
    filter on a foreign table (postgres_fdw sends no parameters in its remote estimates, and autovacuum
    never analyses foreign tables): it guessed a third of the rows and sent 0.1 % filters walking
    (docs/benchmarks.md). Counting on the shard up to the larger of the exact-scan limit and the walk's
    least share tells which plan applies; the walk's breadth does not reach the shard anyway."""
    total = instance_store.picture_count(conn, instance_id)
    cap = max(EXACT_SCAN_MAX_ROWS, math.ceil(MIN_WALK_SHARE * total)) + 1
    matching = _count(instance_id, filter, category_id, False, excluded).execute(conn, {"cap": cap, **values})[0][0]
    return Estimate(float(matching), float(max(total, matching)))


@functools.lru_cache(maxsize=4096)
def _explain(instance_id: int, filter: Node | None, category_id: int | None, excluded: bool) -> _DriverStatement:
    """The EXPLAIN of a filter's matches beside all the pictures (an Append of the two scans), compiled
    once per filter."""
    part = partition(instance_id)
    matching = sa.select(sa.literal(1)).select_from(part).where(*_conditions(part, filter, category_id, excluded))
    scans = _DriverStatement.of(sa.union_all(matching, sa.select(sa.literal(1)).select_from(part)))
    return _DriverStatement(f"EXPLAIN (FORMAT JSON) {scans.text}", scans.defaults, scans.processors)


@contextmanager
def _breadth(conn: sa.Connection, breadth: int) -> Iterator[None]:
    """hnsw.ef_search at ``breadth`` for the statements inside, then back to the connection's default."""
    if breadth == DEFAULT_BREADTH:
        yield
        return
    conn.exec_driver_sql(f"SET hnsw.ef_search = {int(breadth)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"SET hnsw.ef_search = {DEFAULT_BREADTH}")


EXCLUDED = "excluded_product"  # the bound parameter of the product a search leaves out


def _conditions(part: sa.TableClause, filter: Node | None, category_id: int | None, excluded: bool = False) -> list:
    return (
        ([] if filter is None else [to_sql(filter, part)])
        + ([] if category_id is None else [part.c.category_id == category_id])
        + ([part.c.product_id != sa.bindparam(EXCLUDED, "", type_=sa.Text)] if excluded else [])
    )


def vector(part: sa.TableClause, query: np.ndarray | StoredPicture, dim: int, name: str = "q"):
    """A query vector as a bound, cast SQL expression (halfvec, as the stored vectors are, migration 0018); a
    stored picture's as a subquery."""
    if isinstance(query, StoredPicture):
        return _stored_vector(part, dim, query.column, key_digest(query.product_id, query.pic_name))
    return halfvec_parameter(name, query, dim)


def walk_statement(part: sa.TableClause, dim: int, query, limit: int, conditions: list) -> sa.Select:
    """The HNSW walk: ``query`` is a vector expression (see vector()), ``conditions`` SQL expressions."""
    # The cast matches the partition's expression index; without it the index is not used.
    distance = cosine_distance(sa.cast(part.c.embedding, Halfvec(dim)), query)
    score = sa.func.imagesearch.cosine_score(distance).label("score")
    return sa.select(*result_columns(part), score).where(*conditions).order_by(distance).limit(limit)


def _exact_statement(
    part: sa.TableClause, query, limit: int, conditions: list,
    silhouette_queries: list, silhouette_margin: float, keypoints_for: int,
) -> sa.Select:
    # No cast: the planner cannot use the HNSW index, so it finds the matching rows by their attributes
    # and scores each of them.
    distance = cosine_distance(part.c.embedding, query)
    if silhouette_queries:
        # least() skips NULLs: a picture stored without a silhouette ranks by its embedding.
        margin = sa.literal(float(silhouette_margin))
        distance = sa.func.least(
            distance, *(cosine_distance(part.c.silhouette, s) + margin for s in silhouette_queries)
        )
    if not keypoints_for:
        score = sa.func.imagesearch.cosine_score(distance).label("score")
        return sa.select(*result_columns(part), score).where(*conditions).order_by(distance).limit(limit)
    best = (
        sa.select(part.c.key_digest, distance.label("distance"))
        .where(*conditions)
        .order_by(distance)
        .limit(limit)
        .subquery("best")
    )
    return _best_rows(part, best, keypoints_for)


def _fused_statement(
    part: sa.TableClause, dim: int, query, limit: int,
    silhouette_queries: list, silhouette_margin: float, keypoints_for: int,
) -> sa.Select:
    # Each query vector walks its own index for its ``limit`` nearest; a picture in the fused top ``limit``
    # is in the top ``limit`` of the vector that gives its least distance, so the union holds them all.
    distance = cosine_distance(sa.cast(part.c.embedding, Halfvec(dim)), query)
    no_margin = sa.literal(0.0).label("margin")
    branches = [sa.select(part.c.key_digest, distance.label("distance"), no_margin).order_by(distance).limit(limit)]
    margin = sa.literal(float(silhouette_margin)).label("margin")
    for s in silhouette_queries:
        d = cosine_distance(sa.cast(part.c.silhouette, Halfvec(dim)), s)
        # Ordered by the bare distance (the index's expression) and returning it, so that each row's distance
        # is computed once (returning d + margin computed it twice); the margin is added in the ranking.
        branches.append(sa.select(part.c.key_digest, d.label("distance"), margin).order_by(d).limit(limit))
    hits = sa.union_all(*branches).subquery("hits")
    least = sa.func.min(hits.c.distance + hits.c.margin)
    best = (
        sa.select(hits.c.key_digest, least.label("distance"))
        .group_by(hits.c.key_digest)
        .order_by(least)
        .limit(limit)
        .subquery("best")
    )
    return _best_rows(part, best, keypoints_for)


def _best_rows(part: sa.TableClause, best: sa.Subquery, keypoints_for: int) -> sa.Select:
    """The pictures of ``best`` (key_digest, distance; already cut to the limit, so the join reads
    only the rows returned), best first, with their scores; the first ``keypoints_for`` also with their
    keypoints (up to ~43 kB each, read only for those)."""
    score = sa.func.imagesearch.cosine_score(best.c.distance).label("score")
    keypoints = []
    if keypoints_for:
        rank = sa.func.row_number().over(order_by=best.c.distance)
        keypoints = [sa.case((rank <= keypoints_for, part.c.keypoints)).label("keypoints")]
    return (
        sa.select(*result_columns(part), score, *keypoints)
        .join_from(part, best, part.c.key_digest == best.c.key_digest)
        .order_by(best.c.distance)
    )


def labelled_neighbours(
    conn: sa.Connection, instance_id: int, dim: int, query: np.ndarray, k: int
) -> list[tuple[int, float]]:
    """(category, score) of the ``k`` nearest pictures whose category a user gave.

    Approximate on purpose (it feeds a vote): the HNSW index with the connection's iterative scan keeps
    looking past unlabelled pictures until it has ``k`` labelled ones or hits hnsw.max_scan_tuples.
    """
    part = partition(instance_id)
    distance = cosine_distance(sa.cast(part.c.embedding, Halfvec(dim)), halfvec_parameter("q", query, dim))
    rows = conn.execute(
        sa.select(part.c.category_id, sa.func.imagesearch.cosine_score(distance))
        .where(part.c.category_given)
        .order_by(distance)
        .limit(k)
    )
    return [(int(category), float(score)) for category, score in rows]


