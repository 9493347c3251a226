"""Requests per second per instance, counted in the database so that every worker process of a deployment
shares one count (a per-process count would let N workers admit N times the plan).

Fixed one-second windows on the database's clock: the n-th request of an instance and kind within one
second is admitted while n <= the limit. Searches get the instance's QPS plan; adds and deletes their own
defaults, as the hosted service has.
"""

from __future__ import annotations

from imagesearch_pg.errors import Throttling
from imagesearch_pg.store import request_counts
from imagesearch_pg.store.database import Database

ADD_PER_SECOND = 5
DELETE_PER_SECOND = 20


class Throttle:
    def __init__(self, database: Database):
        self.database = database

    def admit(self, instance_id: int, kind: str, limit: int | None) -> None:
        """Count one request; raise Throttling if it is over ``limit`` in the current second. A ``limit`` of
        None is the instance's QPS plan as the database holds it now."""
        with self.database.reading() as conn:
            count = request_counts.count_request(conn, instance_id, kind)
            if limit is None:
                limit = request_counts.planned_qps(conn, instance_id)
        if limit is not None and count > limit:  # no plan: the instance is gone, and the action says so
            raise Throttling(f"more than {limit} {kind} requests per second on this instance; retry shortly")
