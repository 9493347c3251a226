"""What only the production front (flask_app/front.py) does, tried on the wire against `imagesearch serve`:
header names with "_" dropped, kept-alive connections and their end, and the bytes of bodies held at once."""

from __future__ import annotations

import json
import socket

import pytest

from flask_app import front
from tests.http_requests import signed_request
from tests.pictures import encode, noise


@pytest.fixture
def stocked(service, shop):
    service.add_image(shop, "a", "1", encode(noise(120, 120, seed=4)))
    return shop


def connect(server: str, timeout: float = 30) -> socket.socket:
    host, port = server.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def head_bytes(headers: list[tuple[str, str]], body: bytes, *, close: bool = False) -> bytes:
    lines = ["POST / HTTP/1.1", *(f"{name}: {value}" for name, value in headers), f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_answer(sock: socket.socket, pending: bytearray) -> tuple[int, dict, dict]:
    """One answer read from ``sock`` (``pending``: bytes already read past the answer before): status, headers
    (lower-case names), JSON body."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {bytes(pending[:300])!r}"
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside an answer"
        rest += chunk
    pending[:] = rest[length:]
    return int(lines[0].split(" ")[1]), headers, json.loads(rest[:length])


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_header_name_with_an_underscore_is_dropped_not_read_as_a_dash(server, credentials, service, stocked):
    """Under WSGI's naming x_acs_action and x-acs-action are one key: a front that passed it on would let an
    unsigned x_acs_action decide the action. The signed CheckImageExists runs; nothing is deleted."""
    body = f"InstanceName={stocked}&ProductId=a&PicName=1".encode()
    headers = [*signed_request(server, *credentials, body, action="CheckImageExists").items(),
               ("x_acs_action", "DeleteImage"), ("x_acs_signature_nonce", "another")]
    with connect(server) as sock:
        sock.sendall(head_bytes(headers, body, close=True))
        status, _, answer = read_answer(sock, bytearray())
    assert status == 200 and answer["Exists"] is True, answer
    assert service.describe_instance(stocked).picture_count == 1


def test_a_kept_alive_connection_serves_requests_in_turn_and_is_closed_when_idle(server, credentials, stocked):
    with connect(server) as sock:
        pending = bytearray()
        for _ in range(3):  # each request newly signed: a nonce is used once
            body = f"InstanceName={stocked}".encode()
            sock.sendall(head_bytes(list(signed_request(server, *credentials, body).items()), body))
            status, headers, answer = read_answer(sock, pending)
            assert status == 200 and answer["Instance"]["Name"] == stocked
            assert headers.get("connection", "").lower() != "close"
        assert closed_by_server(sock)  # after the keep-alive time with nothing sent
        assert not pending


def test_after_a_refusal_the_front_closes_the_connection(server, credentials, stocked):
    """A request the front refuses may have left bytes it never read: nothing after it on that connection
    is read as a request."""
    smuggled = f"InstanceName={stocked}".encode()
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                     + head_bytes(list(signed_request(server, *credentials, smuggled).items()), smuggled))
        pending = bytearray()
        status, headers, answer = read_answer(sock, pending)
        assert (status, answer["Code"], headers["connection"]) == (400, "InvalidParameter", "close")
        assert not pending and closed_by_server(sock)


def test_bodies_held_at_once_are_bounded_per_worker(server):
    """Each connection sends all but the last byte of an 8 MB body, so the front holds it until the stall
    limit. A worker holds 16 such bodies (128 MB) and refuses bytes past them with 503; the server's two
    workers together hold from 16 (all refused ones reached one worker) to 32, whatever the kernel's
    sharing of connections between them."""
    size = front.MAX_BODY_BYTES
    held_per_worker = front.BUFFERED_BYTES_PER_WORKER // (size - 1)
    assert held_per_worker == 16
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nx-acs-action: Detail\r\nContent-Length: %d\r\n\r\n" % size)
    connections = [connect(server, timeout=60) for _ in range(36)]
    outcomes = []
    try:
        for sock in connections:
            try:
                sock.sendall(head + b"a" * (size - 1))
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused while sending
        for sock in connections:
            try:
                status, _, answer = read_answer(sock, bytearray())
                outcomes.append((status, answer["Code"]))
            except (ConnectionResetError, AssertionError):  # refused, and the answer lost to the reset
                outcomes.append((503, "reset"))
    finally:
        for sock in connections:
            sock.close()
    held = outcomes.count((408, "RequestTimeout"))  # held whole until the client stalled
    refused = [o for o in outcomes if o[0] == 503]
    assert held + len(refused) == len(connections), outcomes
    assert held_per_worker <= held <= 2 * held_per_worker, outcomes
    assert all(code in ("ServiceUnavailable", "reset") for _, code in refused), outcomes
