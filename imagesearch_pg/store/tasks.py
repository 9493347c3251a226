"""Background tasks as a queue in PostgreSQL (migration 0013): submit, claim with a lease, renew, checkpoint,
finish.

Every change a worker makes to its task names itself as the lease owner, so a worker whose lease expired
and passed to another (it was paused, its machine lost the network) changes nothing any more: its calls
return False and it must stop.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from imagesearch_pg.store.tables import task_errors, tasks

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
    error_code: str | None
    error_message: str | None
    result_url: str | None
    callback_state: str | None
    callback_attempts: list
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
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
_CLAIMABLE = """
    SELECT t.id FROM imagesearch.tasks t
    WHERE t.state IN ('queued', 'running')
      AND (t.state = 'queued' OR t.lease_expires_at < now())
      AND NOT EXISTS (SELECT 1 FROM imagesearch.tasks e
                      WHERE e.instance_id = t.instance_id AND e.id < t.id AND e.state IN ('queued', 'running'))
      {only}
    ORDER BY t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
"""
_CLAIM_ANY = sa.text(_CLAIMABLE.format(only=""))
_CLAIM_AMONG = sa.text(_CLAIMABLE.format(only="AND t.id = ANY(:only)"))


def claim(conn: sa.Connection, owner: str, lease_seconds: float,
          only: Collection[int] | None = None) -> Task | None:
    """The next task for ``owner`` to run (or the next claimable one of the tasks ``only``), leased to it
    for ``lease_seconds``; None if there is none. Run in a transaction of its own: the row lock that keeps
    other workers off it lasts until the commit, the lease after it."""
    found = conn.execute(_CLAIM_ANY if only is None else _CLAIM_AMONG,
                         {} if only is None else {"only": list(only)}).scalar()
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
    no longer holds the task, and then the caller's transaction must roll back. Progress resets the
    attempts: they count the claims since the task last got further."""
    changed = conn.execute(
        sa.update(tasks).where(_held(task_id, owner)).values(
            checkpoint=checkpoint, progress=progress, attempts=1, updated_at=sa.func.now())
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


def release(conn: sa.Connection, task_id: int, owner: str, delay_seconds: float) -> bool:
    """Give the task up unfinished: any worker may claim it again after ``delay_seconds`` (0: at once) and
    resume it from its checkpoint. False if ``owner`` no longer holds it."""
    changed = conn.execute(
        sa.update(tasks).where(_held(task_id, owner)).values(
            lease_owner=None,
            lease_expires_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, delay_seconds),
            updated_at=sa.func.now())
    )
    return changed.rowcount == 1


def add_errors(conn: sa.Connection, task_id: int, failed: list[tuple[int, str, str]]) -> None:
    """Failed lines (number, content, reason), in the transaction that applied the lines around them."""
    if failed:
        conn.execute(sa.insert(task_errors), [
            {"task_id": task_id, "line": number, "content": content, "reason": reason.replace("\x00", "\ufffd")}
            for number, content, reason in failed
        ])


def errors(conn: sa.Connection, task_id: int, after_line: int, limit: int) -> list[tuple[int, str, str]]:
    """Failed lines after ``after_line`` (keyset pages of the error report), in line order."""
    return [tuple(row) for row in conn.execute(
        sa.select(task_errors.c.line, task_errors.c.content, task_errors.c.reason)
        .where(task_errors.c.task_id == task_id, task_errors.c.line > after_line)
        .order_by(task_errors.c.line).limit(limit)
    )]


def page(conn: sa.Connection, instance_id: int, kind: str, *, task_id: int | None = None,
         params: dict | None = None, offset: int = 0, limit: int = 20) -> tuple[int, list[Task]]:
    """(how many match, one page of them, newest first): the instance's tasks of ``kind``, optionally only
    ``task_id`` or those whose params contain ``params``."""
    condition = [tasks.c.instance_id == instance_id, tasks.c.kind == kind]
    if task_id is not None:
        condition.append(tasks.c.id == task_id)
    if params:
        condition.append(tasks.c.params.contains(params))
    total = conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*condition)).scalar_one()
    rows = conn.execute(sa.select(*_COLUMNS).where(*condition).order_by(tasks.c.id.desc()).offset(offset).limit(limit))
    return total, [_task(row) for row in rows]


def has_errors(conn: sa.Connection, task_id: int) -> bool:
    return conn.execute(sa.select(sa.exists().where(task_errors.c.task_id == task_id))).scalar_one()


def unfinished_count(conn: sa.Connection, instance_id: int, kind: str | None = None) -> int:
    condition = [tasks.c.instance_id == instance_id, tasks.c.state.in_(("queued", "running"))]
    if kind is not None:
        condition.append(tasks.c.kind == kind)
    return conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*condition)).scalar_one()


def result_files(conn: sa.Connection, instance_id: int, kind: str) -> list[str]:
    return list(conn.execute(sa.select(tasks.c.result_url).where(
        tasks.c.instance_id == instance_id, tasks.c.kind == kind, tasks.c.result_url.is_not(None))).scalars())


def due_callbacks(conn: sa.Connection, instance_id: int) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(tasks)
        .where(tasks.c.instance_id == instance_id, tasks.c.callback_state == "due")
    ).scalar_one()


def remove_finished(conn: sa.Connection, instance_id: int, kind: str, *, keep: int, before: datetime) -> list[Task]:
    """Delete the instance's finished tasks of ``kind`` past the newest ``keep`` finished ones, or finished
    before ``before``; returns them (for their files)."""
    finished = (
        sa.select(tasks.c.id, sa.func.row_number().over(order_by=tasks.c.id.desc()).label("newest"),
                  tasks.c.finished_at)
        .where(tasks.c.instance_id == instance_id, tasks.c.kind == kind, tasks.c.state.in_(FINAL_STATES))
        .subquery()
    )
    doomed = sa.select(finished.c.id).where(sa.or_(finished.c.newest > keep, finished.c.finished_at < before))
    rows = conn.execute(sa.delete(tasks).where(tasks.c.id.in_(doomed)).returning(*_COLUMNS))
    return [_task(row) for row in rows]


def get(conn: sa.Connection, task_id: int) -> Task | None:
    row = conn.execute(sa.select(*_COLUMNS).where(tasks.c.id == task_id)).one_or_none()
    return None if row is None else _task(row)
