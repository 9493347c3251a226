"""Shared bits of the benchmarks: timing summaries, exact nearest neighbours, and the instance a benchmark
loads or reuses."""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from imagesearch_pg.errors import InvalidInstance


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 99), 3), "n": len(ms)}


def exact_nearest(candidates: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = 10) -> list[set[int]]:
    """The ids of each query's ``k`` nearest candidates by a brute-force scan (ties aside)."""
    similarity = queries @ candidates.T
    if len(ids) > k:
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(len(ids)), (len(queries), 1))
    return [set(ids[row].tolist()) for row in top]


def reuse_options(parser: argparse.ArgumentParser, same: str = "the same options") -> None:
    """--keep and --instance, for measured_instance."""
    parser.add_argument("--keep", action="store_true", help="leave the instance afterwards (its name is printed)")
    parser.add_argument("--instance", help=f"reuse this instance (made by an earlier --keep run with {same})")


@contextmanager
def measured_instance(service, args: argparse.Namespace, prefix: str, make: Callable[[str], object],
                      log: Callable[..., None]) -> Iterator[str]:
    """The name of the instance a benchmark measures: ``args.instance`` (which must exist), or a new one
    that ``make(name)`` creates and fills. At the end a new one is deleted unless ``args.keep``, and the
    service is closed."""
    name = args.instance or f"{prefix}-{int(time.time())}"
    try:
        if args.instance:
            try:
                service.instances.cached(name)
            except InvalidInstance:
                raise SystemExit(f"no instance {name!r}: run once with --keep first") from None
        else:
            make(name)
        yield name
    finally:
        if args.keep:
            log(f"kept instance {name}")
        elif not args.instance and name in {i.name for i in service.list_instances()}:
            service.delete_instance(name)
        service.close()
