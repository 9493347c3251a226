"""Bursts of requests inside one second of the database's clock: the server counts requests per instance
and kind in fixed one-second windows of that clock (imagesearch_pg/store/request_counts.py), so a count
over a burst that straddled two of them would prove nothing either way."""

from __future__ import annotations

import math
import time
from typing import Callable, TypeVar
from urllib.parse import urlencode

import sqlalchemy as sa

from tests.http_requests import post, signed_request

T = TypeVar("T")
_NOW = sa.text("SELECT extract(epoch FROM clock_timestamp())::float8")


def database_time(engine: sa.Engine) -> float:
    with engine.connect() as conn:
        return conn.execute(_NOW).scalar_one()


def in_one_second(engine: sa.Engine, burst: Callable[[], T], *, tries: int = 10,
                  before: Callable[[], object] = lambda: None) -> T:
    """``burst()``'s result from a try that began and ended within one second of the database's clock.
    Each try starts at the beginning of a second later than the one the last try ended in, so none of its
    counts is in the try's window. ``before()`` runs ahead of each try, outside its window: it undoes what
    a request the limit should refuse did in a try that straddled two seconds (and so was admitted)."""
    for _ in range(tries):
        before()
        now = database_time(engine)
        time.sleep(math.floor(now) + 1.002 - now)  # only where the window starts: the check below decides
        began = math.floor(database_time(engine))
        result = burst()
        if math.floor(database_time(engine)) == began:
            return result
    raise AssertionError(f"none of {tries} tries of the burst fitted in one second of the database's clock")


def call(server: str, credentials: tuple[str, str], action: str, instance: str, **fields: str) -> str:
    """One signed request: "OK", or "<HTTP status> <Code>"."""
    body = urlencode({"InstanceName": instance, **fields}).encode()
    status, answer = post(server, signed_request(server, *credentials, body, action=action), body)
    return "OK" if status == 200 else f"{status} {answer['Code']}"
