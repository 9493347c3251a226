"""Metadata export (DumpMeta) of 1,000,000 pictures: rows/s and the exporting process's peak memory, beside a
raw server-side cursor writing the same JSON lines.

    IMAGESEARCH_HOME=/work/benchruns/batch-home \\
    python benchmarks/export_meta.py [--rows 1000000] [--rounds 2] [--keep] [--instance NAME] [--home DIR]
        [--json FILE]

A `generic` instance (1280-d, the default encoder's dimension) gets --rows synthetic pictures in one
transaction with `store.bulk_load.bulk_load` (binary COPY, then one HNSW build; maintenance_work_mem raised
for that transaction so the graph is built in memory): random unit embeddings, ProductId "p<n // 3>" (three
pictures a product), PicName "<n>.jpg", CategoryId Other, and every attribute filled with varied values
(IntAttr..IntAttr4 over the int32 range, some left empty; StrAttr..StrAttr4 words, numbers and non-ASCII
text, some empty; CustomContent "k:v" pairs). --keep leaves the instance, --instance NAME reuses one.

Then, --rounds times, alternating which goes first:
- export: `service.tasks.submit_export` here, and the task run to its end by a `Worker` in a fresh Python
  process (this script with --run-task ID: ImageSearch.open(), Worker(only=ID)). Its peak memory is the
  child's VmHWM from /proc/self/status when the task has ended (also read from this side while it runs, and
  the VmHWM it had after ImageSearch.open(), before the task), rows/s over the task's started_at ->
  finished_at and over the child's whole life (start-up included). The file's lines are counted against the
  instance's picture count.
- raw: a fresh process (--raw-to FILE) with psycopg alone: one transaction, a server-side (named) cursor of
  itersize 5000 on the same SELECT (the same columns, the same ORDER BY product_id, pic_name), each row
  written as the export writes it (public names, empty attributes left out, json.dumps, ensure_ascii=False),
  fsync at the end as the export's local writer does. The two files are compared byte for byte (sha256).

stdout gets a short table; --json FILE also writes every figure as JSON. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVICE_TYPE = "generic"
ITERSIZE = 5000  # the raw cursor's rows per fetch (store.pictures.metadata streams 5000 at a time too)
WORDS = ("red", "blue", "green", "cotton", "wool", "leather", "summer", "winter", "sale", "new", "classic",
         "Größe", "颜色", "café", "x" * 40)


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def status_kb(pid: int | str = "self") -> dict:
    """VmHWM and VmRSS of a process, in kB."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


# ---- the rows -----------------------------------------------------------------------------------------------


def synthetic_rows(count: int, dim: int, columns: tuple[str, ...], seed: int = 17):
    """Tuples of ``columns`` for bulk_load: random unit embeddings (clustered) and varied attributes."""
    import numpy as np

    from imagesearch_pg.categories import OTHER

    rng = np.random.default_rng(seed)
    # Non-negative unit vectors around 1,000 centres, like the encoder's ReLU6 features (the recipe of
    # benchmarks/search.py, drawn block by block): uniform random 1280-d vectors took the HNSW build about
    # three times as long (100,000 rows, same busy machine: 175 s against 57 s) for an index the export never reads.
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    block = 10_000
    for start in range(0, count, block):
        n = min(block, count - start)
        vectors = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, dim), dtype=np.float32)
        np.maximum(vectors, 0, out=vectors)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ints = rng.integers(-(2**31), 2**31 - 1, size=(n, 4), endpoint=True)
        empty = rng.random((n, 9)) < 0.15  # about one attribute in seven left empty
        words = rng.integers(0, len(WORDS), size=(n, 4))
        numbers = rng.integers(0, 100_000, size=n)
        for i in range(n):
            at = start + i
            values = {
                "product_id": f"p{at // 3}", "pic_name": f"{at}.jpg", "category_id": OTHER, "embedding": vectors[i],
                "custom_content": None if empty[i, 0] else f"colour:{WORDS[words[i, 0]]},size:{numbers[i] % 50},n:{at}",
                "int_attr": None if empty[i, 1] else int(ints[i, 0]),
                "int_attr2": None if empty[i, 2] else int(ints[i, 1] % 1000),
                "int_attr3": None if empty[i, 3] else int(ints[i, 2]),
                "int_attr4": None if empty[i, 4] else at,
                "str_attr": None if empty[i, 5] else WORDS[words[i, 1]],
                "str_attr2": None if empty[i, 6] else f"{WORDS[words[i, 2]]}-{numbers[i]}",
                "str_attr3": None if empty[i, 7] else str(numbers[i]),
                "str_attr4": None if empty[i, 8] else f"{WORDS[words[i, 3]]} {WORDS[words[i, 1]]} \"{at}\"",
            }
            yield tuple(values[c] for c in columns)


def load(service, name: str, rows: int) -> None:
    import sqlalchemy as sa

    from imagesearch_pg.attributes import ATTRIBUTE_NAMES
    from imagesearch_pg.store import bulk_load

    columns = (*bulk_load.BULK_COLUMNS, *ATTRIBUTE_NAMES)
    service.create_instance(name, SERVICE_TYPE, capacity=rows)
    instance = service.instances.cached(name)
    began = time.perf_counter()

    def progress(loaded: int) -> None:
        if loaded % 100_000 == 0 or loaded == rows:
            log(f"  copied {loaded} rows ({time.perf_counter() - began:.0f} s)")

    with service.database.transaction() as conn:
        # The HNSW graph of 1M 1280-d vectors is about 6 GB: built in memory, not on disk page by page.
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '10GB'"))
        bulk_load.bulk_load(conn, instance.id, synthetic_rows(rows, instance.embedding_dim, columns), progress,
                            columns=columns)
        log(f"  rows copied and index built ({time.perf_counter() - began:.0f} s), committing")
    log(f"loaded {rows} rows into {name} in {time.perf_counter() - began:.0f} s")


# ---- the two children ---------------------------------------------------------------------------------------


def run_task(task_id: int) -> None:
    """--run-task: run one export task with a Worker in this process, then report memory as JSON."""
    import threading

    began = time.perf_counter()
    from imagesearch_pg.service import ImageSearch
    from imagesearch_pg.store.tasks import FINAL_STATES
    from imagesearch_pg.tasks.worker import Worker

    service = ImageSearch.open()
    opened = status_kb()
    stop = threading.Event()
    worker = Worker(service, only=task_id, poll_seconds=0.2)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    while service.tasks.get(task_id).state not in FINAL_STATES:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=60)
    ended = status_kb()
    service.close()
    print(json.dumps({"opened": opened, "ended": ended, "life_s": round(time.perf_counter() - began, 2)}))


def raw_export(url: str, instance_id: int, path: str) -> None:
    """--raw-to: the same rows as JSON lines through a psycopg server-side cursor; memory and time as JSON."""
    began = time.perf_counter()
    import psycopg

    # Nothing of the library here: the names written out as the export names them.
    columns = ("product_id", "pic_name", "category_id", "custom_content", "int_attr", "int_attr2", "int_attr3",
               "int_attr4", "str_attr", "str_attr2", "str_attr3", "str_attr4")
    names = ["ProductId", "PicName", "CategoryId", "CustomContent", "IntAttr", "IntAttr2", "IntAttr3", "IntAttr4",
             "StrAttr", "StrAttr2", "StrAttr3", "StrAttr4"]
    opened = status_kb()
    rows = 0
    with psycopg.connect(url) as conn, open(path, "wb") as out:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor(name="raw_export") as cursor:
            cursor.itersize = ITERSIZE
            cursor.execute(f"SELECT {', '.join(columns)} FROM imagesearch.pictures_{int(instance_id)} "
                           "ORDER BY product_id, pic_name")
            for row in cursor:
                record = {name: value for name, value in zip(names, row) if value is not None}
                out.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
                rows += 1
        out.flush()
        os.fsync(out.fileno())
        seconds = time.perf_counter() - started
    print(json.dumps({"opened": opened, "ended": status_kb(), "rows": rows, "seconds": round(seconds, 2),
                      "life_s": round(time.perf_counter() - began, 2)}))


def child(arguments: list[str], env: dict, pgdata: Path | None) -> tuple[dict, dict]:
    """Run this script with ``arguments``; its JSON report, and what was seen from here: wall seconds, the
    VmHWM read while it ran (kB), its CPU seconds and its ru_maxrss (from wait4), PostgreSQL's CPU seconds."""
    from benchmarks.batch_import import postgres_cpu

    postgres_before = postgres_cpu(pgdata)
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE, env=env, text=True)
    seen = 0
    while True:
        seen = max(seen, status_kb(process.pid).get("VmHWM", 0))
        pid, code, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(code)
    wall = time.perf_counter() - began
    out = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"child {arguments[0]} failed ({process.returncode})")
    postgres_after = postgres_cpu(pgdata)
    outside = {"wall_s": round(wall, 2), "vmhwm_seen_kb": seen, "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
               "maxrss_kb": usage.ru_maxrss,
               "postgres_cpu_s": None if postgres_before is None else round(postgres_after - postgres_before, 2)}
    return json.loads(out.strip().splitlines()[-1]), outside


def digest(path: Path) -> tuple[str, int]:
    sha, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            lines += block.count(b"\n")
    return sha.hexdigest(), lines


# ---- the run ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="export and raw this many times each, alternating")
    parser.add_argument("--keep", action="store_true", help="leave the instance afterwards (its name is printed)")
    parser.add_argument("--instance", help="reuse this instance (made by an earlier --keep run with the same --rows)")
    parser.add_argument("--home", help="IMAGESEARCH_HOME for this run (its own embedded database)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--run-task", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--raw-to", help=argparse.SUPPRESS)
    parser.add_argument("--raw-instance", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.home:
        os.environ["IMAGESEARCH_HOME"] = str(Path(args.home).expanduser().resolve())
    if args.run_task is not None:
        return run_task(args.run_task)
    if args.raw_to:
        return raw_export(os.environ["BENCH_RAW_URL"], args.raw_instance, args.raw_to)

    from benchmarks.batch_import import code_digests
    from benchmarks.common import measured_instance

    from imagesearch_pg.service import ImageSearch

    service = ImageSearch.open()
    results: dict = {"rows": args.rows, "service_type": SERVICE_TYPE, "nproc": os.cpu_count(),
                     "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                     "load_at_start": [round(v, 2) for v in os.getloadavg()], "code": code_digests(), "rounds": []}
    began = time.perf_counter()
    with measured_instance(service, args, "bench-export", lambda name: load(service, name, args.rows), log) as name:
        if not args.instance:
            results["load_s"] = round(time.perf_counter() - began, 1)
        instance = service.instances.current(name)
        count = service.describe_instance(name).picture_count
        results["picture_count"] = count
        url = service.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        env = {**os.environ, "BENCH_RAW_URL": url}
        pgdata = service.settings.pgdata if service.database.is_embedded else None
        scratch = Path(tempfile.mkdtemp(prefix="bench-export-"))
        results_location = service.storage.results()
        try:
            for number in range(args.rounds):
                order = ("export", "raw") if number % 2 == 0 else ("raw", "export")
                figures: dict = {}
                for what in order:
                    load_before = round(os.getloadavg()[0], 2)
                    log(f"round {number + 1}: {what} ...")
                    if what == "export":
                        task = service.tasks.submit_export(name)
                        report, outside = child(["--run-task", str(task.id)], env, pgdata)
                        task = service.tasks.get(task.id)
                        seconds = (task.finished_at - task.started_at).total_seconds()
                        with results_location.reader(task.result_url) as stream:
                            local_copy = scratch / "export.jsonl"
                            with open(local_copy, "wb") as f:
                                for block in iter(lambda: stream.read(1 << 20), b""):
                                    f.write(block)
                        sha, lines = digest(local_copy)
                        local_copy.unlink()
                        if not args.keep:
                            results_location.remove(task.result_url)
                        figures["export"] = {
                            "state": task.state, "message": task.error_message, "lines": lines,
                            "lines_equal_picture_count": lines == count, "sha256": sha,
                            "task_s": round(seconds, 2), "rows_per_s": round(lines / seconds),
                            "rows_per_s_child_wall": round(lines / outside["wall_s"]),
                            "vmhwm_mb": round(report["ended"]["VmHWM"] / 1024, 1),
                            "vmhwm_after_open_mb": round(report["opened"]["VmHWM"] / 1024, 1),
                            "child_life_s": report["life_s"], **outside,
                        }
                    else:
                        out = scratch / "raw.jsonl"
                        report, outside = child(["--raw-to", str(out), "--raw-instance", str(instance.id)], env,
                                                pgdata)
                        sha, lines = digest(out)
                        out.unlink()
                        figures["raw"] = {
                            "lines": lines, "sha256": sha, "query_and_write_s": report["seconds"],
                            "rows_per_s": round(lines / report["seconds"]),
                            "rows_per_s_child_wall": round(lines / outside["wall_s"]),
                            "vmhwm_mb": round(report["ended"]["VmHWM"] / 1024, 1), **outside,
                        }
                    figures[what].update(load_before=load_before, load_after=round(os.getloadavg()[0], 2))
                    log(f"  {figures[what]}")
                figures["same_bytes"] = figures["export"]["sha256"] == figures["raw"]["sha256"]
                figures["export_vs_raw"] = round(figures["export"]["rows_per_s"] / figures["raw"]["rows_per_s"], 3)
                results["rounds"].append(figures)
        finally:
            for leftover in scratch.iterdir():
                leftover.unlink()
            scratch.rmdir()
        results["load_at_end"] = [round(v, 2) for v in os.getloadavg()]

    table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict) -> None:
    print(f"{results['picture_count']} pictures in a generic instance (load + index {results.get('load_s', '-')} s); "
          f"load {results['load_at_start']} -> {results['load_at_end']}")
    print("| round | column | rows/s | seconds | rows/s over the process's life | peak memory (VmHWM) MB | "
          "cpu s: process / postgres | rows = picture count | same bytes | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for number, figures in enumerate(results["rounds"], start=1):
        e, r = figures["export"], figures["raw"]
        print(f"| {number} | DumpMeta task (Worker in its own process) | {e['rows_per_s']} | {e['task_s']} | "
              f"{e['rows_per_s_child_wall']} | {e['vmhwm_mb']} (after open {e['vmhwm_after_open_mb']}) | "
              f"{e['cpu_s']} / {e['postgres_cpu_s']} | {e['lines_equal_picture_count']} | {figures['same_bytes']} | {e['load_before']} -> {e['load_after']} |")
        print(f"| {number} | raw psycopg server-side cursor | {r['rows_per_s']} | {r['query_and_write_s']} | "
              f"{r['rows_per_s_child_wall']} | {r['vmhwm_mb']} | {r['cpu_s']} / {r['postgres_cpu_s']} | "
              f"{r['lines'] == results['picture_count']} | "
              f"{figures['same_bytes']} | {r['load_before']} -> {r['load_after']} |")


if __name__ == "__main__":
    main()
