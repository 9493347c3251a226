"""The real server (`imagesearch serve`, flask_app/front.py) refusing malformed and hostile HTTP in the
protocol's JSON, and answering valid requests while hundreds of stalled clients hold connections open."""

from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlencode

import pytest
import requests

from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.raw_http import exchange, request_bytes, with_repeat
from tests.serving import health, serving


@pytest.fixture(scope="module")
def port(engine, settings):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=1) as (_, port):
        yield port


def raw(port: int, data: bytes, *, timeout: float = 15) -> tuple[int, dict]:
    return exchange(f"127.0.0.1:{port}", data, timeout=timeout)


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
    (REQUEST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),  # two lengths
    (REQUEST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n", 400),
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
    ("DELETE", "/?Action=Detail", 405, "MethodNotAllowed"), ("PUT", "/", 405, "MethodNotAllowed"),
    ("GET", "/nothing-here", 404, "InvalidPath"), ("POST", "/health", 405, "MethodNotAllowed"),
])
def test_other_paths_and_methods_are_json(port, method, path, status, code):
    response = requests.request(method, f"http://127.0.0.1:{port}{path}", timeout=10)
    assert response.status_code == status and response.json()["Code"] == code


def test_get_of_the_root_is_the_console_for_a_browser_and_the_api_for_an_api_call(port):
    """GET is how the RPC signature style's clients call by default: an unsigned call is refused as such."""
    browser = requests.get(f"http://127.0.0.1:{port}/", timeout=10, allow_redirects=False)
    assert browser.status_code == 302 and browser.headers["Location"].startswith("/login")
    for call in ({"headers": {"x-acs-action": "Detail"}}, {"params": {"Action": "Detail"}}):
        api = requests.get(f"http://127.0.0.1:{port}/", timeout=10, **call)
        assert api.status_code == 403 and api.json()["Code"] == "SignatureDoesNotMatch", call


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
    """Each health check is answered while 300 clients hold requests open, half in their head, half in their
    body: all of them still unanswered afterwards. A byte from each between checks keeps each one under the
    front's stall limit however long a check takes on a busy machine."""
    stalled = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nInstanceName=" if i % 2
                      else b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stalled.append(s)
        for _ in range(20):
            assert health(port, timeout=60)[0] == 200
            for s in stalled:
                s.sendall(b"a")  # a header value or a body that goes on, and on
        for s in stalled:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):  # no answer, and not closed: still stalling
                s.recv(1)
    finally:
        for s in stalled:
            s.close()


def test_a_stalled_request_is_closed_with_408(port):
    from flask_app.front import STALL_SECONDS

    began = time.monotonic()
    status, body = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nInstanceName=", timeout=120)
    assert (status, body["Code"]) == (408, "RequestTimeout")
    # closed by the stall limit (not the whole request's, 60 s), and not before it ran out
    assert body["Message"] == f"the client sent nothing for {STALL_SECONDS:.0f} s in the middle of a request"
    assert time.monotonic() - began >= STALL_SECONDS


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
    head, body, _ = asyncio.run(receive(budget, 60_000))
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


# ---- a header sent twice: refused before anything is read or done (issue 25) ----------------------------

PICTURE = base64.b64encode(encode(noise(150, 150, seed=25))).decode()


def _stocked(service, shop) -> dict:
    service.add_image(shop, "kept", "1.jpg", base64.b64decode(PICTURE))
    return {"add": lambda: service.check_image_exists(shop, "added", "1.jpg") is not None,
            "kept": lambda: service.check_image_exists(shop, "kept", "1.jpg") is not None}


def _fields(shop: str, action: str) -> bytes:
    fields = ({"ProductId": "added", "PicName": "1.jpg", "PicContent": PICTURE} if action == "AddImage"
              else {"ProductId": "kept", "PicName": "1.jpg"})
    return urlencode({"InstanceName": shop, **fields}).encode()


@pytest.mark.parametrize("action", ["AddImage", "DeleteImage"])
@pytest.mark.parametrize("before", [True, False], ids=["before-the-signed-one", "after-it"])
def test_a_signed_content_type_sent_twice_is_refused_and_nothing_is_done(port, service, shop, credentials, action,
                                                                          before):
    stored = _stocked(service, shop)
    address, body = f"127.0.0.1:{port}", _fields(shop, action)
    twice = with_repeat(signed_request(address, *credentials, body, action=action), "content-type",
                        "multipart/form-data; boundary=x", before=before)
    status, answer = exchange(address, request_bytes(twice, body))
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch") and "content-type" in answer["Message"]
    assert (stored["add"](), stored["kept"]()) == (False, True)
    # The same request with its header once is done: the refusal was the repeat's.
    once = list(signed_request(address, *credentials, body, action=action).items())
    assert exchange(address, request_bytes(once, body))[0] == 200
    assert (stored["add"](), stored["kept"]()) == ((True, True) if action == "AddImage" else (False, False))


@pytest.mark.parametrize("name,value", [
    ("x-acs-action", "DeleteImage"), ("x-acs-signature-nonce", "another"), ("x-acs-date", "2020-01-01T00:00:00Z"),
    ("authorization", "ACS3-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=" + "0" * 64),
    ("content-length", "{length}"),  # h11 keeps one of two equal lengths: the front reports the repeat itself
])
def test_other_headers_that_must_be_sent_once_are_refused_through_the_front(port, service, shop, credentials, name,
                                                                             value):
    stored = _stocked(service, shop)
    address, body = f"127.0.0.1:{port}", _fields(shop, "DeleteImage")
    twice = with_repeat(signed_request(address, *credentials, body, action="DeleteImage"), name,
                        value.format(length=len(body)), before=False)
    status, answer = exchange(address, request_bytes(twice, body))  # with a Content-Length of its own
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch") and "more than once" in answer["Message"]
    assert stored["kept"]()


def test_a_header_no_signature_or_reading_depends_on_may_repeat(port, service, shop, credentials):
    stored = _stocked(service, shop)
    address, body = f"127.0.0.1:{port}", _fields(shop, "DeleteImage")
    headers = [*signed_request(address, *credentials, body, action="DeleteImage").items(), ("Accept", "text/plain"),
               ("Accept", "application/json")]
    assert exchange(address, request_bytes(headers, body))[0] == 200 and not stored["kept"]()
