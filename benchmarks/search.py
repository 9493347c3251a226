"""SearchImageByName latency and recall@10 on many stored vectors, beside the same query as raw pgvector SQL.

    python benchmarks/search.py [--rows 100000] [--queries 300] [--json] [--keep]

Uses the configured database (IMAGESEARCH_DATABASE_URL, else the embedded server under IMAGESEARCH_HOME),
in a temporary instance that is deleted afterwards (unless --keep). The stored vectors are synthetic:
1280-d, non-negative (ReLU-like, as the default encoder's), in 1,000 Gaussian clusters, L2-normalised;
encoding 100,000 real pictures would take the encoder ~10 minutes and measure the encoder, not the search.
Exact top-10 comes from a brute-force numpy scan of the same vectors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import exact_nearest, summary_ms  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import bulk_load  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402

DIM = 1280


def clustered_vectors(rows: int, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """``rows`` unit vectors around ``clusters`` random centres (benchmarks/scale.py keeps about 100 a
    cluster, where the 10th nearest neighbour stands out from the 100th as it does for real pictures)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    out = np.empty((rows, DIM), np.float32)
    for begin in range(0, rows, 10_000):
        end = min(rows, begin + 10_000)
        labels = rng.integers(0, len(centres), end - begin)
        block = centres[labels] + 0.8 * rng.standard_normal((end - begin, DIM)).astype(np.float32)
        np.maximum(block, 0, out=block)
        out[begin:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def recall(found: list[list[int]], truth: list[set[int]]) -> float:
    return float(np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark instance")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    service = ImageSearch.open()
    name = f"bench-search-{int(time.time())}"
    service.create_instance(name, "generic", capacity=max(args.rows, 1))
    try:
        log(f"generating {args.rows} vectors ...")
        vectors = clustered_vectors(args.rows)
        instance_id = service.instances.cached(name).id
        began = time.perf_counter()
        with service.database.transaction() as conn:
            bulk_load.bulk_load(
                conn, instance_id, ((f"p{i}", f"p{i}.jpg", 88888888, vectors[i]) for i in range(args.rows)),
                progress=lambda n: n % 20_000 == 0 and log(f"  loaded {n}"),
            )
        load_seconds = time.perf_counter() - began
        log(f"loaded and indexed in {load_seconds:.1f} s")

        rng = np.random.default_rng(1)
        query_rows = rng.choice(args.rows, size=args.queries, replace=False)
        truth = exact_nearest(vectors, np.arange(len(vectors)), vectors[query_rows])

        # Raw pgvector SQL: one statement on one open connection, the same plan the service asks for.
        raw_sql = (
            f"SELECT product_id FROM imagesearch.pictures_{instance_id} "
            f"ORDER BY embedding::halfvec({DIM}) <=> (SELECT embedding::halfvec({DIM}) "
            f"FROM imagesearch.pictures_{instance_id} WHERE product_id = %s AND pic_name = %s) LIMIT 10"
        )
        url = service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as raw:
            for setting, value in picture_search.HNSW_SETTINGS.items():
                raw.execute(f"SET {setting} = {value}")

            def run_raw(row: int) -> list[int]:
                return [int(r[0][1:]) for r in raw.execute(raw_sql, (f"p{row}", f"p{row}.jpg"), prepare=True)]

            def run_service(row: int) -> list[int]:
                result = service.search_by_name(name, f"p{row}", f"p{row}.jpg", num=10)
                return [int(a.product_id[1:]) for a in result.matches]

            for row in query_rows[:50]:  # warm caches for both
                run_raw(int(row)), run_service(int(row))
            results = {}
            for label, run in (("raw_sql", run_raw), ("service", run_service)):
                times, found = [], []
                for row in query_rows:
                    began = time.perf_counter()
                    found.append(run(int(row)))
                    times.append(time.perf_counter() - began)
                results[label] = {**summary_ms(times), "recall_at_10": round(recall(found, truth), 4)}
        report = {
            "rows": args.rows,
            "dim": DIM,
            "queries": args.queries,
            "load_and_index_s": round(load_seconds, 1),
            **results,
            "service_over_raw_p50": round(results["service"]["p50_ms"] / results["raw_sql"]["p50_ms"], 2),
        }
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    finally:
        if not args.keep:
            service.delete_instance(name)
        service.close()


if __name__ == "__main__":
    main()
