"""What the production server logs while its database is unreachable (README: "requests answer 503
ServiceUnavailable (one log line per 10 s, not a traceback per request)").

`imagesearch serve` (with its task worker, as shipped) reaches the suite's PostgreSQL through a proxy in
this process; cutting the proxy makes the database unreachable to that server alone, as a lost network
would, while the suite's own connections go on. Every kind of request is then sent several times, to the
workers that were serving and then to workers gunicorn started in their place during the outage: each is
answered 503, and the server's log (stderr; the access log is apart) holds no traceback and fewer lines
than requests."""

from __future__ import annotations

import base64
import os
import signal
import socket
import threading
import time
import uuid
from urllib.parse import quote

import psutil
import pytest
import requests

from tests.http_requests import post, signed_request
from tests.pictures import encode, noise
from tests.serving import serving

ROUNDS = 4  # each kind of request, while the database is unreachable, before and after the workers are new
PATIENCE = 120.0  # seconds gunicorn may take to replace its workers on a busy machine


class Proxy:
    """TCP on a free loopback port to the database server (its TCP address or its Unix socket). ``cut()``
    closes the port and every connection through it: new ones are refused, open ones end."""

    def __init__(self, target):
        self.target = target  # (host, port) or the Unix socket's path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.is_cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # cut
                return
            upstream = socket.socket(socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET)
            upstream.connect(self.target)
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        if self.is_cut:
            return
        self.is_cut = True
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone leaves it listening)
        self.listener.close()
        with self.lock:
            for end in self.open:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()


@pytest.fixture
def proxied_url(engine):
    """The suite's database URL, rewritten to go through a Proxy; yields (url, proxy)."""
    url = engine.url
    with engine.connect() as conn:
        port = int(conn.exec_driver_sql("SELECT current_setting('port')").scalar_one())
    socket_dir = url.query.get("host")
    target = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else (url.host, url.port or 5432)
    proxy = Proxy(target)
    query = {key: value for key, value in url.query.items() if key != "host"}
    yield url.set(host="127.0.0.1", port=proxy.port, query=query).render_as_string(hide_password=False), proxy
    proxy.cut()


def gunicorn_workers(server) -> set[int]:
    """The pids of the server's live gunicorn workers (its children but the task worker)."""
    found = set()
    for child in psutil.Process(server.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" not in child.cmdline()[2:4]:
                found.add(child.pid)
        except psutil.Error:  # it ended meanwhile
            pass
    return found


def fresh_workers(server) -> None:
    """Kill every gunicorn worker, as gunicorn itself kills one past its timeout (a request stuck on an
    unreachable database), and wait until gunicorn has replaced them: processes that have not opened their
    service yet."""
    old = gunicorn_workers(server)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + PATIENCE
    while (now := gunicorn_workers(server)) & old or len(now) != len(old):
        assert time.monotonic() < deadline, f"gunicorn did not replace its workers {old}: {now}"
        time.sleep(0.1)


def test_no_traceback_while_the_database_is_unreachable(proxied_url, settings, credentials, shop):
    url, proxy = proxied_url
    content = quote(base64.b64encode(encode(noise(96, 96, seed=11))).decode(), safe="")
    with serving({"IMAGESEARCH_DATABASE_URL": url, "IMAGESEARCH_HOME": str(settings.home)}, workers=2) as (server, port):
        endpoint = f"127.0.0.1:{port}"

        def api(action: str, fields: str) -> tuple[int, str]:
            body = fields.encode()
            return post(endpoint, signed_request(endpoint, *credentials, body, action=action), body)[0], action

        def every_kind() -> list[tuple[int, str]]:
            answers = [
                api("Detail", f"InstanceName={shop}"),
                api("AddImage", f"InstanceName={shop}&ProductId=p&PicName=1&Crop=false&PicContent={content}"),
                api("SearchImageByPic", f"InstanceName={shop}&Crop=false&PicContent={content}"),
                api("SearchImageByFilter", f"InstanceName={shop}&Filter=int_attr%3D1"),
                api("DeleteImage", f"InstanceName={shop}&ProductId=p"),
            ]
            for path in ("/health", "/login", "/", f"/instances/{shop}",
                         f"/downloads/meta/1?Expires=9999999999&Signature={uuid.uuid4().hex}"):
                answers.append((requests.get(f"http://{endpoint}{path}", timeout=30, allow_redirects=False).status_code,
                                path))
            return answers

        assert api("Detail", f"InstanceName={shop}")[0] == 200  # a key remembered, connections pooled
        since = server.logs.sizes()
        proxy.cut()
        answers = [answer for _ in range(ROUNDS) for answer in every_kind()]  # workers that have their service
        fresh_workers(server)
        answers += [answer for _ in range(ROUNDS) for answer in every_kind()]  # workers that open it now
        _, errors = server.logs.read(since)
    # 403: a made-up download link refused for its signature, by a worker that did not need the database.
    assert {status for status, _ in answers} <= {503, 403}, [a for a in answers if a[0] not in (503, 403)]
    assert sum(status == 503 for status, _ in answers) >= len(answers) * 9 // 10
    assert "Traceback" not in errors, errors[-4000:]
    assert len(errors.splitlines()) < len(answers) / 4, errors[-4000:]
