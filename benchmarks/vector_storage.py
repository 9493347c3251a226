"""How to store the pictures' vectors: full-precision vector, halfvec, or a projection, measured side by side.

    python benchmarks/vector_storage.py [--rows 100000] [--queries 300] [--json]

Each candidate is a scratch table (in a schema of its own, dropped afterwards) of the same synthetic
1280-d clustered vectors (as benchmarks/search.py makes), with an HNSW index as the service builds it
(m=16, ef_construction=64, cosine) and the service's search settings. For each: bytes a row takes in the
heap and in the index, the build time, the p50 of a nearest-10 query, and recall@10 against the exact
full-precision answer (numpy). The projection is PCA fitted on the stored vectors, kept as halfvec.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import exact_nearest, summary_ms  # noqa: E402
from benchmarks.search import DIM, clustered_vectors, recall  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402

SCHEMA = "vector_storage_bench"


def candidates(vectors: np.ndarray, projected_dims: list[int]) -> dict[str, tuple[str, int, object]]:
    """name -> (pgvector type, dimension, what turns a picture's vectors into the stored ones)."""
    out = {"vector": ("vector", DIM, lambda v: v), "halfvec": ("halfvec", DIM, lambda v: v)}
    mean = vectors.mean(axis=0)
    _, _, components = np.linalg.svd(vectors[:: max(1, len(vectors) // 20_000)] - mean, full_matrices=False)
    for dims in projected_dims:
        def project(v, basis=components[:dims].T):
            projected = (v - mean) @ basis
            return (projected / np.linalg.norm(projected, axis=1, keepdims=True)).astype(np.float32)
        out[f"pca{dims}-halfvec"] = ("halfvec", dims, project)
    return out


def measure(conn: psycopg.Connection, name: str, kind: str, dim: int, stored: np.ndarray, queries: np.ndarray,
            truth: list[set[int]], log) -> dict:
    table = f"{SCHEMA}.{name.replace('-', '_')}"
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, product_id text, pic_name text, category_id int,"
                 f" int_attr int, str_attr text, embedding {kind}({dim}))")
    conn.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE PLAIN")
    wrap = HalfVector if kind == "halfvec" else (lambda v: v)
    with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text", "text", "int4", "int4", "text", kind])
        for i, v in enumerate(stored):
            copy.write_row((i, f"p{i}", f"p{i}.jpg", 88888888, i % 100, f"s{i % 7}", wrap(v)))
    began = time.perf_counter()
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding {kind}_cosine_ops) WITH (m = 16, ef_construction = 64)")
    build = time.perf_counter() - began
    conn.execute(f"VACUUM ANALYZE {table}")
    heap = conn.execute(f"SELECT pg_table_size('{table}')").fetchone()[0]
    index = conn.execute(f"SELECT pg_indexes_size('{table}')").fetchone()[0]
    sql = f"SELECT id FROM {table} ORDER BY embedding <=> %s::{kind}({dim}) LIMIT 10"
    times, found = [], []
    for q in queries[:30]:
        conn.execute(sql, (wrap(q),), prepare=True)
    for q in queries:
        began = time.perf_counter()
        found.append([r[0] for r in conn.execute(sql, (wrap(q),), prepare=True)])
        times.append(time.perf_counter() - began)
    result = {"storage": name, "dim": dim, "heap_bytes_per_row": round(heap / len(stored)),
              "index_bytes_per_row": round(index / len(stored)), "build_s": round(build, 1),
              **summary_ms(times), "recall_at_10": round(recall(found, truth), 4)}
    log(json.dumps(result))
    conn.execute(f"DROP TABLE {table}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--projections", default="640,384", help="PCA dimensions to try, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    service = ImageSearch.open()
    url = service.database.libpq_url()
    service.close()
    vectors = clustered_vectors(args.rows)
    rng = np.random.default_rng(1)
    query_rows = rng.choice(args.rows, size=args.queries, replace=False)
    # Queries are new pictures near stored ones (a stored vector plus a little noise), scored against the
    # exact full-precision answer whatever the candidate stores.
    queries = vectors[query_rows] + 0.02 * rng.standard_normal((args.queries, DIM)).astype(np.float32)
    queries = np.maximum(queries, 0) / np.linalg.norm(np.maximum(queries, 0), axis=1, keepdims=True)
    truth = exact_nearest(vectors, np.arange(len(vectors)), queries)
    dims = [int(d) for d in args.projections.split(",") if d]
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute("SET maintenance_work_mem = '4GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        for setting, value in picture_search.HNSW_SETTINGS.items():
            conn.execute(f"SET {setting} = {value}")
        try:
            for name, (kind, dim, project) in candidates(vectors, dims).items():
                log(f"{name}: loading {args.rows} rows ...")
                results.append(measure(conn, name, kind, dim, project(vectors), project(queries), truth, log))
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    report = {"rows": args.rows, "queries": args.queries, "candidates": results}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
