"""The SQL surface (docs/sql.md): search latency beside the service layer's, synced-table latency, and
duplicate_pairs at scale.

    IMAGESEARCH_HOME=... python benchmarks/sql_surface.py [--rows 100000] [--queries 200] [--inserts 20]
        [--planted 500] [--trigger-rows 10000] [--trigger-rounds 5] [--parts search,sync,trigger,duplicates]
        [--json FILE] [--keep] [--instance NAME]

- search: a generic instance of --rows synthetic vectors (benchmarks/search.py's: 1280-d, 1,000 clusters)
  with IntAttr = i % 10000, so `int_attr < K` selects K/10000 of them. For each selectivity (no filter,
  10 %, 1 %, 0.1 %) and each query (the stored vector of a random picture, Num=10), alternating:
  (sql) `SELECT * FROM imagesearch.search_by_vector(...)` from a psycopg client, vector bound in binary;
  (service) ImageSearch.search_by_vector, the service layer's whole search (the same plan, its own
  statements); (queries) the service layer's own queries for the same rows: picture_search.estimate and
  nearest on a reading connection (the EXPLAIN and the walk or scan, prepared; no checks, no DocsFound
  count, no result objects; the SQL function computes no DocsFound either); (raw) the bare HNSW walk statement pgvector needs for the unfiltered case.
  Each column gets one untimed pass first. Target: sql <= 1.2x the service layer's query.
- sync: a table with a bytea picture column synced to a fresh instance; a real `imagesearch worker`
  process; rows inserted one at a time (a real bench picture each, 1 s apart, the machine otherwise idle),
  each timed from its commit until search_by_picture finds it. Target: p50 <= 2 s.
- trigger: what a sync costs the user's own statements, as a LOGIN role granted imagesearch_writer: one
  INSERT of --trigger-rows rows (2 kB pictures) and one UPDATE of a synced attribute of all of them, into a
  synced table and into a plain one, alternating, --trigger-rounds rounds, each rolled back; the best round's
  microseconds a row, and the difference.
- duplicates: --planted near copies (the stored vector of a random picture plus a little noise, cosine
  about 0.99 to it) are added to the search part's instance, then imagesearch.duplicate_pairs(instance,
  0.95) is timed; the planted pairs found are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import measured_instance, reuse_options, summary_ms  # noqa: E402
from benchmarks.filtered_search import MODULUS, load  # noqa: E402
from benchmarks.search import clustered_vectors  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402
from imagesearch_pg.store.filters import parse_filter  # noqa: E402

FRACTIONS = (None, 0.1, 0.01, 0.001)
BENCH_PICTURES = Path.home() / ".cache/imagesearch-bench/bench/logo-logos/gallery"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stored_vectors(conn: psycopg.Connection, instance_id: int, count: int, seed: int) -> list[np.ndarray]:
    rng = random.Random(seed)
    total = conn.execute(f"SELECT count(*) FROM imagesearch.pictures_{instance_id}").fetchone()[0]
    picks = [f"p{rng.randrange(total)}" for _ in range(count)]
    rows = conn.execute(f"SELECT product_id, embedding FROM imagesearch.pictures_{instance_id} WHERE product_id = ANY(%s)",
                        (picks,)).fetchall()
    by_key = dict(rows)
    return [np.asarray(by_key[p].to_numpy(), dtype=np.float32) for p in picks]


def search_part(service: ImageSearch, name: str, queries: int) -> dict:
    instance = service.instances.cached(name)
    url = service.database.libpq_url()
    results = {}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 80")
        vectors = stored_vectors(conn, instance.id, queries, seed=7)
        half = f"halfvec({instance.embedding_dim})"
        raw = (f"SELECT product_id, pic_name, 1 - (embedding::{half} <=> %s::{half})"
               f" FROM imagesearch.pictures_{instance.id} ORDER BY embedding::{half} <=> %s::{half} LIMIT 10")
        for fraction in FRACTIONS:
            text = None if fraction is None else f"int_attr < {int(MODULUS * fraction)}"
            sql = "SELECT * FROM imagesearch.search_by_vector(%s, %s, num => 10, filter => %s)"

            def run_sql(v):
                return conn.execute(sql, (name, v, text), binary=True).fetchall()

            def run_service(v):
                return service.search_by_vector(name, v, num=10, filter=text).matches

            def run_raw(v):
                return conn.execute(raw, (v, v), binary=True).fetchall()

            parsed = None if text is None else parse_filter(text)

            def run_queries(v):
                with service.database.reading() as read:
                    expected = picture_search.estimate(read, instance.id, parsed, None)
                    return picture_search.nearest(read, instance.id, instance.embedding_dim, v, 10, parsed, None,
                                                  expected=expected)

            columns = {"sql": run_sql, "service": run_service, "queries": run_queries}
            if fraction is None:
                columns["raw"] = run_raw
            for run in columns.values():  # one untimed pass each
                for v in vectors[: min(len(vectors), 50)]:
                    run(v)
            times = {column: [] for column in columns}
            same = 0
            for at, v in enumerate(vectors):
                order = list(columns) if at % 2 == 0 else list(reversed(columns))
                answers = {}
                for column in order:
                    began = time.perf_counter()
                    answers[column] = columns[column](v)
                    times[column].append(time.perf_counter() - began)
                same += [r[0] for r in answers["sql"]] == [m.product_id for m in answers["service"]]
            label = "none" if fraction is None else f"{fraction:.1%}"
            figures = {column: summary_ms(seconds) for column, seconds in times.items()}
            figures["sql_over_service_p50"] = round(figures["sql"]["p50_ms"] / figures["service"]["p50_ms"], 3)
            figures["sql_over_queries_p50"] = round(figures["sql"]["p50_ms"] / figures["queries"]["p50_ms"], 3)
            figures["same_answer"] = f"{same}/{len(vectors)}"
            results[label] = figures
            log(f"filter {label}: {figures}")
    return results


def sync_part(service: ImageSearch, inserts: int) -> dict:
    name = f"bench-sync-{int(time.time())}"
    service.create_instance(name, "generic")
    pictures = sorted(BENCH_PICTURES.iterdir())[:inserts]
    url = service.database.libpq_url()
    env = {**os.environ, "IMAGESEARCH_DATABASE_URL": url}
    worker = subprocess.Popen([sys.executable, "-m", "imagesearch_pg", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latencies = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS bench_sync CASCADE")
            conn.execute("CREATE SCHEMA bench_sync")
            conn.execute("CREATE TABLE bench_sync.products (id integer PRIMARY KEY, photo bytea)")
            conn.execute("SELECT imagesearch.sync_table(%s, 'bench_sync.products', ARRAY['id'], 'photo')", (name,))
            time.sleep(5.0)  # the worker has started and listens
            for at, path in enumerate(pictures):
                conn.execute("INSERT INTO bench_sync.products VALUES (%s, %s)", (at, path.read_bytes()))
                began = time.perf_counter()
                while time.perf_counter() - began < 60 and not _stored(conn, name, at):
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - began)
                time.sleep(1.0)
            conn.execute("DROP SCHEMA bench_sync CASCADE")
    finally:
        worker.terminate()
        worker.wait(30)
        service.delete_instance(name)
    figures = summary_ms(latencies)
    figures["max_ms"] = round(max(latencies) * 1000, 1)
    log(f"synced inserts: {figures}")
    return figures


TRIGGER_ROLE = "bench_trigger_app"


def trigger_part(service: ImageSearch, rows: int, rounds: int) -> dict:
    """What a sync adds to the user's own statements, as a LOGIN role granted imagesearch_writer (a superuser
    would skip the queue's row-level-security check): the same INSERT of ``rows`` rows (a 2 kB picture
    each), then an UPDATE of the synced attribute of all of them, into a table synced to an instance and
    into one that is not; rounds alternate, each rolled back."""
    name = f"bench-trigger-{int(time.time())}"
    service.create_instance(name, "generic")
    url = service.database.libpq_url()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS bench_trigger CASCADE")
        admin.execute(f"DROP ROLE IF EXISTS {TRIGGER_ROLE}")
        admin.execute(f"CREATE ROLE {TRIGGER_ROLE} LOGIN IN ROLE imagesearch_writer")
        admin.execute(f"CREATE SCHEMA bench_trigger AUTHORIZATION {TRIGGER_ROLE}")
    tables = ("plain", "synced")
    times: dict[str, list[float]] = {f"{t}_{s}": [] for t in tables for s in ("insert", "update")}
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(url, user=TRIGGER_ROLE)) as conn:
            for table in tables:
                conn.execute(f"CREATE TABLE bench_trigger.{table} (id integer PRIMARY KEY, price integer, photo bytea)")
            conn.execute("SELECT imagesearch.sync_table(%s, 'bench_trigger.synced', ARRAY['id'], 'photo',"
                         " '{\"IntAttr\": \"price\"}')", (name,))
            conn.commit()
            picture = os.urandom(2048)
            for at in range(rounds + 1):  # the first round untimed
                for table in tables if at % 2 == 0 else reversed(tables):
                    began = time.perf_counter()
                    conn.execute(f"INSERT INTO bench_trigger.{table} SELECT i, i, %s FROM generate_series(1, %s) i",
                                 (picture, rows))
                    inserted = time.perf_counter()
                    conn.execute(f"UPDATE bench_trigger.{table} SET price = price + 1")
                    updated = time.perf_counter()
                    conn.rollback()
                    if at:
                        times[f"{table}_insert"].append(inserted - began)
                        times[f"{table}_update"].append(updated - inserted)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS bench_trigger CASCADE")
            admin.execute(f"DROP ROLE IF EXISTS {TRIGGER_ROLE}")
        service.delete_instance(name)
    per_row = {column: round(min(seconds) * 1e6 / rows, 1) for column, seconds in times.items()}
    figures = {"rows": rows, "rounds": rounds, "best_us_per_row": per_row,
               "sync_adds_us_per_row": {s: round(per_row[f"synced_{s}"] - per_row[f"plain_{s}"], 1)
                                        for s in ("insert", "update")}}
    log(f"synced table's statements: {figures}")
    return figures


def _stored(conn: psycopg.Connection, name: str, product: int) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM imagesearch.picture_list WHERE instance = %s AND product_id = %s)",
                        (name, str(product))).fetchone()[0]


def duplicates_part(service: ImageSearch, name: str, planted: int) -> dict:
    from imagesearch_pg.store import pictures as picture_store

    instance = service.instances.cached(name)
    rng = np.random.default_rng(11)
    with psycopg.connect(service.database.libpq_url(), autocommit=True) as conn:
        register_vector(conn)
        originals = stored_vectors(conn, instance.id, planted, seed=13)
    rows = []
    for at, vector in enumerate(originals):
        copy = vector + rng.normal(0, 0.003, vector.shape).astype(np.float32)
        rows.append({"product_id": f"copy{at}", "pic_name": "0", "category_id": 88888888,
                     "embedding": copy / np.linalg.norm(copy)})
    with service.database.transaction() as conn:
        picture_store.upsert_many(conn, instance.id, rows)
        conn.exec_driver_sql(f"ANALYZE imagesearch.pictures_{instance.id}")
    with psycopg.connect(service.database.libpq_url(), autocommit=True) as conn:
        began = time.perf_counter()
        found = conn.execute("SELECT product_id_a, product_id_b FROM imagesearch.duplicate_pairs(%s, 0.95)",
                             (name,)).fetchall()
        seconds = time.perf_counter() - began
    copies = sum(1 for a, b in found if a.startswith("copy") != b.startswith("copy"))
    pictures = service.describe_instance(name).picture_count
    figures = {"pictures": pictures, "pairs": len(found), "planted": planted, "planted_found": copies,
               "seconds": round(seconds, 1), "ms_per_picture": round(seconds * 1000 / pictures, 3)}
    log(f"duplicate_pairs: {figures}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--inserts", type=int, default=20)
    parser.add_argument("--planted", type=int, default=500)
    parser.add_argument("--trigger-rows", type=int, default=10_000)
    parser.add_argument("--trigger-rounds", type=int, default=5)
    parser.add_argument("--parts", default="search,sync,trigger,duplicates")
    parser.add_argument("--json", metavar="FILE")
    reuse_options(parser, "the same --rows")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    service = ImageSearch.open()
    results: dict = {"rows": args.rows, "nproc": os.cpu_count(), "load_at_start": [round(v, 2) for v in os.getloadavg()]}
    if "sync" in parts:
        results["sync"] = sync_part(service, args.inserts)
    if "trigger" in parts:
        results["trigger"] = trigger_part(service, args.trigger_rows, args.trigger_rounds)
    if parts & {"search", "duplicates"}:
        def make(name):
            load(service, name, clustered_vectors(args.rows, seed=1), log)

        with measured_instance(service, args, "bench-sql", make, log) as name:
            if "search" in parts:
                results["search"] = search_part(service, name, args.queries)
            if "duplicates" in parts:
                results["duplicates"] = duplicates_part(service, name, args.planted)
    else:
        service.close()
    results["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
