"""Requests per second per instance, counted in the database so that every worker process of a deployment
shares one count (a per-process count would let N workers admit N times the plan).

Fixed one-second windows on the database's clock: the n-th request of an instance and kind within one
second is admitted while n <= the limit. Searches get the instance's QPS plan; adds and deletes their own
defaults, as the hosted service has.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from imagesearch_pg.errors import Throttling
from imagesearch_pg.store.tables import request_counts

ADD_PER_SECOND = 5
DELETE_PER_SECOND = 20


class Throttle:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def admit(self, instance_id: int, kind: str, limit: int) -> None:
        """Count one request; raise Throttling if it is over ``limit`` in the current second."""
        second = sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp()))
        statement = (
            insert(request_counts)
            .values(instance_id=instance_id, kind=kind, second=second, count=1)
            .on_conflict_do_update(
                index_elements=["instance_id", "kind", "second"],
                set_={"count": request_counts.c.count + 1},
            )
            .returning(request_counts.c.count)
        )
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            count = conn.execute(statement).scalar_one()
            if secrets.randbelow(1000) == 0:  # now and then, forget old seconds
                conn.execute(sa.delete(request_counts).where(request_counts.c.second < second - 60))
        if count > limit:
            raise Throttling(f"more than {limit} {kind} requests per second on this instance; retry shortly")
