"""Where the service's time goes on SearchImageByName: a profile of the search path, grouped by package,
with the database round trips of one search counted.

    python benchmarks/search_profile.py [--rows 10000] [--searches 500] [--json]

An instance of --rows synthetic vectors (benchmarks/search.py's); --searches searches by name after 100
warm-up ones, first timed, then under cProfile. Time inside psycopg's wait() is time waiting on the server
(round trips); the statements one search sends are counted at psycopg's Cursor.execute (the store runs its
search statements on the driver's cursor) and the checkouts of the read pool, then replayed as they are on a
raw psycopg connection beside the minimal raw search.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.served import benchmark_instance, emit  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402


def package(filename: str) -> str:
    for name in ("sqlalchemy", "psycopg", "imagesearch_pg"):
        if name in filename:
            return name
    return "python" if filename == "~" or "/lib/python3" in filename else "other"


def raw_baselines(service, name: str, statements: list, args) -> dict:
    """On one open autocommit psycopg connection, prepared: the minimal search (product ids only, as
    benchmarks/search.py's raw SQL) and the service's own statements of one search replayed as they are."""
    part = f"imagesearch.pictures_{service.instances.cached(name).id}"
    minimal = (f"SELECT product_id FROM {part} ORDER BY embedding::halfvec(1280) <=> (SELECT embedding::halfvec(1280) "
               f"FROM {part} WHERE product_id = %s AND pic_name = '0') LIMIT 10")
    url = service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    timings = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for setting, value in picture_search.HNSW_SETTINGS.items():
            conn.execute(f"SET {setting} = {value}")
        for label, run in (
            ("raw_minimal_ms", lambda i: conn.execute(minimal, (f"p{i % args.rows}",), prepare=True).fetchall()),
            ("raw_service_statements_ms", lambda i: [conn.execute(text, params, prepare=True).fetchall()
                                                     for text, params in statements]),
        ):
            for i in range(100):
                run(i)
            began = time.perf_counter()
            for i in range(args.searches):
                run(i)
            timings[label] = round((time.perf_counter() - began) * 1000 / args.searches, 3)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    with benchmark_instance("profile", args.rows, 100_000, log) as (_, service, name):
        search = lambda i: service.search_by_name(name, f"p{i % args.rows}", "0")  # noqa: E731
        for i in range(100):
            search(i)
        began = time.perf_counter()
        for i in range(args.searches):
            search(i)
        per_search_ms = (time.perf_counter() - began) * 1000 / args.searches

        sent = {"statements": [], "checkouts": 0}
        reader = service.database.reader
        execute = psycopg.Cursor.execute

        def statement(cursor, query, params=None, **kwargs):  # every statement, SQLAlchemy's or the store's own
            sent["statements"].append((query, params))
            return execute(cursor, query, params, **kwargs)

        checkout = lambda *a: sent.__setitem__("checkouts", sent["checkouts"] + 1)  # noqa: E731
        sa.event.listen(reader.pool, "checkout", checkout)
        psycopg.Cursor.execute = statement
        try:
            search(0)
        finally:
            psycopg.Cursor.execute = execute
            sa.event.remove(reader.pool, "checkout", checkout)
        per_search = {"statements": len(sent["statements"]), "checkouts": sent["checkouts"]}
        raw = raw_baselines(service, name, sent["statements"], args)

        profile = cProfile.Profile()
        profile.enable()
        for i in range(args.searches):
            search(i)
        profile.disable()
        stats = pstats.Stats(profile).stats
        by_package: dict[str, float] = {}
        waiting = 0.0
        for (filename, _, function), (_, _, own, _, _) in stats.items():
            by_package[package(filename)] = by_package.get(package(filename), 0.0) + own
            if "psycopg" in filename and function == "wait":
                waiting += own
        report = {
            "rows": args.rows,
            "per_search_ms": round(per_search_ms, 3),
            "statements_per_search": per_search["statements"],
            "connection_checkouts_per_search": per_search["checkouts"],
            "profiled_ms_per_search": {k: round(v * 1000 / args.searches, 3)
                                       for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
            "waiting_on_server_ms_per_search": round(waiting * 1000 / args.searches, 3),
            **raw,
        }
    emit(report, args.json)


if __name__ == "__main__":
    main()
