"""The service beside raw pgvector SQL and four embedded vector stores, on the same data and queries.

    python benchmarks/peers.py [--rows 100000] [--queries 200] [--systems LIST] [--peer-queries N] [--json]

The peers come with `pip install -e '.[peers]'` (best in a venv of its own). Data: benchmarks/search.py's
vectors (1280-d, non-negative, clustered, unit length) with a = i % 10000, so `a < K` selects K/10000 of the
rows; queries: benchmarks/filtered_recall.py's held-out ones (noisy, not in the index). Columns: no filter,
then 10 %, 1 %, 0.1 % and 0.01 % of the rows matching. Systems:

- service: `ImageSearch.search_by_vector(name, q, num=10, filter="int_attr < K")`, on a generic instance
  bulk loaded by benchmarks/filtered_search.py's load and deleted at the end;
- raw: the same table in SQL on the service's connection settings (HNSW_SETTINGS: iterative scan
  strict_order) at the hnsw.ef_search the service picks for the filter (picture_search.walk_breadth of the
  planner's estimate), or the service's exact scan (no HNSW cast) where it scores every match;
- raw-defaults: `WHERE a < K ORDER BY embedding <=> q LIMIT 10` on pgvector's defaults (ef_search 40, no
  iterative scan), whatever plan the planner picks;
- chromadb (HNSW, cosine; where={"a": {"$lt": K}}), lancedb (its default IVF_PQ index, cosine;
  .where("a < K", prefilter=True)), milvus-lite (HNSW, COSINE; filter="a < K"), qdrant local mode (brute
  force; Filter with Range(lt=K)); each in a temporary directory, removed at the end.

One query at a time, at most THREADS threads where a system has a knob, each column timed after one untimed
pass over its queries (at most WARM_UP_SECONDS). Per system and column: p50/p99 ms,
recall@10 against a brute-force numpy scan of the matching rows, short answers (fewer than min(10, matching)
results); per system the load+index time. --peer-queries N (or NAME=N,...): the peers (or those named)
answer only the first N queries; the report's `queries` says how many each system answered.
"""

from __future__ import annotations

import os

THREADS = 2
for _knob in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "LANCE_CPU_THREADS"):
    os.environ.setdefault(_knob, str(THREADS))  # before numpy, faiss, lance or chroma start their pools

import argparse  # noqa: E402
import importlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from pgvector.psycopg import register_vector  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import exact_nearest, summary_ms  # noqa: E402
from benchmarks.filtered_recall import held_out_queries  # noqa: E402
from benchmarks.filtered_search import MODULUS, load  # noqa: E402
from benchmarks.search import DIM, clustered_vectors  # noqa: E402
from benchmarks.served import emit  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402
from imagesearch_pg.store.filters import parse_filter  # noqa: E402

FRACTIONS = (1.0, 0.1, 0.01, 0.001, 0.0001)
BOUNDS = [None if f == 1 else round(f * MODULUS) for f in FRACTIONS]  # a < K; None: no filter
PG_SYSTEMS = ("service", "raw", "raw-defaults")
PEERS = {"chromadb": "chromadb", "lancedb": "lancedb", "milvus-lite": "milvus-lite", "qdrant": "qdrant-client"}
BATCH = 5000
WARM_UP_SECONDS = 10.0


@dataclass
class Loaded:
    """A loaded system: search(q, K) -> the ids of the 10 rows nearest q with a < K (K None: no filter)."""

    search: Callable[[np.ndarray, int | None], list[int]]
    index: str  # the index and its settings, for the report
    plans: dict = field(default_factory=dict)  # K -> the plan, where the system picks one per filter
    close: Callable[[], None] = lambda: None


def _peer(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise SystemExit(f"{module} is missing ({e}): pip install -e '.[peers]'") from None


@dataclass
class Postgres:
    service: ImageSearch
    name: str
    instance_id: int
    load_s: float

    def connect(self, settings: dict) -> psycopg.Connection:
        url = self.service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = psycopg.connect(url, autocommit=True)
        register_vector(conn)
        for setting, value in settings.items():
            conn.execute(f"SET {setting} = {value}")
        return conn

    def sql(self, bound: int | None, hnsw: bool = True) -> str:
        where = "" if bound is None else f"WHERE int_attr < {int(bound)} "
        embedding = f"embedding::halfvec({DIM})" if hnsw else "embedding"  # no cast: no index, every match scored
        return (f"SELECT product_id FROM imagesearch.pictures_{self.instance_id} {where}"
                f"ORDER BY {embedding} <=> %b::halfvec({DIM}) LIMIT 10")


@contextmanager
def postgres(vectors: np.ndarray, log):
    """The service with a generic instance of ``vectors`` (int_attr = a), deleted at the end."""
    service = ImageSearch.open()
    name = f"bench-peers-{int(time.time())}"
    try:
        began = time.perf_counter()
        instance_id = load(service, name, vectors, log)
        yield Postgres(service, name, instance_id, time.perf_counter() - began)
    finally:
        if name in {i.name for i in service.list_instances()}:
            service.delete_instance(name)
        service.close()


def service_system(pg: Postgres) -> Loaded:
    def search(q, bound):
        text = None if bound is None else f"int_attr < {bound}"
        result = pg.service.search_by_vector(pg.name, q, num=10, filter=text)
        return [int(m.product_id[1:]) for m in result.matches]
    return Loaded(search, "pgvector HNSW cosine (m 16, ef_construction 64), ef_search per filter (walk_breadth)")


def raw_system(pg: Postgres) -> Loaded:
    plans, statements = {}, {}
    with pg.service.database.reading() as conn:
        for bound in BOUNDS:
            parsed = None if bound is None else parse_filter(f"int_attr < {bound}")
            ef = picture_search.walk_breadth(picture_search.estimate(conn, pg.instance_id, parsed, None))
            plans[bound] = "exact" if ef is None else f"ef {ef}"
            statements[bound] = (ef, pg.sql(bound, hnsw=ef is not None))
    raw = pg.connect(picture_search.HNSW_SETTINGS)
    current = [picture_search.DEFAULT_BREADTH]

    def search(q, bound):
        ef, sql = statements[bound]
        if ef is not None and ef != current[0]:  # once per column, in its warm-up
            raw.execute(f"SET hnsw.ef_search = {ef}")
            current[0] = ef
        return [int(r[0][1:]) for r in raw.execute(sql, (q,), prepare=True)]
    return Loaded(search, "the service's HNSW, iterative scan strict_order, its ef_search or exact scan",
                  plans, raw.close)


def raw_defaults_system(pg: Postgres) -> Loaded:
    raw = pg.connect({"hnsw.ef_search": 40, "hnsw.iterative_scan": "off"})

    def search(q, bound):
        return [int(r[0][1:]) for r in raw.execute(pg.sql(bound), (q,), prepare=True)]
    return Loaded(search, "the service's HNSW, ef_search 40, no iterative scan, the planner's plan", close=raw.close)


def chromadb_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    chromadb = _peer("chromadb")
    client = chromadb.PersistentClient(path=str(where))
    hnsw = {"space": "cosine", "num_threads": THREADS}  # the rest: chroma's defaults
    collection = client.create_collection("bench", configuration={"hnsw": hnsw})
    batch = min(BATCH, client.get_max_batch_size())
    for begin in range(0, len(vectors), batch):
        end = min(len(vectors), begin + batch)
        collection.add(ids=[str(i) for i in range(begin, end)], embeddings=vectors[begin:end],
                       metadatas=[{"a": int(a)} for a in attribute[begin:end]])
    config = collection.configuration.get("hnsw") or {}

    def search(q, bound):
        found = collection.query(query_embeddings=[q], n_results=10, include=[],
                                 where=None if bound is None else {"a": {"$lt": bound}})
        return [int(i) for i in found["ids"][0]]
    settings = ", ".join(f"{k} {config.get(k)}" for k in ("max_neighbors", "ef_construction", "ef_search"))
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
        query = table.search(q, vector_column_name="vector").distance_type("cosine").limit(10)
        if bound is not None:
            query = query.where(f"a < {bound}", prefilter=True)
        return query.select(["id", "_distance"]).to_arrow()["id"].to_pylist()
    return Loaded(search, f"{stats.index_type} {stats.distance_type}, defaults ({round(len(vectors) ** 0.5)} "
                          f"partitions, {DIM // 16} sub-vectors of 8 bits; nprobes 20, no refine), no scalar index")


def milvus_system(vectors: np.ndarray, attribute: np.ndarray, where: Path) -> Loaded:
    pymilvus = _peer("pymilvus")
    from milvus_lite.server_manager import server_manager_instance  # noqa: F401 (the extra's, checked here)

    path = str((where / "milvus.db").resolve())
    client = pymilvus.MilvusClient(path)
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
    # milvus-lite 3 compacts and indexes flushed segments on a background thread and reports every index as
    # finished at once; until that thread is done, searches score the unindexed segments by brute force.
    collection = server_manager_instance._servers[path][1].get_collection("bench")
    collection._wait_for_bg()
    segments = [s for s in collection._segments_snapshot() if s.num_rows]
    assert all("vector" in s.indexes for s in segments), "milvus-lite left segments unindexed"

    def search(q, bound):
        hits = client.search("bench", data=[q], limit=10, filter="" if bound is None else f"a < {bound}",
                             search_params={"metric_type": "COSINE"})
        return [int(h["id"]) for h in hits[0]]

    def close():
        client.close()
        server_manager_instance.release_server(path)
    return Loaded(search, f"HNSW COSINE (M 16, efConstruction 200, ef 64 default; faiss, {len(segments)} segments)",
                  close=close)


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
        condition = None if bound is None else models.Filter(
            must=[models.FieldCondition(key="a", range=models.Range(lt=bound))])
        return [int(p.id) for p in client.query_points("bench", query=q, query_filter=condition, limit=10).points]
    return Loaded(search, "local mode: brute force (numpy), cosine, payload filter in Python", close=client.close)


PG_LOADERS = {"service": service_system, "raw": raw_system, "raw-defaults": raw_defaults_system}
PEER_LOADERS = {"chromadb": chromadb_system, "lancedb": lancedb_system, "milvus-lite": milvus_system,
                "qdrant": qdrant_system}


def measure(system: Loaded, queries: np.ndarray, columns: list[dict], log) -> list[dict]:
    out = []
    for column in columns:
        bound = column["bound"]
        # One untimed pass over the queries first (as long as WARM_UP_SECONDS allows), so that no system is
        # timed on caches (shared buffers, the OS's, its own) that another system's pass warmed for it.
        warming = time.perf_counter()
        for q in queries:
            system.search(q, bound)
            if time.perf_counter() - warming > WARM_UP_SECONDS:
                break
        times, found = [], []
        for q in queries:
            began = time.perf_counter()
            found.append(system.search(q, bound))
            times.append(time.perf_counter() - began)
        want = min(10, column["matching"])
        recall = np.mean([len(set(f) & t) / want for f, t in zip(found, column["truth"])])
        entry = {"fraction": column["fraction"], "matching": column["matching"], **summary_ms(times),
                 "recall_at_10": round(float(recall), 4), "short_answers": sum(len(set(f)) < want for f in found),
                 **({"plan": system.plans[bound]} if bound in system.plans else {})}
        log(f"  {entry}")
        out.append(entry)
    return out


def table(report: dict) -> str:
    head = ["system", "load+index s", "queries"] + [
        "no filter p50 / recall@10" if f == 1 else f"{f * 100:g} % p50 / recall" for f in FRACTIONS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def cell(c: dict) -> str:
        short = f" ({c['short_answers']} short)" if c["short_answers"] else ""
        return f"{c['p50_ms']:.2f} / {c['recall_at_10']:.3f}{short}" + (f" [{c['plan']}]" if "plan" in c else "")

    for s in report["systems"]:
        cells = [cell(c) for c in s.get("columns", [])]
        lines.append(f"| {s['system']} {s['version']} | {s.get('load_s', '-')} | {s.get('queries', '-')} | "
                     + " | ".join(cells or [f"failed: {s.get('error')}"]) + " |")
    return "\n".join(lines)


def query_counts(spec: str | None, total: int) -> dict:
    """--peer-queries: "N" (every peer) or "NAME=N,..." -> {peer: queries}."""
    counts = dict.fromkeys(PEERS, total)
    for part in filter(None, (spec or "").split(",")):
        name, _, n = part.rpartition("=")
        counts.update({p: min(total, int(n)) for p in ([name] if name else PEERS)})
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--systems", default=",".join((*PG_SYSTEMS, *PEERS)))
    parser.add_argument("--peer-queries", help="N, or NAME=N,...: the peers (or those named) answer the first N only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    systems = args.systems.split(",")
    if unknown := set(systems) - {*PG_SYSTEMS, *PEERS}:
        raise SystemExit(f"unknown systems {sorted(unknown)}; known: {', '.join((*PG_SYSTEMS, *PEERS))}")
    counts = query_counts(args.peer_queries, args.queries)

    log(f"generating {args.rows} vectors, {args.queries} queries and their exact answers ...")
    vectors = clustered_vectors(args.rows)
    queries = held_out_queries(vectors, args.queries)
    attribute = np.arange(args.rows) % MODULUS
    columns = []
    for fraction, bound in zip(FRACTIONS, BOUNDS):
        matching = np.arange(args.rows) if bound is None else np.nonzero(attribute < bound)[0]
        columns.append({"fraction": fraction, "bound": bound, "matching": len(matching),
                        "truth": exact_nearest(vectors[matching], matching, queries)})
    report = {"rows": args.rows, "dim": DIM, "queries": args.queries, "threads": THREADS, "systems": []}

    def run(name: str, version: str, make: Callable[[], Loaded], load_s: float | None, count: int) -> None:
        entry = {"system": name, "version": version}
        report["systems"].append(entry)
        try:
            began = time.perf_counter()
            loaded = make()
            entry.update(index=loaded.index, load_s=round(load_s or time.perf_counter() - began, 1), queries=count)
            log(f"{name}: {loaded.index}; loaded in {entry['load_s']} s; {count} queries")
            try:
                few = [{**c, "truth": c["truth"][:count]} for c in columns]
                entry["columns"] = measure(loaded, queries[:count], few, log)
            finally:
                loaded.close()
        except Exception as e:  # one peer failing leaves the others' figures
            log(traceback.format_exc())
            entry["error"] = f"{type(e).__name__}: {e}"[:200]

    if wanted := [s for s in PG_SYSTEMS if s in systems]:
        with postgres(vectors, log) as pg:
            with pg.service.database.reading() as conn:
                version = conn.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'").scalar()
            for name in wanted:
                run(name, f"pgvector {version}", lambda: PG_LOADERS[name](pg), pg.load_s, args.queries)
    for name in (s for s in PEERS if s in systems):
        where = Path(tempfile.mkdtemp(prefix=f"peers-{name}-"))
        try:
            _peer(PEERS[name].replace("-", "_"))  # a missing extra stops here, with how to install it
            version = metadata.version(PEERS[name])
            log(f"{name}: loading {args.rows} rows into {where} ...")
            with threadpool_limits(limits=THREADS):  # the service holds BLAS to one thread for itself
                run(name, version, lambda: PEER_LOADERS[name](vectors, attribute, where), None, counts[name])
        finally:
            shutil.rmtree(where, ignore_errors=True)
    emit(report, args.json)
    print(table(report), file=sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main()
