"""The front's clocks and head limit as the README states them (flask_app/front.py): a request must arrive whole
within 60 s, with no pause over 10 s (else 408); idle keep-alive connections close after 2 s; request line and
headers over 16 kB get 431. The numbers are written here, not read from the code.

The clocks run on an event loop whose time jumps to its next timer whenever nothing else is ready, so 60 s
pass at once and each refusal is seen at the exact moment it was due; no test waits on the wall clock. On the
wire, the production server shows the two clocks in their order (an idle connection ends before a stalled
request is refused) and the 16 kB edge from both sides."""

from __future__ import annotations

import asyncio
import selectors
import socket

import h11
import pytest

from flask_app import front, server as http_server
from tests.http_requests import signed_request
from tests.raw_http import exchange, request_bytes

HEAD_LIMIT = 16 * 1024


class JumpingClockLoop(asyncio.SelectorEventLoop):
    """An event loop on a clock of its own that starts at 0 and, when nothing is ready, jumps to the next timer
    instead of waiting for it."""

    def __init__(self):
        self.now = 0.0
        selector = selectors.DefaultSelector()
        select = selector.select

        def select_without_waiting(timeout=None):
            ready = select(0)
            if not ready:
                if timeout is None:
                    raise AssertionError("the loop would wait forever: no timer is due and nothing can wake it")
                self.now += timeout
            return ready

        selector.select = select_without_waiting
        super().__init__(selector)

    def time(self) -> float:
        return self.now


def read_on_jumping_clock(arrivals: list[tuple[float, bytes]], keepalive: float):
    """front._read_request on a new connection whose bytes arrive at the given times: (the request or the
    Refusal, the clock's time when the front was done)."""
    loop = JumpingClockLoop()

    async def read():
        reader = asyncio.StreamReader()
        for when, data in arrivals:
            loop.call_at(when, reader.feed_data, data)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=front.MAX_HEADER_BYTES)
        try:
            return await front._read_request(conn, reader, None, keepalive, front._Budget(1 << 20))
        except front.Refusal as refusal:
            return refusal

    try:
        return loop.run_until_complete(read()), loop.time()
    finally:
        loop.close()


@pytest.fixture(scope="module")
def shipped():
    """The gunicorn configuration `imagesearch serve` runs with (built, not started)."""
    return http_server.gunicorn_application({}, host="127.0.0.1", port=0, workers=2, console_hint="").cfg


def test_the_server_runs_the_front_with_a_2_s_keepalive(shipped):
    assert (shipped.worker_class_str, shipped.keepalive) == ("flask_app.front.FrontWorker", 2)


HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nx-acs-action: Detail\r\nContent-Length: 7\r\n\r\n"


def test_an_idle_connection_is_closed_after_2_s_and_a_request_before_then_is_read(shipped):
    assert read_on_jumping_clock([], shipped.keepalive) == (None, 2.0)
    request, when = read_on_jumping_clock([(1.9, HEAD + b"a" * 7)], shipped.keepalive)
    assert (request[0].method, request[1], when) == (b"POST", b"a" * 7, 1.9)


def test_a_pause_of_10_s_in_a_request_is_refused_with_408(shipped):
    refusal, when = read_on_jumping_clock([(0.0, HEAD + b"a")], shipped.keepalive)
    assert (refusal.status, refusal.code, when) == (408, "RequestTimeout", 10.0)
    assert "sent nothing for 10 s" in refusal.message
    # A pause just under it is waited out: the rest arrives at 9.9 s.
    request, when = read_on_jumping_clock([(0.0, HEAD + b"a"), (9.9, b"b" * 6)], shipped.keepalive)
    assert (request[1], when) == (b"a" + b"b" * 6, 9.9)


def test_a_request_must_arrive_whole_within_60_s(shipped):
    """One byte every 9 s (never a pause of 10 s): the body's last byte at 59.5 s is read; a body one byte
    longer, whose last byte would come at 63 s, is refused when the 60 s are up."""
    trickle = [(0.0, HEAD)] + [(9.0 * n, b"a") for n in range(1, 7)]
    request, when = read_on_jumping_clock([*trickle, (59.5, b"a")], shipped.keepalive)
    assert (request[1], when) == (b"a" * 7, 59.5)
    refusal, when = read_on_jumping_clock([(0.0, HEAD.replace(b"Length: 7", b"Length: 8")), *trickle[1:],
                                           (63.0, b"a"), (72.0, b"a")], shipped.keepalive)
    assert (refusal.status, refusal.code, when) == (408, "RequestTimeout", 60.0)
    assert "did not arrive within 60 s" in refusal.message


# ---- on the wire: the production server ----------------------------------------------------------------


def signed_detail(server: str, credentials, shop: str, head_size: int) -> bytes:
    """A signed Detail request whose request line and headers are ``head_size`` bytes (an unsigned x-pad
    header makes up the size)."""
    body = f"InstanceName={shop}".encode()
    headers = list(signed_request(server, *credentials, body).items())
    unpadded = len(request_bytes([*headers, ("x-pad", "")], body)) - len(body)
    padded = request_bytes([*headers, ("x-pad", "p" * (head_size - unpadded))], body)
    assert len(padded) - len(body) == head_size
    return padded


def test_a_head_just_under_16_kb_is_read_and_just_over_is_431(server, credentials, shop):
    status, answer = exchange(server, signed_detail(server, credentials, shop, HEAD_LIMIT - 100))
    assert status == 200 and answer["Instance"]["Name"] == shop, answer
    status, answer = exchange(server, signed_detail(server, credentials, shop, HEAD_LIMIT + 100))
    assert (status, answer.get("Code")) == (431, "InvalidParameter") and "16 kB" in answer["Message"], answer


def answered(sock: socket.socket) -> bytes:
    """Read one answer with a Content-Length from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            [line for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")
             if line.lower().startswith(b"content-length:")][0].split(b":")[1]):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_an_idle_kept_alive_connection_ends_before_a_stalled_request_is_refused(server, credentials, shop):
    """The server's own clocks in order: the keep-alive (2 s) runs out before the pause limit (10 s) of a
    request stalled just after the idle connection's last answer."""
    host, port = server.rsplit(":", 1)
    idle = socket.create_connection((host, int(port)), timeout=60)
    stalled = socket.create_connection((host, int(port)), timeout=60)
    try:
        body = f"InstanceName={shop}".encode()
        headers = list(signed_request(server, *credentials, body).items())
        idle.sendall(request_bytes(headers, body).replace(b"Connection: close\r\n", b""))
        assert answered(idle).startswith(b"HTTP/1.1 200 ")
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nInstanceName=")
        events = []
        with selectors.DefaultSelector() as watch:
            watch.register(idle, selectors.EVENT_READ, "idle closed")
            watch.register(stalled, selectors.EVENT_READ, "stalled refused")
            while len(events) < 2:
                ready = watch.select(timeout=60)
                assert ready, f"nothing happened within a minute after {events}"
                for key, _ in ready:
                    if key.data == "idle closed":
                        assert key.fileobj.recv(1) == b""
                    else:
                        assert answered(key.fileobj).startswith(b"HTTP/1.1 408 ")
                    events.append(key.data)
                    watch.unregister(key.fileobj)
        assert events == ["idle closed", "stalled refused"]
    finally:
        idle.close()
        stalled.close()
