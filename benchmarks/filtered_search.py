"""Filtered search at every selectivity: results returned, recall@10 and latency, beside the naive query.

    python benchmarks/filtered_search.py [--rows 200000] [--queries 200] [--json] [--keep] [--instance NAME]

A temporary generic instance holds --rows synthetic vectors (those of benchmarks/search.py: 1280-d,
non-negative, 1,000 Gaussian clusters) with IntAttr = i % 10000, so `int_attr < K` selects K/10000 of the
rows, spread over every cluster. For each selectivity (100 %, 10 %, 1 %, 0.1 %, 0.01 %) the queries are
SearchImageByName calls of the service (Num=10, the filter) with the stored vector of a random picture;
recall@10 is against a brute-force numpy scan of the matching rows. "naive" is the plain pgvector query,
`WHERE <filter> ORDER BY embedding <=> q LIMIT 10` on pgvector's defaults (hnsw.ef_search = 40, no iterative
scan), whatever plan the PostgreSQL planner picks for it. --keep leaves the instance (and prints its name);
--instance NAME reuses such an instance instead of loading a new one (same --rows).
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

from benchmarks.common import exact_nearest, measured_instance, reuse_options, summary_ms  # noqa: E402
from benchmarks.search import DIM, clustered_vectors  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import bulk_load  # noqa: E402

FRACTIONS = (1.0, 0.1, 0.01, 0.001, 0.0001)
MODULUS = 10_000


def instance_id_of(service: ImageSearch, name: str) -> int:
    return service.instances.cached(name).id  # InvalidInstance if there is none


def load(service: ImageSearch, name: str, vectors: np.ndarray, log) -> int:
    service.create_instance(name, "generic", capacity=max(len(vectors), 1))
    instance_id = instance_id_of(service, name)
    columns = bulk_load.BULK_COLUMNS + ("int_attr",)
    rows = ((f"p{i}", "0", 88888888, vectors[i], i % MODULUS) for i in range(len(vectors)))
    began = time.perf_counter()
    with service.database.transaction() as conn:
        bulk_load.bulk_load(conn, instance_id, rows, columns=columns,
                            progress=lambda n: n % 50_000 == 0 and log(f"  loaded {n}"))
    log(f"loaded and indexed {len(vectors)} rows in {time.perf_counter() - began:.0f} s")
    return instance_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    reuse_options(parser, "the same --rows")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    log(f"generating {args.rows} vectors ...")
    vectors = clustered_vectors(args.rows)
    service = ImageSearch.open()
    with measured_instance(service, args, "bench-filtered", lambda name: load(service, name, vectors, log), log) as name:
        instance_id = instance_id_of(service, name)
        attribute = np.arange(args.rows) % MODULUS
        rng = np.random.default_rng(2)
        query_rows = rng.choice(args.rows, size=args.queries, replace=False)

        url = service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        naive_sql = (
            f"SELECT product_id FROM imagesearch.pictures_{instance_id} WHERE int_attr < %s "
            f"ORDER BY embedding::halfvec({DIM}) <=> (SELECT embedding::halfvec({DIM}) "
            f"FROM imagesearch.pictures_{instance_id} WHERE product_id = %s AND pic_name = '0') LIMIT 10"
        )

        report = {"rows": args.rows, "selectivities": []}
        with psycopg.connect(url, autocommit=True) as raw:
            raw.execute("SET hnsw.ef_search = 40")  # pgvector's defaults
            raw.execute("SET hnsw.iterative_scan = off")
            for fraction in FRACTIONS:
                bound = int(round(fraction * MODULUS))
                matching = np.nonzero(attribute < bound)[0]
                truth = exact_nearest(vectors[matching], matching, vectors[query_rows])
                text = f"int_attr < {bound}"

                def service_search(row: int) -> list[int]:
                    result = service.search_by_name(name, f"p{row}", "0", num=10, filter=text)
                    return [int(a.product_id[1:]) for a in result.matches]

                def naive_search(row: int) -> list[int]:
                    return [int(r[0][1:]) for r in raw.execute(naive_sql, (bound, f"p{row}"), prepare=True)]

                measured = {}
                for label, run in (("", service_search), ("naive_", naive_search)):
                    for row in query_rows[:10]:
                        run(int(row))  # warm up
                    times, found = [], []
                    for row in query_rows:
                        began = time.perf_counter()
                        found.append(run(int(row)))
                        times.append(time.perf_counter() - began)
                    summary = summary_ms(times)
                    measured.update({
                        f"{label}returned_min": min(len(f) for f in found),
                        f"{label}recall_at_10": round(float(np.mean(
                            [len(set(f) & t) / max(1, len(t)) for f, t in zip(found, truth)])), 4),
                        f"{label}p50_ms": summary["p50_ms"],
                        **({"p99_ms": summary["p99_ms"]} if not label else {}),
                    })
                entry = {"fraction": fraction, "matching": int(len(matching)), **measured}
                log(json.dumps(entry))
                report["selectivities"].append(entry)
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
