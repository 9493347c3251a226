"""What the HTTP benchmarks share: an instance of synthetic vectors, and `imagesearch serve` on a free port
against the same database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from benchmarks.search import clustered_vectors
from imagesearch_pg.config import Settings
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.store import bulk_load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loaded_instance(service: ImageSearch, name: str, rows: int, qps: int, log) -> None:
    """A generic instance of ``rows`` synthetic vectors (p0..p<rows-1>, PicName "0") with a QPS plan."""
    service.create_instance(name, "generic", capacity=max(rows + 100_000, 1), qps=qps)
    instance_id = service.instances.cached(name).id
    log(f"loading {rows} vectors ...")
    with service.database.transaction() as conn:
        vectors = clustered_vectors(rows)
        bulk_load.bulk_load(conn, instance_id, ((f"p{i}", "0", 88888888, v) for i, v in enumerate(vectors)))


@contextmanager
def benchmark_instance(prefix: str, rows: int, qps: int, log):
    """The service, and a temporary instance of ``rows`` synthetic vectors (deleted at the end); yields
    (settings, service, instance name)."""
    settings = Settings.from_env()
    service = ImageSearch.open(settings)
    name = f"bench-{prefix}-{int(time.time())}"
    try:
        loaded_instance(service, name, rows, qps, log)
        yield settings, service, name
    finally:
        if name in {i.name for i in service.list_instances()}:
            service.delete_instance(name)
        service.close()


@dataclass(frozen=True)
class Served:
    """A benchmark instance behind a running server, with a key allowed on it."""

    name: str
    endpoint: str  # host:port
    key_id: str
    secret: str
    server: subprocess.Popen


@contextmanager
def served_instance(prefix: str, rows: int, qps: int, workers: int, log):
    """benchmark_instance() behind `imagesearch serve` with ``workers`` workers; yields a Served."""
    with benchmark_instance(prefix, rows, qps, log) as (settings, service, name):
        key_id, secret = service.access_keys.create([name])
        with serving(settings, service, workers) as (server, endpoint):
            yield Served(name, endpoint, key_id, secret, server)


def emit(report: dict, as_json: bool) -> None:
    print(json.dumps(report) if as_json else json.dumps(report, indent=2))


@contextmanager
def serving(settings: Settings, service: ImageSearch, workers: int):
    """`imagesearch serve` with ``workers`` workers; yields (process, "127.0.0.1:port")."""
    port = free_port()
    env = dict(os.environ, IMAGESEARCH_HOME=str(settings.home))
    if service.database.is_embedded:  # the server adopts the running embedded database
        env.pop("IMAGESEARCH_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "imagesearch_pg", "serve", "--port", str(port), "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://{endpoint}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {server.communicate()[1][-2000:]}")
            time.sleep(0.3)
        yield server, endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
