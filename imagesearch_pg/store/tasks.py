"""Background tasks as a queue in PostgreSQL (migration 0013): submit, claim with a lease, renew, checkpoint,
finish.

Every change a worker makes to its task names itself as the lease owner, so a worker whose lease expired
and passed to another (it was paused, its machine lost the network) changes nothing any more: its calls
return False and it must stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from imagesearch_pg.store.tables import tasks

CHANNEL = "imagesearch_tasks"  # NOTIFY on every submitted task (migration 0013's trigger)
FINAL_STATES = ("succeeded", "partially_failed", "failed")


@dataclass(frozen=True)
class Task:
    id: int
    instance_id: int
    kind: str
    state: str
    params: dict
    progress: dict
    checkpoint: dict | None
    attempts: int
    lease_owner: str | None
    created_at: datetime
    finished_at: datetime | None


_COLUMNS = [tasks.c[name] for name in Task.__dataclass_fields__]


def _task(row) -> Task:
    return Task(**row._mapping)


def submit(conn: sa.Connection, instance_id: int, kind: str, params: dict) -> Task:
    """A queued task (its INSERT notifies CHANNEL when the transaction commits)."""
    row = conn.execute(
        sa.insert(tasks).values(instance_id=instance_id, kind=kind, params=params).returning(*_COLUMNS)
    ).one()
    return _task(row)


# The claimable tasks: each instance's earliest unfinished one, if it is queued or its lease expired.
_CLAIMABLE = sa.text("""
    SELECT t.id FROM imagesearch.tasks t
    WHERE t.state IN ('queued', 'running')
      AND (t.state = 'queued' OR t.lease_expires_at < now())
      AND NOT EXISTS (SELECT 1 FROM imagesearch.tasks e
                      WHERE e.instance_id = t.instance_id AND e.id < t.id AND e.state IN ('queued', 'running'))
    ORDER BY t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
""")


def claim(conn: sa.Connection, owner: str, lease_seconds: float) -> Task | None:
    """The next task for ``owner`` to run, leased to it for ``lease_seconds``, or None. Run in a
    transaction of its own: the row lock that keeps other workers off it lasts until the commit, the lease
    after it."""
    found = conn.execute(_CLAIMABLE).scalar()
    if found is None:
        return None
    row = conn.execute(
        sa.update(tasks)
        .where(tasks.c.id == found)
        .values(state="running", lease_owner=owner, attempts=tasks.c.attempts + 1,
                lease_expires_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds),
                started_at=sa.func.coalesce(tasks.c.started_at, sa.func.now()), updated_at=sa.func.now())
        .returning(*_COLUMNS)
    ).one()
    return _task(row)


def _held(task_id: int, owner: str):
    return sa.and_(tasks.c.id == task_id, tasks.c.lease_owner == owner, tasks.c.state == "running")


def renew(conn: sa.Connection, task_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend the lease; False if ``owner`` no longer holds the task."""
    changed = conn.execute(
        sa.update(tasks).where(_held(task_id, owner)).values(
            lease_expires_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds),
            updated_at=sa.func.now())
    )
    return changed.rowcount == 1


def save_checkpoint(conn: sa.Connection, task_id: int, owner: str, checkpoint: dict, progress: dict) -> bool:
    """Record how far the task got (in the transaction that applied that much of it); False if ``owner``
    no longer holds the task, and then the caller's transaction must roll back."""
    changed = conn.execute(
        sa.update(tasks).where(_held(task_id, owner)).values(
            checkpoint=checkpoint, progress=progress, updated_at=sa.func.now())
    )
    return changed.rowcount == 1


def finish(conn: sa.Connection, task_id: int, owner: str, state: str, *, error_code: str | None = None,
           error_message: str | None = None, result_url: str | None = None) -> bool:
    """End the task in a final state; False if ``owner`` no longer holds it."""
    if state not in FINAL_STATES:
        raise ValueError(f"a task ends in one of {FINAL_STATES}, not {state!r}")
    changed = conn.execute(
        sa.update(tasks).where(_held(task_id, owner)).values(
            state=state, error_code=error_code, error_message=error_message, result_url=result_url,
            lease_owner=None, lease_expires_at=None, finished_at=sa.func.now(), updated_at=sa.func.now())
    )
    return changed.rowcount == 1


def get(conn: sa.Connection, task_id: int) -> Task | None:
    row = conn.execute(sa.select(*_COLUMNS).where(tasks.c.id == task_id)).one_or_none()
    return None if row is None else _task(row)
