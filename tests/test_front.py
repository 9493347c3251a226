"""The real server (`imagesearch serve`, flask_app/front.py) refusing malformed and hostile HTTP in the
protocol's JSON, and answering valid requests while hundreds of stalled clients hold connections open."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.serving import health, serving


@pytest.fixture(scope="module")
def port(engine, settings):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=1) as (_, port):
        yield port


def raw(port: int, data: bytes, *, timeout: float = 15) -> tuple[int, dict]:
    """Send ``data`` as it is; the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
            if length and len(body) >= length[0]:
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), answer[:500]
    return int(head.split(b" ")[1]), json.loads(body)


REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nx-acs-action: Detail\r\n"


@pytest.mark.parametrize("data,status", [
    (REQUEST + b"x-bad: a\x00b\r\nContent-Length: 0\r\n\r\n", 400),  # NUL in a header
    (REQUEST + b"x-big: " + b"a" * 20000 + b"\r\n\r\n", 431),  # headers over 16 kB
    (REQUEST + b"Content-Length: ten\r\n\r\n", 400),
    (REQUEST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (REQUEST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),  # not a chunk size
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /" + b"x" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),  # a 20 kB request target
    (b"POST / HTTP/1.1\r\n" + b"x" * 20000 + b"\r\n\r\n", 400),  # a 20 kB line that is no header
    (REQUEST + b"Content-Length: 9000000\r\n\r\n", 413),  # refused before the body is read
])
def test_malformed_requests_get_json_refusals(port, data, status):
    got, body = raw(port, data)
    assert got == status and body["Code"] and body["Message"] and body["RequestId"]


def test_a_chunked_body_over_8_mb_is_413(port):
    chunk = b"A" * 1_000_000
    data = REQUEST + b"Transfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 9 + b"0\r\n\r\n"
    status, body = raw(port, data, timeout=60)
    assert (status, body["Code"]) == (413, "InvalidParameter") and "8 MB" in body["Message"]


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/?Action=Detail", 405, "MethodNotAllowed"), ("PUT", "/", 405, "MethodNotAllowed"),
    ("GET", "/nothing-here", 404, "InvalidPath"), ("POST", "/health", 405, "MethodNotAllowed"),
])
def test_other_paths_and_methods_are_json(port, method, path, status, code):
    response = requests.request(method, f"http://127.0.0.1:{port}{path}", timeout=10)
    assert response.status_code == status and response.json()["Code"] == code


def test_get_of_the_root_is_the_console_for_a_browser_and_405_for_an_api_call(port):
    browser = requests.get(f"http://127.0.0.1:{port}/", timeout=10, allow_redirects=False)
    assert browser.status_code == 302 and browser.headers["Location"].startswith("/login")
    api = requests.get(f"http://127.0.0.1:{port}/", headers={"x-acs-action": "Detail"}, timeout=10)
    assert api.status_code == 405 and api.json()["Code"] == "MethodNotAllowed"


def test_a_multipart_body_is_read_whole(port, service, shop, credentials):
    picture = encode(noise(300, 300, seed=9))  # ~200 kB of base64 in a multipart form field

    fields = {"InstanceName": shop, "ProductId": "p", "PicName": "1", "PicContent": base64.b64encode(picture).decode()}
    prepared = requests.Request("POST", f"http://127.0.0.1:{port}/", files={k: (None, v) for k, v in fields.items()}).prepare()
    assert len(prepared.body) > 150_000
    headers = signed_request(f"127.0.0.1:{port}", *credentials, prepared.body, action="AddImage",
                             content_type=prepared.headers["Content-Type"])
    response = requests.post(f"http://127.0.0.1:{port}/", data=prepared.body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert service.check_image_exists(shop, "p", "1") is not None


def test_valid_requests_are_answered_while_hundreds_of_clients_stall(port):
    stalled = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nInstanceName=" if i % 2 else b"POST / HTT")
            stalled.append(s)
        times = []
        for _ in range(20):
            began = time.monotonic()
            assert health(port, timeout=5)[0] == 200
            times.append(time.monotonic() - began)
        assert max(times) < 1.0, times
    finally:
        for s in stalled:
            s.close()


def test_a_stalled_request_is_closed_with_408(port):
    began = time.monotonic()
    status, body = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nInstanceName=", timeout=30)
    assert (status, body["Code"]) == (408, "RequestTimeout")
    assert 9 <= time.monotonic() - began <= 15


def test_bodies_held_at_once_are_bounded_per_worker():
    import asyncio

    import h11

    from flask_app import front

    async def receive(budget, size: int):
        reader = asyncio.StreamReader()
        reader.feed_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size)
        reader.feed_eof()
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=front.MAX_HEADER_BYTES)
        return await front._read_request(conn, reader, None, 2.0, budget)

    budget = front._Budget(100_000)
    head, body = asyncio.run(receive(budget, 60_000))
    assert len(body) == 60_000 and budget.used == 0  # given back once the request is whole
    budget.used = 50_000  # other connections hold half of it
    with pytest.raises(front.Refusal) as refused:
        asyncio.run(receive(budget, 60_000))
    assert refused.value.status == 503 and budget.used == 50_000


def test_downloads_stream_through_the_front_and_the_server_runs_tasks(port, service, shop, engine):
    import sqlalchemy as sa

    from imagesearch_pg.store.tables import tasks

    service.add_image(shop, "p", "1.jpg", encode(noise(200, 200, seed=4)))
    task = service.tasks.submit_export(shop)  # run by the task worker `imagesearch serve` started
    deadline = time.monotonic() + 60
    while (task := service.tasks.get(task.id)).state != "succeeded":
        assert time.monotonic() < deadline and task.state in ("queued", "running"), task
        time.sleep(0.2)
    response = requests.get(service.tasks.link(task, "meta", f"http://127.0.0.1:{port}"), timeout=30)
    assert response.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in response.headers
    assert [json.loads(line)["ProductId"] for line in response.text.splitlines()] == ["p"]

    # A report of 200,000 failed lines leaves block by block (a buffered answer would hold ~20 MB twice).
    with engine.begin() as conn:
        instance_id = conn.execute(sa.select(tasks.c.instance_id).where(tasks.c.id == task.id)).scalar_one()
        failed = conn.execute(sa.insert(tasks).values(
            instance_id=instance_id, kind="import", state="partially_failed", params={"instance": shop},
            finished_at=sa.func.now()).returning(tasks.c.id)).scalar_one()
        conn.execute(sa.text("INSERT INTO imagesearch.task_errors (task_id, line, content, reason) "
                             "SELECT :id, n, repeat('x', 60), 'the reason' FROM generate_series(1, 200000) n"),
                     {"id": failed})
    report = requests.get(service.tasks.link(service.tasks.get(failed), "errors", f"http://127.0.0.1:{port}"),
                          stream=True, timeout=60)
    assert report.headers.get("Transfer-Encoding") == "chunked"
    numbers = [json.loads(line)["line"] for line in report.iter_lines()]
    assert numbers == list(range(1, 200_001))
