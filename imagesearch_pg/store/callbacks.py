"""The callbacks of finished tasks (migration 0014): due, claimed by one worker at a time, recorded.

A due callback is claimed as a task is (FOR UPDATE SKIP LOCKED), but its lease is its due time pushed
forward: a worker that dies while delivering leaves it due again once the lease ends, so a retry survives
a crash or restart at the cost of, at worst, one repeated delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from imagesearch_pg.store.tables import instances, tasks
from imagesearch_pg.store.tasks import FINAL_STATES

FINAL_CALLBACK_STATES = ("delivered", "gave_up")


@dataclass(frozen=True)
class DueCallback:
    """What a delivery needs of its task."""

    id: int
    instance_id: int
    instance_name: str
    kind: str
    state: str  # the task's final state
    error_message: str | None
    result_url: str | None
    finished_at: datetime
    params: dict  # the callback address is params["callback_address"]
    attempts: list[dict]  # the attempts made so far, oldest first


def _seconds(seconds: float):
    return sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def mark_due(conn: sa.Connection, task_id: int) -> bool:
    """Make a finished task's callback due now, with no attempts yet (a task that finishes again gets a
    fresh callback); False if the task has no callback address or has not finished."""
    changed = conn.execute(
        sa.update(tasks)
        .where(tasks.c.id == task_id, tasks.c.state.in_(FINAL_STATES),
               tasks.c.params["callback_address"].astext != "")
        .values(callback_state="due", callback_due_at=sa.func.now(), callback_attempts=[])
    )
    return changed.rowcount == 1


def claim_due(conn: sa.Connection, lease_seconds: float, limit: int) -> list[DueCallback]:
    """Up to ``limit`` callbacks due now, oldest due first, each held off other workers for
    ``lease_seconds``. Run in a transaction of its own, as tasks.claim."""
    due = (
        sa.select(tasks.c.id)
        .where(tasks.c.callback_state == "due", tasks.c.callback_due_at <= sa.func.now())
        .order_by(tasks.c.callback_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    rows = conn.execute(
        sa.update(tasks)
        .where(tasks.c.id == due.c.id, instances.c.id == tasks.c.instance_id)
        .values(callback_due_at=sa.func.now() + _seconds(lease_seconds))
        .returning(tasks.c.id, tasks.c.instance_id, instances.c.name, tasks.c.kind, tasks.c.state,
                   tasks.c.error_message, tasks.c.result_url, tasks.c.finished_at, tasks.c.params,
                   tasks.c.callback_attempts)
    ).all()
    return sorted((DueCallback(*row) for row in rows), key=lambda due: due.id)


def record(conn: sa.Connection, task_id: int, attempt: dict, next_due_in_seconds: float | None,
           final_state: str | None) -> None:
    """Append ``attempt`` to the task's callback attempts, then either make the callback due again in
    ``next_due_in_seconds`` or end it in ``final_state`` (delivered or gave_up).

    Every attempt is kept, even one that outlived its lease; but only a callback still due changes state,
    so a late failure never reopens a callback another worker delivered meanwhile.
    """
    if (next_due_in_seconds is None) == (final_state is None):
        raise ValueError("record needs either next_due_in_seconds or final_state, not both")
    if final_state is not None and final_state not in FINAL_CALLBACK_STATES:
        raise ValueError(f"a callback ends in one of {FINAL_CALLBACK_STATES}, not {final_state!r}")
    still_due = tasks.c.callback_state == "due"
    due_at = None if final_state else sa.func.now() + _seconds(next_due_in_seconds)
    conn.execute(
        sa.update(tasks).where(tasks.c.id == task_id).values(
            callback_attempts=tasks.c.callback_attempts.op("||")(sa.bindparam(None, [attempt], type_=pg.JSONB)),
            callback_state=sa.case((still_due, final_state or "due"), else_=tasks.c.callback_state),
            callback_due_at=sa.case((still_due, due_at), else_=tasks.c.callback_due_at),
        )
    )


def next_due_in(conn: sa.Connection) -> float | None:
    """Seconds until the next callback is due (0 if one is due now), or None if none is: how long an idle
    worker may sleep."""
    seconds = conn.execute(
        sa.select(sa.func.extract("epoch", sa.func.min(tasks.c.callback_due_at) - sa.func.now()))
        .where(tasks.c.callback_state == "due")
    ).scalar()
    return None if seconds is None else max(0.0, float(seconds))
