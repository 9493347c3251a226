"""Requests written byte for byte to a test server, for what HTTP clients will not send (a header twice, in
a chosen order; malformed framing), and the JSON answer read back."""

from __future__ import annotations

import json
import socket


def request_bytes(headers: list[tuple[str, str]], body: bytes = b"", *, method: str = "POST", target: str = "/",
                  length: bool = True) -> bytes:
    """The request with ``headers`` in their order (a name may come twice), a Content-Length of ``body`` after
    them unless ``length`` is False, and Connection: close."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(address: str, data: bytes, *, timeout: float = 15) -> tuple[int, dict]:
    """Send ``data`` as it is to ``address`` (host:port); the status and the JSON body of the answer."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")]
            if length and len(body) >= length[0]:
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), answer[:500]
    return int(head.split(b" ")[1]), json.loads(body)


def with_repeat(signed: dict[str, str], name: str, value: str, *, before: bool) -> list[tuple[str, str]]:
    """The signed headers in order, with ``name: value`` sent once more just before or just after the
    signed one (at the end if the request has no such header)."""
    headers: list[tuple[str, str]] = []
    placed = False
    for signed_name, signed_value in signed.items():
        if signed_name.lower() == name and not placed:
            pair = [(name, value), (signed_name, signed_value)]
            headers += pair if before else pair[::-1]
            placed = True
        else:
            headers.append((signed_name, signed_value))
    return headers if placed else [*headers, (name, value)]
