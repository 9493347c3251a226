"""A long run of `imagesearch serve` at the instance's QPS plan: does latency drift, memory grow, or do file
descriptors leak?

    python benchmarks/soak.py [--minutes 30] [--qps 10] [--rows 100000] [--workers 2] [--json]

An instance of --rows synthetic vectors with a plan of --qps searches per second. Requests go out on a
fixed schedule: --qps - 1 SearchImageByName and one CheckImageExists per second (together the plan), and
one AddImage (a small picture, its ProductId new each time), signed as the SDK signs them. Every minute the minute's
p99 of the searches, the resident memory of the server (master and workers together) and their open file
descriptors are recorded. Drift compares the last five minutes with the first five (after one minute of
warm-up): p99 change (target < 20 %), RSS growth (target < 50 MB), descriptor growth (target none).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import signed_requests  # noqa: E402
from benchmarks.common import percentile  # noqa: E402
from benchmarks.served import emit, served_instance  # noqa: E402
from tests.pictures import encode, noise  # noqa: E402


def server_footprint(server) -> tuple[float, int]:
    """RSS in MB and open descriptors of the server process and its children (the workers)."""
    root = psutil.Process(server.pid)
    processes = [root, *root.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in processes) / 2**20
    fds = sum(p.num_fds() for p in processes)
    return rss, fds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--qps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    with served_instance("soak", args.rows, args.qps, args.workers, log) as served:
        minutes = soak(args, served, log)
    emit({"minutes": minutes, **drift(minutes), "qps": args.qps, "rows": args.rows, "workers": args.workers}, args.json)


def soak(args, served, log) -> list[dict]:
    name, endpoint, key_id, secret = served.name, served.endpoint, served.key_id, served.secret
    picture = base64.b64encode(encode(noise(120, 120, seed=1))).decode()
    rows = np.random.default_rng(7).integers(0, args.rows, 10_000_000)
    lock = threading.Lock()
    minute = {"search_ms": [], "statuses": {}}
    sessions = threading.local()

    def send(action: str, body: str, timed: bool) -> None:
        session = getattr(sessions, "session", None) or requests.Session()
        sessions.session = session
        data = body.encode()
        began = time.perf_counter()
        try:
            headers = signed_requests.signed_headers(endpoint, key_id, secret, data, action=action)
            outcome = str(session.post(f"http://{endpoint}/", data=data, headers=headers, timeout=30).status_code)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        with lock:
            minute["statuses"][outcome] = minute["statuses"].get(outcome, 0) + 1
            if timed and outcome == "200":
                minute["search_ms"].append((time.perf_counter() - began) * 1000)

    results = []
    pool = ThreadPoolExecutor(max_workers=8)
    began = time.monotonic()
    tick, sent, added = 0, 0, 0
    next_report = began + 60
    while time.monotonic() - began < args.minutes * 60:
        for _ in range(args.qps - 1):  # with the CheckImageExists below: the plan's searches per second
            row = rows[sent % len(rows)]
            sent += 1
            pool.submit(send, "SearchImageByName", f"InstanceName={name}&ProductId=p{row}&PicName=0&Num=10", True)
        added += 1
        pool.submit(send, "AddImage", f"InstanceName={name}&ProductId=soak{added}&PicName=0&Crop=false&PicContent="
                    + requests.utils.quote(picture, safe=""), False)
        pool.submit(send, "CheckImageExists", f"InstanceName={name}&ProductId=soak{max(1, added - 1)}&PicName=0", False)
        tick += 1
        time.sleep(max(0.0, began + tick - time.monotonic()))
        if time.monotonic() >= next_report:
            next_report += 60
            rss, fds = server_footprint(served.server)
            with lock:
                done, minute = minute, {"search_ms": [], "statuses": {}}
            entry = {"minute": len(results) + 1, "p50_ms": round(percentile(done["search_ms"] or [0], 50), 2),
                     "p99_ms": round(percentile(done["search_ms"] or [0], 99), 2), "rss_mb": round(rss, 1),
                     "fds": fds, "statuses": done["statuses"]}
            results.append(entry)
            log(json.dumps(entry))
    pool.shutdown(wait=True)
    return results


def drift(minutes: list[dict]) -> dict:
    steady = minutes[1:] or minutes  # the first minute warms caches and models (a short trial keeps it)
    first, last = steady[:5], steady[-5:]
    p99_first = float(np.median([m["p99_ms"] for m in first]))
    p99_last = float(np.median([m["p99_ms"] for m in last]))
    errors = sum(n for m in minutes for status, n in m["statuses"].items() if status not in ("200", "429"))
    return {
        "p99_first_ms": round(p99_first, 2), "p99_last_ms": round(p99_last, 2),
        "p99_drift_percent": round(100 * (p99_last - p99_first) / p99_first, 1),
        "rss_growth_mb": round(last[-1]["rss_mb"] - first[0]["rss_mb"], 1),
        "fd_growth": last[-1]["fds"] - first[0]["fds"],
        "errors": errors,
    }


if __name__ == "__main__":
    main()
