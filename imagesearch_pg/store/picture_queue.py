"""Pictures written from SQL (sql/0016_queue.sql), as the worker takes them: claim, attempt, finish.

An instance's items are taken in the order they came, by one worker at a time: the worker holds a
session-level advisory lock on the instance for as long as it works on its items, so that a delete queued
after an add is never applied before it. A worker that dies loses its connection, hence the lock, and
what it had not finished is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from imagesearch_pg.store.tables import picture_queue

CHANNEL = "imagesearch_pictures"  # NOTIFY on every pending item (sql/0016_queue.sql's trigger)
_LOCK_CLASS = 0x1A6E  # advisory lock space of the queue: (class, instance id)
DONE_KEPT_DAYS = 7  # done items are listed in queue_status this long, their pictures dropped at once


@dataclass(frozen=True)
class QueuedItem:
    id: int
    operation: str  # add, update or delete
    product_id: str
    pic_name: str | None
    picture: bytes | None
    location: str | None
    path: str | None
    attributes: dict
    attempts: int


def lock_next_instance(conn: sa.Connection) -> int | None:
    """The instance with the earliest pending item that no other worker holds, now held by this session
    (release() lets it go); None when every pending item's instance is held, or nothing is pending."""
    pending = conn.execute(sa.text(
        "SELECT instance_id FROM imagesearch.picture_queue WHERE state = 'pending'"
        " GROUP BY instance_id ORDER BY min(id) LIMIT 50"
    )).scalars().all()
    for instance_id in pending:
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, :i)"), {"c": _LOCK_CLASS, "i": instance_id}).scalar():
            return instance_id
    return None


def release(conn: sa.Connection, instance_id: int) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :i)"), {"c": _LOCK_CLASS, "i": instance_id})


def attempt(conn: sa.Connection, instance_id: int, limit: int) -> list[QueuedItem]:
    """The instance's first ``limit`` pending items, their attempts counted (commit before working on them,
    so that an item that kills its worker is counted too)."""
    rows = conn.execute(
        sa.update(picture_queue)
        .where(picture_queue.c.id.in_(
            sa.select(picture_queue.c.id)
            .where(picture_queue.c.instance_id == instance_id, picture_queue.c.state == "pending")
            .order_by(picture_queue.c.id).limit(limit).scalar_subquery()
        ))
        .values(attempts=picture_queue.c.attempts + 1)
        .returning(*(picture_queue.c[name] for name in QueuedItem.__dataclass_fields__))
    ).all()
    return sorted((QueuedItem(**row._mapping) for row in rows), key=lambda item: item.id)


def finish(conn: sa.Connection, outcomes: dict[int, tuple[str, str] | None]) -> None:
    """Each item done (None) or failed with (code, message); a done item's picture is dropped."""
    done = [item for item, error in outcomes.items() if error is None]
    if done:
        conn.execute(sa.update(picture_queue).where(picture_queue.c.id.in_(done))
                     .values(state="done", picture=None, finished_at=sa.func.now()))
    for item, error in outcomes.items():
        if error is not None:
            conn.execute(sa.update(picture_queue).where(picture_queue.c.id == item)
                         .values(state="failed", error_code=error[0], error_message=error[1][:2000],
                                 finished_at=sa.func.now()))


def prune(conn: sa.Connection) -> int:
    """Forget done items older than DONE_KEPT_DAYS; returns how many."""
    return conn.execute(sa.delete(picture_queue).where(
        picture_queue.c.state == "done",
        picture_queue.c.finished_at < sa.func.now() - sa.text(f"interval '{DONE_KEPT_DAYS} days'"),
    )).rowcount
