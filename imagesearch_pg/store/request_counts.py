"""imagesearch.request_counts: requests per instance, kind and second, shared by every worker process."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from imagesearch_pg.store.tables import instances, request_counts


def count_request(conn: sa.Connection, instance_id: int, kind: str) -> int:
    """Count one request of ``kind`` in the current second of the database's clock; returns the count so far."""
    second = sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp()))
    statement = (
        pg_insert(request_counts)
        .values(instance_id=instance_id, kind=kind, second=second, count=1)
        .on_conflict_do_update(
            index_elements=["instance_id", "kind", "second"],
            set_={"count": request_counts.c.count + 1},
        )
        .returning(request_counts.c.count)
    )
    count = conn.execute(statement).scalar_one()
    if secrets.randbelow(1000) == 0:  # now and then, forget old seconds
        conn.execute(sa.delete(request_counts).where(request_counts.c.second < second - 60))
    return count


def planned_qps(conn: sa.Connection, instance_id: int) -> int | None:
    """The instance's QPS plan as stored now (a plan change applies to every server process at once); None
    once the instance is gone."""
    return conn.execute(sa.select(instances.c.qps).where(instances.c.id == instance_id)).scalar()
