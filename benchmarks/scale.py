"""A million pictures in one instance: size on disk, HNSW build, SearchImageByName latency and recall,
filtered search at every selectivity, AddImage while searches run, the server's memory, and real pictures
found among the synthetic ones.

    python benchmarks/scale.py --rows 1000000 [--queries 300] [--real 1000] [--costs 100] [--json]
                               [--maintenance-work-mem 8GB] [--keep] [--instance NAME]

A generic instance gets --rows synthetic vectors (those of benchmarks/search.py: 1280-d, non-negative,
1,000 Gaussian clusters, unit length) with IntAttr = i % 10000, bulk-loaded (binary COPY, then one parallel
HNSW build with the given maintenance_work_mem). Then --real logos of the simple-icons set
(../shared/bench, BENCH_DIR) are added one by one with AddImage while another thread runs SearchImageByName,
and the same logos go into a small instance of their own: their edited copies (the set's "easy" queries)
must find them as well among a million pictures as among themselves.

Searches are SearchImageByName with Num=10 of a random stored synthetic picture, beside the same query
as raw SQL on one open connection; recall@10 is against the exact answer over full-precision float32
vectors (numpy). Filtered: `int_attr < K` selects K/10000 of the synthetic pictures; every answer must hold
min(10, matching) pictures. --costs N adds N logos to an instance of each service type and prints what a
picture costs there, column by column. --keep leaves the million-picture instance; --instance NAME
measures such an instance again (same --rows) without loading it (its build and AddImage figures are then
those of the run that made it, not measured).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import measured_instance, reuse_options, summary_ms  # noqa: E402
from benchmarks.search import DIM, clustered_vectors, recall  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402
from imagesearch_pg.store import bulk_load, picture_search  # noqa: E402

FRACTIONS = (1.0, 0.1, 0.01, 0.001, 0.0001)
MODULUS = 10_000
BENCH = Path(os.environ.get("BENCH_DIR", Path.home() / ".cache/imagesearch-bench")) / "bench/logo-simple-icons"


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def load(service: ImageSearch, name: str, vectors: np.ndarray, real: list[tuple[str, np.ndarray]], work_mem: str,
         built: dict) -> None:
    """The synthetic vectors and the real logos' (loaded as a catalogue would be), then one index build."""
    service.create_instance(name, "generic", capacity=len(vectors) + 100_000)
    instance_id = service.instances.cached(name).id
    rows = itertools.chain(((f"p{i}", "0", 88888888, vectors[i], i % MODULUS) for i in range(len(vectors))),
                           ((f"r-{logo_id}", "0.png", 88888888, vector, None) for logo_id, vector in real))
    total, sent = len(vectors) + len(real), {}

    def progress(n: int) -> None:
        if n % 100_000 == 0:
            log(f"  loaded {n}")
        if n == total:
            sent["at"] = time.perf_counter()

    began = time.perf_counter()
    with service.database.transaction() as conn:
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{work_mem}'")
        settings = dict(conn.exec_driver_sql(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN"
            " ('maintenance_work_mem', 'max_parallel_maintenance_workers', 'shared_buffers')").all())
        bulk_load.bulk_load(conn, instance_id, rows, columns=bulk_load.BULK_COLUMNS + ("int_attr",), progress=progress)
    done = time.perf_counter()
    built.update(load_s=round(sent["at"] - began, 1), build_s=round(done - sent["at"], 1), settings=settings)
    log(f"loaded in {built['load_s']} s, index built in {built['build_s']} s ({settings})")


def logos() -> tuple[list[tuple[str, bytes]], dict[str, list[bytes]]]:
    """The gallery logos that the easy queries (edited copies) look for, as (id, bytes), and those queries
    by target id."""
    if not (BENCH / "manifest.json").exists():
        raise SystemExit(f"no logo set at {BENCH}: build it (../shared/bench/fetch.sh, build_logo_bench.py) or set "
                         "BENCH_DIR, or run with --vectors isotropic --real 0 --added 0 --costs 0")
    manifest = json.loads((BENCH / "manifest.json").read_text())
    queries: dict[str, list[bytes]] = {}
    for q in manifest["queries"]["easy"]:
        queries.setdefault(q["target"], []).append((BENCH / q["path"]).read_bytes())
    paths = {g["id"]: g["path"] for g in manifest["gallery"]}
    return [(t, (BENCH / paths[t]).read_bytes()) for t in queries], queries


def embeddings(service: ImageSearch, logos_: list[tuple[str, bytes]]) -> list[tuple[str, np.ndarray]]:
    """What AddImage would store for each logo on a generic instance (subject detection, the encoder)."""
    probe = f"bench-scale-probe-{int(time.time())}"
    instance = service.create_instance(probe, "generic")
    try:
        ref = service.instances.cached(instance.name)
        return [(logo_id, service.pipeline.prepare(ref, picture, crop=True, region=None, query=False)
                 .description.embedding) for logo_id, picture in logos_]
    finally:
        service.delete_instance(probe)


def add_while_searching(service: ImageSearch, name: str, gallery, synthetic_rows: int) -> dict:
    """AddImage each logo while a second thread runs SearchImageByName on synthetic pictures."""
    stop = threading.Event()
    searches: list[float] = []

    def search() -> None:
        rng = np.random.default_rng(5)
        while not stop.is_set():
            row = int(rng.integers(synthetic_rows))
            began = time.perf_counter()
            service.search_by_name(name, f"p{row}", "0", num=10)
            searches.append(time.perf_counter() - began)

    searcher = threading.Thread(target=search)
    searcher.start()
    adds = []
    try:
        for n, (logo_id, picture) in enumerate(gallery):
            began = time.perf_counter()
            service.add_image(name, f"r-{logo_id}", "0.png", picture)
            adds.append(time.perf_counter() - began)
            if n % 200 == 0:
                log(f"  added {n} logos")
    finally:
        stop.set()
        searcher.join()
    return {"add_image": summary_ms(adds), "search_meanwhile": summary_ms(searches)}


def found_again(service: ImageSearch, name: str, targets: list[str], queries: dict[str, list[bytes]]) -> dict:
    """R@1 and R@10 of the edited copies (SearchImageByPic) of these logos finding them (None: no logos)."""
    if not targets:
        return None
    first = tenth = count = 0
    for target in targets:
        for picture in queries[target]:
            ids = [m.product_id for m in service.search_by_picture(name, picture, num=10).matches]
            first += ids[:1] == [f"r-{target}"]
            tenth += f"r-{target}" in ids
            count += 1
    return {"queries": count, "recall_at_1": round(first / count, 4), "recall_at_10": round(tenth / count, 4)}


def exact_top(queries: np.ndarray, blocks, k: int = 10) -> list[set[int]]:
    """Each query's ``k`` nearest by a brute-force scan of ``blocks`` ((ids, vectors) pairs, a block at a
    time, so that a million vectors are never copied whole)."""
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.full((len(queries), k), -1, np.int64)
    for ids, block in blocks:
        if not len(ids):
            continue
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)
        every = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(every, top, 1)
    return [set(int(i) for i in row if i >= 0) for row in best_ids]


def blocks_of(vectors: np.ndarray, keep=None, size: int = 100_000):
    """(ids, vectors) blocks of ``vectors``, only the rows whose ids ``keep`` (a function of an id array
    giving a mask) keeps."""
    for begin in range(0, len(vectors), size):
        ids = np.arange(begin, min(len(vectors), begin + size))
        if keep is not None:
            ids = ids[keep(ids)]
        yield ids, vectors[ids]


def encoder_shaped(rows: int, real: np.ndarray, cluster_size: int, noise: float = 0.8, seed: int = 0) -> np.ndarray:
    """Synthetic vectors shaped like the encoder's: clusters drawn from the real pictures' own distribution
    (their mean and principal components, each with its own spread), each point its cluster's centre
    plus ``noise`` times that spread, ReLU'd (GeM features are non-negative) and unit length. On the logos
    this keeps the real vectors' spectrum (half the variance in ~20 components, not ~100 as for isotropic
    noise) and puts real pictures as near the synthetic ones as to each other (docs/scaling.md)."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    _, spread, basis = np.linalg.svd(real - mean, full_matrices=False)
    spread = (spread / np.sqrt(len(real))).astype(np.float32)
    centres = mean + (rng.standard_normal((max(1, rows // cluster_size), len(spread))).astype(np.float32) * spread) @ basis
    out = np.empty((rows, real.shape[1]), np.float32)
    for begin in range(0, rows, 50_000):
        end = min(rows, begin + 50_000)
        labels = rng.integers(0, len(centres), end - begin)
        block = centres[labels] + noise * (rng.standard_normal((end - begin, len(spread))).astype(np.float32) * spread) @ basis
        np.maximum(block, 0, out=block)
        out[begin:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed(run, rows) -> tuple[dict, list]:
    for row in rows[:20]:
        run(int(row))  # warm up
    times, found = [], []
    for row in rows:
        began = time.perf_counter()
        found.append(run(int(row)))
        times.append(time.perf_counter() - began)
    return summary_ms(times), found


def prewarm(service: ImageSearch, instance_id: int) -> dict:
    """The HNSW index into shared buffers, the rows into the OS cache (they do not both fit in the
    default shared_buffers, a quarter of the memory)."""
    part = f"imagesearch.pictures_{instance_id}"
    began = time.perf_counter()
    with psycopg.connect(service.database.libpq_url(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        index = conn.execute("SELECT pg_prewarm(%s, 'buffer')", (f"{part}_embedding_hnsw",)).fetchone()[0]
        heap = conn.execute("SELECT pg_prewarm(%s, 'read')", (part,)).fetchone()[0]
    return {"seconds": round(time.perf_counter() - began, 1), "index_pages": index, "heap_pages": heap}


def sizes(service: ImageSearch, instance_id: int) -> dict:
    part = f"imagesearch.pictures_{instance_id}"
    with psycopg.connect(service.database.libpq_url()) as conn:
        total, heap = conn.execute(f"SELECT pg_total_relation_size('{part}'), pg_table_size('{part}')").fetchone()
        indexes = dict(conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            (part,)).fetchall())
    return {"bytes_total": total, "heap_bytes": heap, "index_bytes": indexes}


def server_memory(service: ImageSearch) -> dict:
    """Proportional set size of the server's processes (shared buffers counted once), and its settings."""
    with psycopg.connect(service.database.libpq_url()) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
        shared = conn.execute("SHOW shared_buffers").fetchone()[0]
    postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
    pss = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if int(proc.name) != postmaster and parent != postmaster:
                continue
            rollup = (proc / "smaps_rollup").read_text()
        except (OSError, ValueError):
            continue
        pss += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")) * 1024
    return {"shared_buffers": shared, "server_pss_bytes": pss}


def at_least(picture: bytes, side: int) -> bytes:
    """The picture scaled up so that its shorter side is ``side`` px (fabric instances take 448 px and more)."""
    image = Image.open(io.BytesIO(picture))
    if min(image.size) >= side:
        return picture
    scale = side / min(image.size)
    out = io.BytesIO()
    image.convert("RGB").resize((round(image.width * scale), round(image.height * scale))).save(out, "PNG")
    return out.getvalue()


def costs(service: ImageSearch, gallery) -> list[dict]:
    """Bytes a picture takes in an instance of each service type, column by column and in its indexes."""
    table = []
    for service_type in SERVICE_TYPES:
        name = f"bench-cost-{service_type}-{int(time.time())}"
        service.create_instance(name, service_type)
        try:
            for logo_id, picture in gallery:
                service.add_image(name, logo_id, "0.png", at_least(picture, SERVICE_TYPES[service_type].min_side))
            instance_id = service.instances.cached(name).id
            part = f"imagesearch.pictures_{instance_id}"
            with psycopg.connect(service.database.libpq_url()) as conn:
                columns = conn.execute(
                    "SELECT avg(pg_column_size(embedding)), avg(coalesce(pg_column_size(silhouette), 0)),"
                    " avg(coalesce(pg_column_size(keypoints), 0)), avg(coalesce(pg_column_size(thumbnail), 0)),"
                    f" avg(pg_column_size(p.*)), count(*) FROM {part} p").fetchone()
                indexes = dict(conn.execute(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
                    " WHERE indrelid = %s::regclass", (part,)).fetchall())
                total = conn.execute(f"SELECT pg_total_relation_size('{part}')").fetchone()[0]
            embedding, silhouette, keypoints, thumbnail, row, count = (float(c) for c in columns)
            per = lambda b: round(b / count)  # noqa: E731
            table.append({
                "service_type": service_type, "pictures": int(count),
                "vector": round(embedding), "silhouette": round(silhouette), "keypoints": round(keypoints),
                "thumbnail": round(thumbnail),
                "attributes_and_key": round(row - embedding - silhouette - keypoints - thumbnail),
                "vector_index": per(sum(v for k, v in indexes.items() if k.endswith("_embedding_hnsw"))),
                "silhouette_index": per(sum(v for k, v in indexes.items() if k.endswith("_silhouette_hnsw"))),
                "other_indexes": per(sum(v for k, v in indexes.items() if not k.endswith("_hnsw"))),
                "total": per(total),
            })
            log(json.dumps(table[-1]))
        finally:
            service.delete_instance(name)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--real", type=int, default=600, help="real logos loaded with the synthetic pictures")
    parser.add_argument("--added", type=int, default=200, help="real logos added with AddImage while searching")
    parser.add_argument("--cluster-size", type=int, default=100, help="synthetic pictures per cluster")
    parser.add_argument("--vectors", choices=("encoder-shaped", "isotropic"), default="encoder-shaped",
                        help="synthetic vectors from the logos' own distribution, or benchmarks/search.py's")
    parser.add_argument("--costs", type=int, default=100, help="logos per service type for the cost table (0: none)")
    parser.add_argument("--maintenance-work-mem", default="8GB", help="for the HNSW build")
    parser.add_argument("--ef-search", default="", help="also time the raw SQL at these hnsw.ef_search values, "
                                                         "comma-separated (recall against latency)")
    parser.add_argument("--json", action="store_true")
    reuse_options(parser, "the same --rows")
    args = parser.parse_args()

    needs_logos = args.vectors == "encoder-shaped" or args.real or args.added or args.costs
    gallery, edited = logos() if needs_logos else ([], {})
    loaded_logos, added_logos = gallery[: args.real], gallery[args.real : args.real + args.added]
    service = ImageSearch.open()
    log(f"embedding {len(loaded_logos) + len(added_logos)} logos ...")
    real = embeddings(service, loaded_logos + added_logos)
    real_ids = [f"r-{logo_id}" for logo_id, _ in real]
    real_vectors = np.array([vector for _, vector in real], np.float32).reshape(len(real), DIM)
    log(f"generating {args.rows} {args.vectors} vectors ...")
    vectors = (encoder_shaped(args.rows, real_vectors, args.cluster_size) if args.vectors == "encoder-shaped"
               else clustered_vectors(args.rows, clusters=max(1, args.rows // args.cluster_size)))
    built: dict = {}
    added: dict = {}

    def make(name: str) -> None:
        load(service, name, vectors, real[: len(loaded_logos)], args.maintenance_work_mem, built)
        if added_logos:
            log(f"adding {len(added_logos)} logos while searching ...")
            added.update(add_while_searching(service, name, added_logos, args.rows))
            log(json.dumps(added))

    with measured_instance(service, args, "bench-scale", make, log) as name:
        instance_id = service.instances.cached(name).id
        rng = np.random.default_rng(1)
        query_rows = rng.choice(args.rows, size=args.queries, replace=False)
        log("exact answers ...")
        queries = vectors[query_rows]
        truth = exact_top(queries, [*blocks_of(vectors), (np.arange(len(real_ids)) + args.rows, real_vectors)])

        log("cold searches, then the index and rows read into memory (pg_prewarm) ...")
        cold, _ = timed(lambda row: service.search_by_name(name, f"p{row}", "0", num=10), query_rows[:100])
        warmed = prewarm(service, instance_id)
        raw_sql = (
            f"SELECT product_id FROM imagesearch.pictures_{instance_id} "
            f"ORDER BY embedding::halfvec({DIM}) <=> (SELECT embedding::halfvec({DIM}) "
            f"FROM imagesearch.pictures_{instance_id} WHERE product_id = %s AND pic_name = '0') LIMIT 10"
        )
        number = {pid: args.rows + i for i, pid in enumerate(real_ids)}
        as_number = lambda pid: number[pid] if pid.startswith("r-") else int(pid[1:])  # noqa: E731
        with psycopg.connect(service.database.libpq_url(), autocommit=True) as raw:
            for setting, value in picture_search.HNSW_SETTINGS.items():
                raw.execute(f"SET {setting} = {value}")
            raw_run = lambda row: [as_number(r[0]) for r in raw.execute(raw_sql, (f"p{row}",), prepare=True)]  # noqa: E731
            service_run = lambda row: [as_number(m.product_id) for m in  # noqa: E731
                                       service.search_by_name(name, f"p{row}", "0", num=10).matches]
            log("searching ...")
            raw_summary, raw_found = timed(raw_run, query_rows)
            service_summary, service_found = timed(service_run, query_rows)
            breadths = []
            for breadth in [int(b) for b in args.ef_search.split(",") if b]:
                raw.execute(f"SET hnsw.ef_search = {breadth}")
                summary, found = timed(raw_run, query_rows)
                breadths.append({"ef_search": breadth, **summary, "recall_at_10": round(recall(found, truth), 4)})
                log(json.dumps(breadths[-1]))

        filtered = []
        for fraction in FRACTIONS:
            bound = int(round(fraction * MODULUS))
            matching = int(np.count_nonzero(np.arange(args.rows) % MODULUS < bound))
            expected = exact_top(queries, blocks_of(vectors, lambda ids: ids % MODULUS < bound))
            text = f"int_attr < {bound}"
            summary, found = timed(lambda row: [int(m.product_id[1:]) for m in service.search_by_name(
                name, f"p{row}", "0", num=10, filter=text).matches], query_rows)
            entry = {"fraction": fraction, "matching": matching,
                     "returned_min": min(len(f) for f in found), "expected": min(10, matching),
                     "recall_at_10": round(float(np.mean([len(set(f) & t) / len(t) for f, t in zip(found, expected)])), 4),
                     "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"]}
            log(json.dumps(entry))
            filtered.append(entry)

        log("the logos' edited copies, among a million and among themselves ...")
        loaded_ids, added_ids = [t for t, _ in loaded_logos], [t for t, _ in added_logos]
        among_many = {"loaded": found_again(service, name, loaded_ids, edited),
                      "added": found_again(service, name, added_ids, edited)}
        small = f"bench-scale-logos-{int(time.time())}"
        service.create_instance(small, "generic")
        try:
            for logo_id, picture in loaded_logos + added_logos:
                service.add_image(small, f"r-{logo_id}", "0.png", picture)
            among_few = {"loaded": found_again(service, small, loaded_ids, edited),
                         "added": found_again(service, small, added_ids, edited)}
        finally:
            service.delete_instance(small)

        on_disk = sizes(service, instance_id)
        report = {
            "rows": args.rows, "dim": DIM, "storage": "halfvec", "vectors": args.vectors, "cluster_size": args.cluster_size, **on_disk,
            "load_s": built.get("load_s"), "build_s": built.get("build_s"), "build_settings": built.get("settings"),
            "cold_search": cold, "prewarm": warmed,
            "search_p50_ms": service_summary["p50_ms"], "search_p99_ms": service_summary["p99_ms"],
            "recall_at_10": round(recall(service_found, truth), 4),
            "raw_sql": {**raw_summary, "recall_at_10": round(recall(raw_found, truth), 4)},
            "service_over_raw_p50": round(service_summary["p50_ms"] / raw_summary["p50_ms"], 2),
            "raw_sql_by_ef_search": breadths,
            "filtered": filtered,
            "while_adding": added or None,
            "real_pictures": {"stored": len(real_ids), "among_the_million": among_many, "on_their_own": among_few},
            "memory": server_memory(service),
        }
        if args.costs:
            log("cost per picture of each service type ...")
            report["cost_per_picture"] = costs(service, gallery[: args.costs])
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
