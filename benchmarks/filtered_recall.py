"""Recall of filtered searches with held-out query vectors, at several HNSW breadths (hnsw.ef_search).

    python benchmarks/filtered_recall.py [--rows 100000] [--queries 200] [--ef auto,100,200,400]
                                         [--fractions 1,0.1,0.01,0.001] [--json] [--keep] [--instance NAME]

benchmarks/filtered_search.py queries with stored pictures, which the walk finds easily; here each query is
a stored vector with noise added (0.8 per coordinate before normalising, as the vectors themselves were
made), so it is not in the index. The store's own search (picture_search.nearest: its plan per filter) runs
with `int_attr < K` at each of --fractions, its HNSW walks at each breadth of --ef in turn: `auto` is the
store's own choice (walk_breadth: from the filter's estimated share), a number that hnsw.ef_search for every
walk (the exact-scan threshold unchanged), `exact` an exact scan of the matches at every share. Recall@10
is against a brute-force numpy scan of the matching rows. --keep and --instance as in
benchmarks/filtered_search.py (an instance of either serves both). The questions it answers: what breadth each
selectivity needs for recall >= 0.95, and where an exact scan costs less (the search-speed issue).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import exact_nearest, measured_instance, reuse_options, summary_ms  # noqa: E402
from benchmarks.filtered_search import MODULUS, instance_id_of, load  # noqa: E402
from benchmarks.search import DIM, clustered_vectors  # noqa: E402
from benchmarks.served import emit  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402
from imagesearch_pg.store.filters import parse_filter  # noqa: E402



@contextmanager
def breadth(choice: str):
    """The walks' hnsw.ef_search: the store's own choice (``auto``), a fixed number, or ``exact`` (every
    filtered search scores its matches exactly)."""
    if choice == "auto":
        yield
        return
    chosen, fixed = picture_search.walk_breadth, None if choice == "exact" else int(choice)
    picture_search.walk_breadth = (
        lambda expected: None if expected.matching <= picture_search.EXACT_SCAN_MAX_ROWS else fixed
    )
    try:
        yield
    finally:
        picture_search.walk_breadth = chosen


def walks_the_index(conn, instance_id: int, parsed, query, ef: int) -> bool:
    """Whether the planner runs a filtered search as an HNSW index scan at breadth ``ef`` (pgvector's cost
    estimate grows with ef_search, so past some breadth it may prefer scanning the matches exactly)."""
    walk = picture_search._walk(instance_id, DIM, False, parsed, None)
    explain = picture_search._DriverStatement(f"EXPLAIN (FORMAT JSON) {walk.text}", walk.defaults, walk.processors)
    conn.exec_driver_sql(f"SET hnsw.ef_search = {int(ef)}")
    try:
        plan = explain.execute(conn, {"q": query, "limit": 10})[0][0]
    finally:
        conn.exec_driver_sql(f"SET hnsw.ef_search = {picture_search.DEFAULT_BREADTH}")
    return "_embedding_hnsw" in json.dumps(plan)


def held_out_queries(vectors: np.ndarray, count: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    base = vectors[rng.choice(len(vectors), size=count, replace=False)]
    noisy = np.maximum(base * 1.0 + 0.8 / np.sqrt(DIM) * rng.standard_normal(base.shape).astype(np.float32), 0)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="auto,100,200,400")
    parser.add_argument("--fractions", default="1,0.1,0.01,0.001")
    parser.add_argument("--json", action="store_true")
    reuse_options(parser, "the same --rows")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    vectors = clustered_vectors(args.rows)
    service = ImageSearch.open()
    with measured_instance(service, args, "bench-recall", lambda name: load(service, name, vectors, log), log) as name:
        instance_id = instance_id_of(service, name)
        queries = held_out_queries(vectors, args.queries)
        attribute = np.arange(args.rows) % MODULUS
        report = {"rows": args.rows, "queries": args.queries, "results": []}
        for fraction in (float(f) for f in args.fractions.split(",")):
            bound = int(round(fraction * MODULUS))
            matching = np.nonzero(attribute < bound)[0]
            truth = exact_nearest(vectors[matching], matching, queries)
            parsed = parse_filter(f"int_attr < {bound}")
            expected = None
            for ef in args.ef.split(","):
                times, recalls, short = [], [], 0
                with service.database.reading() as conn, breadth(ef):
                    if fraction < 1:
                        expected = picture_search.estimate(conn, instance_id, parsed, None)
                    unfiltered = int(ef) if ef.isdigit() else picture_search.DEFAULT_BREADTH
                    conn.execute(sa.text(f"SET hnsw.ef_search = {unfiltered}"))
                    for q, nearest in zip(queries, truth):
                        began = time.perf_counter()
                        rows = picture_search.nearest(conn, instance_id, DIM, q, 10, parsed if fraction < 1 else None)
                        times.append(time.perf_counter() - began)
                        found = {int(r.product_id[1:]) for r in rows}
                        short += len(rows) < 10
                        recalls.append(len(found & nearest) / 10)
                with breadth(ef):
                    used = picture_search.walk_breadth(expected) if fraction < 1 else unfiltered
                if fraction < 1 and used is not None:
                    with service.database.reading() as conn:
                        index = walks_the_index(conn, instance_id, parsed, queries[0], used)
                    used = f"{used} ({'HNSW walk' if index else 'planner: exact scan'})"
                entry = {"fraction": fraction, "ef_search": ef, "walk_breadth": used or "exact scan",
                         "recall_at_10": round(float(np.mean(recalls)), 4), "short_answers": short, **summary_ms(times)}
                log(entry)
                report["results"].append(entry)
        emit(report, args.json)


if __name__ == "__main__":
    main()
