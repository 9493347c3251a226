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
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile  # noqa: E402
from benchmarks.search import clustered_vectors  # noqa: E402
from benchmarks import signed_requests  # noqa: E402
from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.store import bulk_load  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    settings = Settings.from_env()
    service = ImageSearch.open(settings)
    name = f"bench-http-{int(time.time())}"
    service.create_instance(name, "generic", capacity=max(args.rows, 1), qps=args.plan_qps)
    server = None
    try:
        instance_id = service.instances.cached(name).id
        with service.database.transaction() as conn:
            log(f"loading {args.rows} vectors ...")
            vectors = clustered_vectors(args.rows)
            bulk_load.bulk_load(conn, instance_id, ((f"p{i}", "0", 88888888, v) for i, v in enumerate(vectors)))
        key_id, secret = service.access_keys.create([name])

        port = free_port()
        endpoint = f"127.0.0.1:{port}"
        env = dict(os.environ, IMAGESEARCH_HOME=str(settings.home))
        if service.database.is_embedded:  # the server adopts the running embedded database
            env.pop("IMAGESEARCH_DATABASE_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "imagesearch_pg", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
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
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        service.delete_instance(name)
        service.close()


if __name__ == "__main__":
    main()
