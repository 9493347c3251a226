"""Valid requests while hundreds of clients stall: latency of `imagesearch serve` with and without them.

    python benchmarks/slow_clients.py [--stalled 300] [--requests 300] [--workers 2] [--json]

First --requests signed SearchImageByName requests one after another on an idle server; then --stalled
connections are opened that send part of a request and go quiet (half of them a request line cut short,
half the headers and part of a body), and the same requests are timed again while they stay open. Last,
how the stalled ones ended: a 408 answer after the server's 10 s stall limit, or closed.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import signed_requests  # noqa: E402
from benchmarks.common import percentile  # noqa: E402
from benchmarks.served import emit, served_instance  # noqa: E402


def timed_requests(served, count: int) -> dict:
    endpoint, name, key_id, secret = served.endpoint, served.name, served.key_id, served.secret
    times, failures = [], 0
    with requests.Session() as session:
        for i in range(count):
            body = f"InstanceName={name}&ProductId=p{i % 1000}&PicName=0&Num=10".encode()
            headers = signed_requests.signed_headers(endpoint, key_id, secret, body, action="SearchImageByName")
            began = time.perf_counter()
            try:
                ok = session.post(f"http://{endpoint}/", data=body, headers=headers, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            times.append((time.perf_counter() - began) * 1000)
            failures += not ok
    return {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2),
            "max_ms": round(max(times), 2), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stalled", type=int, default=300)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    with served_instance("slow", 10_000, 100_000, args.workers, log) as served:
        idle = timed_requests(served, args.requests)
        stalled = stall(served.endpoint, args.stalled)
        log(f"{len(stalled)} connections stalled")
        loaded = timed_requests(served, args.requests)
        ended = how_they_ended(stalled)
    emit({"stalled": args.stalled, "workers": args.workers, "idle": idle, "with_stalled": loaded,
          "stalled_ended": ended}, args.json)


def stall(endpoint: str, count: int) -> list[socket.socket]:
    """Connections that send part of a request and go quiet: half a request line, or headers and 3 bytes of
    a 1000-byte body."""
    host, port = endpoint.split(":")
    stalled = []
    for i in range(count):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(b"POST / HTT" if i % 2 else b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nIns")
        stalled.append(s)
    return stalled


def how_they_ended(stalled: list[socket.socket]) -> dict:
    ended = {"408": 0, "closed": 0, "open": 0}
    for s in stalled:
        try:
            ended["408" if b" 408 " in s.recv(200) else "closed"] += 1
        except socket.timeout:
            ended["open"] += 1
        s.close()
    return ended

if __name__ == "__main__":
    main()
