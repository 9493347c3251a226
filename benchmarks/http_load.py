"""SearchImageByName over HTTP under load: throughput, latency and errors of `imagesearch serve`.

    python benchmarks/http_load.py [--rows 100000] [--seconds 60] [--clients 8] [--workers 2]
                                   [--plan-qps 100000] [--json]

An instance holds --rows synthetic vectors (those of benchmarks/search.py, bulk-loaded) and a QPS plan of
--plan-qps. `imagesearch serve` (gunicorn, --workers processes) runs on a free port against the same
database; --clients threads on this machine send signed SearchImageByName requests (ACS3-HMAC-SHA256, as
the SDK signs them; made with flask_app.signature, which the SDK tests check) as fast as answers come, for
--seconds. Client and server share the machine's cores. An error is any answer that is neither 200 nor
429 Throttling, or no answer. Run once with a plan above the load (0 errors expected) and once below it
(429s expected, still no errors).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import signed_requests  # noqa: E402
from benchmarks.common import percentile  # noqa: E402
from benchmarks.served import emit, served_instance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plan-qps", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    with served_instance("http", args.rows, args.plan_qps, args.workers, log) as served:
        emit(run_load(args, served.name, served.endpoint, served.key_id, served.secret, log), args.json)


def run_load(args, name: str, endpoint: str, key_id: str, secret: str, log) -> dict:
    rng = np.random.default_rng(4)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client(seed: int) -> None:
        with requests.Session() as session:  # closed at the end: no idle keep-alive holds a worker
            run_client(session, seed)

    def run_client(session: requests.Session, seed: int) -> None:
        picks = np.random.default_rng(seed).integers(0, args.rows, 100_000)
        for row in picks:
            if time.monotonic() >= stop_at:
                return
            body = f"InstanceName={name}&ProductId=p{row}&PicName=0&Num=10".encode()
            began = time.perf_counter()
            try:
                headers = signed_requests.signed_headers(endpoint, key_id, secret, body, action="SearchImageByName")
                response = session.post(f"http://{endpoint}/", data=body, headers=headers, timeout=30)
                outcome = str(response.status_code)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            elapsed = time.perf_counter() - began
            with lock:
                statuses[outcome] = statuses.get(outcome, 0) + 1
                if outcome == "200":
                    latencies.append(elapsed)

    log(f"{args.clients} clients for {args.seconds:.0f} s against {args.workers} gunicorn workers ...")
    threads = [threading.Thread(target=client, args=(int(rng.integers(1 << 30)),)) for _ in range(args.clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    ok, throttled = statuses.get("200", 0), statuses.get("429", 0)
    ms = [s * 1000 for s in latencies] or [0.0]
    report = {
        "rows": args.rows,
        "clients": args.clients,
        "workers": args.workers,
        "plan_qps": args.plan_qps,
        "seconds": round(elapsed, 1),
        "requests": sum(statuses.values()),
        "ok": ok,
        "throughput_rps": round(ok / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "throttled": throttled,
        "errors": sum(statuses.values()) - ok - throttled,
        "statuses": statuses,
    }
    return report


if __name__ == "__main__":
    main()
