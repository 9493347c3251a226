"""GET /metrics: Prometheus counts and latencies of the protocol's actions.

Under gunicorn every worker records into files of a directory shared by the deployment
(PROMETHEUS_MULTIPROC_DIR, made by the server before it forks), and a scrape of any worker reads them all.
"""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("imagesearch_requests_total", "Protocol requests by action and result code.", ["action", "code"])
LATENCY = Histogram(
    "imagesearch_request_seconds", "Time to answer a protocol request, by action.", ["action"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)


def observe(action: str, code: str, seconds: float) -> None:
    REQUESTS.labels(action, code).inc()
    LATENCY.labels(action).observe(seconds)


@bp.get("/metrics")
def metrics():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
