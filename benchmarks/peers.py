"""The service beside raw pgvector SQL and four embedded vector stores, on the same data and queries.

    /work/peers-venv/bin/python benchmarks/peers.py [--rows 100000] [--queries 200] [--systems LIST]
        [--peer-queries N] [--json]

(the peers come with `pip install -e '.[peers]'`, best in a venv of their own). Data: the vectors of
benchmarks/search.py (1280-d, non-negative, clustered, unit length) with an integer attribute a = i % 10000,
so `a < K` selects K/10000 of the rows; the queries are benchmarks/filtered_recall.py's held-out ones (noisy,
not in the index). Columns: no filter, then 10 %, 1 %, 0.1 % and 0.01 % of the rows matching. Systems:

- service: `ImageSearch.search_by_vector(name, q, num=10, filter="int_attr < K")` on a generic instance
  (bulk loaded by benchmarks/filtered_search.py's load, deleted at the end);
- raw: the same table in raw SQL on the service's connection settings (picture_search.HNSW_SETTINGS:
  iterative scan strict_order) at the hnsw.ef_search the service picks for the column (walk_breadth of
  the planner's estimate), or, where it scores every match exactly, the same exact scan (no HNSW cast);
- raw-defaults: `WHERE a < K ORDER BY embedding <=> q LIMIT 10` on pgvector's defaults (ef_search 40, no
  iterative scan), whatever plan the planner picks;
- chromadb (HNSW, cosine, `where={"a": {"$lt": K}}`), lancedb (the default IVF_PQ index, cosine,
  `.where("a < K", prefilter=True)`), milvus-lite (HNSW, COSINE, `filter="a < K"`), qdrant (local mode:
  brute force, `Filter(must=[FieldCondition(key="a", range=Range(lt=K))])`); each in a temporary directory.

Each system gets one query at a time and at most THREADS threads where it has a knob. Per system and column:
p50/p99 ms, recall@10 against a brute-force numpy scan of the matching rows, and short answers (fewer than
min(10, matching) results); per system its load+index time. --peer-queries N: the four peers answer only
the first N queries (qdrant's local mode takes seconds a query); the report says how many each answered.
"""

from __future__ import annotations

import os

THREADS = 2
for _knob in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS",
              "LANCE_CPU_THREADS"):
    os.environ.setdefault(_knob, str(THREADS))  # before numpy, faiss, lance or chroma start a pool

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import summary_ms  # noqa: E402
from benchmarks.filtered_recall import held_out_queries  # noqa: E402
from benchmarks.filtered_search import MODULUS, load  # noqa: E402
from benchmarks.search import DIM, clustered_vectors  # noqa: E402
from benchmarks.served import emit  # noqa: E402

FRACTIONS = (1.0, 0.1, 0.01, 0.001, 0.0001)
PG_SYSTEMS = ("service", "raw", "raw-defaults")
PEERS = ("chromadb", "lancedb", "milvus-lite", "qdrant")
BATCH = 5000


@dataclass
class Loaded:
    """A loaded system: ``search(q, K)`` -> the row ids of the 10 nearest with a < K (K None: no filter)."""

    search: Callable[[np.ndarray, int | None], list[int]]
    index: str  # the index and its settings, as reported
    plans: dict = field(default_factory=dict)  # K -> the plan, where the system picks one per filter
    close: Callable[[], None] = lambda: None


def _peer(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise SystemExit(f"{module} is missing ({e}): pip install -e '.[peers]'") from None


@contextmanager
def postgres(vectors: np.ndarray, log):
    """The service with a generic instance of ``vectors`` (int_attr = a), deleted at the end; yields
    (service, name, instance id, load seconds)."""
    from imagesearch_pg.service import ImageSearch

    service = ImageSearch.open()
    name = f"bench-peers-{int(time.time())}"
    try:
        began = time.perf_counter()
        instance_id = load(service, name, vectors, log)
        yield service, name, instance_id, time.perf_counter() - began
    finally:
        if name in {i.name for i in service.list_instances()}:
            service.delete_instance(name)
        service.close()


def service_system(pg) -> Loaded:
    service, name = pg[0], pg[1]

    def search(q, bound):
        result = service.search_by_vector(name, q, num=10, filter=None if bound is None else f"int_attr < {bound}")
        return [int(m.product_id[1:]) for m in result.matches]
    return Loaded(search, "pgvector HNSW (the instance's), ef_search per filter (walk_breadth)")


def _raw_connection(service, settings: dict):
    import psycopg
    from pgvector.psycopg import register_vector

    url = service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    for setting, value in settings.items():
        conn.execute(f"SET {setting} = {value}")
    return conn


def _raw_sql(instance_id: int, bound: int | None, hnsw: bool) -> str:
    where = "" if bound is None else f"WHERE int_attr < {int(bound)} "
    embedding = f"embedding::vector({DIM})" if hnsw else "embedding"  # no cast: no index, every match scored
    return (f"SELECT product_id FROM imagesearch.pictures_{instance_id} {where}"
            f"ORDER BY {embedding} <=> %b::vector({DIM}) LIMIT 10")


def raw_system(pg) -> Loaded:
    from imagesearch_pg.store import picture_search
    from imagesearch_pg.store.filters import parse_filter

    service, instance_id = pg[0], pg[2]
    plans, statements = {}, {}
    with service.database.reading() as conn:
        for bound in [None] + [round(f * MODULUS) for f in FRACTIONS if f < 1]:
            parsed = None if bound is None else parse_filter(f"int_attr < {bound}")
            expected = picture_search.estimate(conn, instance_id, parsed, None)
            ef = picture_search.walk_breadth(expected)
            plans[bound] = "exact scan" if ef is None else f"HNSW ef_search {ef}"
            statements[bound] = (ef, _raw_sql(instance_id, bound, hnsw=ef is not None))
    raw = _raw_connection(service, picture_search.HNSW_SETTINGS)
    current = [int(picture_search.HNSW_SETTINGS["hnsw.ef_search"])]

    def search(q, bound):
        ef, sql = statements[bound]
        if ef is not None and ef != current[0]:
            raw.execute(f"SET hnsw.ef_search = {ef}")
            current[0] = ef
        return [int(r[0][1:]) for r in raw.execute(sql, (q,), prepare=True)]
    return Loaded(search, "pgvector HNSW, iterative scan strict_order, the service's ef_search", plans, raw.close)


def raw_defaults_system(pg) -> Loaded:
    raw = _raw_connection(pg[0], {"hnsw.ef_search": 40, "hnsw.iterative_scan": "off"})

    def search(q, bound):
        return [int(r[0][1:]) for r in raw.execute(_raw_sql(pg[2], bound, hnsw=True), (q,), prepare=True)]
    return Loaded(search, "pgvector HNSW, ef_search 40, no iterative scan (planner's choice)", close=raw.close)


def chromadb_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    chromadb = _peer("chromadb")
    client = chromadb.PersistentClient(path=str(where))
    hnsw = {"space": "cosine", "num_threads": THREADS}
    collection = client.create_collection("bench", configuration={"hnsw": hnsw})
    batch = min(BATCH, client.get_max_batch_size())
    for begin in range(0, len(vectors), batch):
        end = min(len(vectors), begin + batch)
        collection.add(ids=[str(i) for i in range(begin, end)], embeddings=vectors[begin:end],
                       metadatas=[{"a": int(a)} for a in attribute[begin:end]])
    config = collection.configuration.get("hnsw") or {}
    settings = ", ".join(f"{k} {config.get(k)}" for k in ("max_neighbors", "ef_construction", "ef_search"))

    def search(q, bound):
        found = collection.query(query_embeddings=[q], n_results=10, include=[],
                                 where=None if bound is None else {"a": {"$lt": bound}})
        return [int(i) for i in found["ids"][0]]
    return Loaded(search, f"HNSW cosine ({settings}), {THREADS} threads")


def lancedb_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    lancedb = _peer("lancedb")
    import pyarrow as pa
    from lancedb.index import IvfPq

    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), DIM)
    data = pa.table({"id": np.arange(len(vectors)), "a": attribute.astype(np.int64), "vector": column})
    table = lancedb.connect(str(where)).create_table("bench", data)
    table.create_index("vector", config=IvfPq(distance_type="cosine"))
    stats = table.index_stats(table.list_indices()[0].name)
    assert stats.num_unindexed_rows == 0, stats

    def search(q, bound):
        query = table.search(q, vector_column_name="vector").distance_type("cosine").select(["id"]).limit(10)
        if bound is not None:
            query = query.where(f"a < {bound}", prefilter=True)
        return query.to_arrow()["id"].to_pylist()
    return Loaded(search, f"{stats.index_type} {stats.distance_type}, defaults (partitions sqrt(rows), "
                          f"{DIM // 16} sub-vectors of 8 bits; nprobes 20, no refine), no scalar index")


def milvus_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    pymilvus = _peer("pymilvus")
    _peer("milvus_lite")
    client = pymilvus.MilvusClient(str(where / "milvus.db"))
    schema = pymilvus.MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("a", pymilvus.DataType.INT64)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
    client.create_collection("bench", schema=schema, index_params=index)
    for begin in range(0, len(vectors), BATCH):
        end = min(len(vectors), begin + BATCH)
        client.insert("bench", [{"id": i, "a": int(attribute[i]), "vector": vectors[i]} for i in range(begin, end)])
    client.flush("bench")
    # milvus-lite 3 compacts and indexes flushed segments on a background thread, reporting every index as
    # finished at once; until it is done, searches score unindexed segments by brute force. Wait for it.
    from milvus_lite.server_manager import server_manager_instance

    collection = server_manager_instance._servers[str((where / "milvus.db").resolve())][1].get_collection("bench")
    collection._wait_for_bg()
    segments = collection._segments_snapshot()
    assert all("vector" in s.indexes for s in segments if s.num_rows), "milvus-lite left segments unindexed"

    def search(q, bound):
        hits = client.search("bench", data=[q], limit=10, filter="" if bound is None else f"a < {bound}",
                             search_params={"metric_type": "COSINE"})
        return [int(h["id"]) for h in hits[0]]
    return Loaded(search, f"HNSW COSINE (M 16, efConstruction 200, ef default 64), faiss, {len(segments)} segments",
                  close=client.close)


def qdrant_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    qdrant_client = _peer("qdrant_client")
    models = qdrant_client.models
    client = qdrant_client.QdrantClient(path=str(where))
    client.create_collection("bench", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    for begin in range(0, len(vectors), BATCH):
        end = min(len(vectors), begin + BATCH)
        client.upload_collection("bench", vectors=vectors[begin:end], ids=range(begin, end),
                                 payload=[{"a": int(a)} for a in attribute[begin:end]])

    def search(q, bound):
        flt = None if bound is None else models.Filter(
            must=[models.FieldCondition(key="a", range=models.Range(lt=bound))])
        return [int(p.id) for p in client.query_points("bench", query=q, query_filter=flt, limit=10).points]
    return Loaded(search, "local mode: brute force (numpy), cosine", close=client.close)


PEER_LOADERS = {"chromadb": chromadb_system, "lancedb": lancedb_system, "milvus-lite": milvus_system,
                "qdrant": qdrant_system}
PG_LOADERS = {"service": service_system, "raw": raw_system, "raw-defaults": raw_defaults_system}
VERSIONS = {"chromadb": "chromadb", "lancedb": "lancedb", "milvus-lite": "milvus-lite", "qdrant": "qdrant-client"}


def measure(system: Loaded, queries: np.ndarray, columns: list[dict], log) -> list[dict]:
    out = []
    for column in columns:
        bound, truth = column["bound"], column["truth"][:len(queries)]
        for q in queries[:5]:
            system.search(q, bound)  # warm up
        times, found = [], []
        for q in queries:
            began = time.perf_counter()
            found.append(system.search(q, bound))
            times.append(time.perf_counter() - began)
        want = min(10, column["matching"])
        entry = {"fraction": column["fraction"], "matching": column["matching"], **summary_ms(times),
                 "recall_at_10": round(float(np.mean([len(set(f) & t) / max(1, want) for f, t in zip(found, truth)])), 4),
                 "short_answers": sum(len(set(f)) < want for f in found)}
        if bound in system.plans:
            entry["plan"] = system.plans[bound]
        log(f"  {entry}")
        out.append(entry)
    return out


def table(report: dict) -> str:
    head = ["system", "load+index s", "queries"] + [
        "no filter p50 / recall@10" if f == 1 else f"{f * 100:g} % p50 / recall" for f in FRACTIONS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in report["systems"]:
        cells = [f"{c['p50_ms']:.2f} / {c['recall_at_10']:.3f}" + (f" ({c['short_answers']} short)"
                 if c["short_answers"] else "") for c in s["columns"]]
        lines.append(f"| {s['system']} {s['version']} | {s['load_s']:.0f} | {s['queries']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--systems", default=",".join(PG_SYSTEMS + PEERS))
    parser.add_argument("--peer-queries", type=int, help="the four peers answer only the first N queries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    systems = args.systems.split(",")
    if unknown := set(systems) - set(PG_SYSTEMS + PEERS):
        raise SystemExit(f"unknown systems {sorted(unknown)}; known: {', '.join(PG_SYSTEMS + PEERS)}")

    log(f"generating {args.rows} vectors and {args.queries} queries ...")
    vectors = clustered_vectors(args.rows)
    queries = held_out_queries(vectors, args.queries)
    attribute = np.arange(args.rows) % MODULUS
    columns = []
    for fraction in FRACTIONS:
        bound = None if fraction == 1 else round(fraction * MODULUS)
        matching = np.arange(args.rows) if bound is None else np.nonzero(attribute < bound)[0]
        scores = queries @ vectors[matching].T
        top = np.argsort(-scores, axis=1)[:, :10]
        columns.append({"fraction": fraction, "bound": bound, "matching": int(len(matching)),
                        "truth": [set(matching[t].tolist()) for t in top]})
    report = {"rows": args.rows, "dim": DIM, "queries": args.queries, "threads": THREADS, "systems": []}

    def run(name: str, loaded: Loaded, load_s: float, version: str, count: int) -> None:
        try:
            log(f"{name}: {loaded.index}; {count} queries")
            measured = measure(loaded, queries[:count], columns, log)
        finally:
            loaded.close()
        report["systems"].append({"system": name, "version": version, "index": loaded.index,
                                  "load_s": round(load_s, 1), "queries": count, "columns": measured})

    if wanted := [s for s in PG_SYSTEMS if s in systems]:
        with postgres(vectors, log) as pg:
            with pg[0].database.reading() as conn:
                version = conn.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'").scalar()
            for name in wanted:
                run(name, PG_LOADERS[name](pg), pg[3], f"pgvector {version}", args.queries)
    peer_count = min(args.queries, args.peer_queries or args.queries)
    for name in (s for s in PEERS if s in systems):
        where = Path(tempfile.mkdtemp(prefix=f"peers-{name}-"))
        try:
            with threadpool_limits(limits=THREADS):  # the service pins BLAS to one thread for itself
                log(f"{name}: loading {args.rows} rows into {where} ...")
                began = time.perf_counter()
                loaded = PEER_LOADERS[name](vectors, attribute, where)
                load_s = time.perf_counter() - began
                run(name, loaded, load_s, metadata.version(VERSIONS[name]), peer_count)
        finally:
            shutil.rmtree(where, ignore_errors=True)
    emit(report, args.json)
    print(table(report), file=sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main()
