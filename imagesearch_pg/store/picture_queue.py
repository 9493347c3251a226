"""Pictures written from SQL (sql/0016_queue.sql), as the worker takes them: claim, attempt, finish.

An instance's items are taken in the order they came, by one worker at a time: the worker locks the
instance's row of imagesearch.picture_queue_claims (FOR UPDATE, in a transaction of a connection of its own)
for as long as it works on its items, so that a delete queued after an add is never applied before it. No
role but the service's may lock that row (the table is granted to nobody; an advisory lock's key would be
anyone's to take). A worker that dies loses its connection, hence the lock, and what it had not finished is
still pending.

No item can break the batch it is read in: each text is read up to a bound past anything the service
accepts (the checks then refuse it), the attributes as JSON text, and the picture's size before the picture.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile
from typing import Iterator

import sqlalchemy as sa

from imagesearch_pg.store.tables import picture_queue

CHANNEL = "imagesearch_pictures"  # NOTIFY on every pending item (sql/0016_queue.sql's trigger)
DONE_KEPT_DAYS = 7  # done items are listed in queue_status this long, their pictures dropped at once
TEXT_CHARS = 4096  # of ProductId, PicName, the location and path: more than the service accepts of any
ATTRIBUTES_CHARS = 65536  # of the attributes as JSON: a 4096-character CustomContent escaped throughout is 24 K


@dataclass(frozen=True)
class QueuedItem:
    id: int
    operation: str  # add, update or delete
    product_id: str  # each text cut after TEXT_CHARS + 1 characters
    pic_name: str | None
    picture_bytes: int | None  # the picture's size (picture() reads it)
    location: str | None
    path: str | None
    attributes: str  # JSON text, cut after ATTRIBUTES_CHARS + 1 characters
    attempts: int


@contextmanager
def claimed_instance(engine: sa.Engine) -> Iterator[int | None]:
    """The instance to work on next, held by this worker until the block ends (None when every instance
    with pending items is held, or nothing is pending). Instances whose next item was taken before without
    finishing (its batch failed) come after the others, oldest item first."""
    conn = engine.connect()
    try:
        _add_claim_rows(conn)
        conn.begin()
        # The claim is this open transaction: a timeout meant for idle clients must not end it mid-batch.
        conn.execute(sa.text("SELECT set_config('idle_in_transaction_session_timeout', '0', true)"))
        yield conn.execute(_NEXT_INSTANCE).scalar()
    finally:
        try:
            conn.rollback()  # the claim goes
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and its lock with it
        conn.close()


def _add_claim_rows(conn: sa.Connection) -> None:
    """Each instance's claim row, made once."""
    try:
        with conn.begin():
            conn.execute(sa.text(
                "INSERT INTO imagesearch.picture_queue_claims (instance_id)"
                " SELECT i.id FROM imagesearch.instances i"
                " WHERE NOT EXISTS (SELECT FROM imagesearch.picture_queue_claims c WHERE c.instance_id = i.id)"
                " ON CONFLICT DO NOTHING"))
    except sa.exc.IntegrityError:
        pass  # an instance deleted meanwhile: the others get theirs next time


_NEXT_INSTANCE = sa.text("""
    SELECT c.instance_id
    FROM imagesearch.picture_queue_claims c
    CROSS JOIN LATERAL (SELECT q.id, q.attempts FROM imagesearch.picture_queue q
                        WHERE q.instance_id = c.instance_id AND q.state = 'pending'
                        ORDER BY q.id LIMIT 1) head
    ORDER BY head.attempts > 0, head.id
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED""")


def give_up(conn: sa.Connection, instance_id: int, max_attempts: int) -> int:
    """The instance's pending items already taken up ``max_attempts`` times end failed, TooManyAttempts
    (each time its worker died or its batch failed); returns how many."""
    return conn.execute(
        sa.update(picture_queue)
        .where(picture_queue.c.instance_id == instance_id, picture_queue.c.state == "pending",
               picture_queue.c.attempts >= max_attempts)
        .values(state="failed", error_code="TooManyAttempts", finished_at=sa.func.now(),
                error_message=f"the item was taken up {max_attempts} times without finishing")
    ).rowcount


_READ = (
    picture_queue.c.id, picture_queue.c.operation,
    *(sa.func.left(picture_queue.c[name], TEXT_CHARS + 1).label(name) for name in ("product_id", "pic_name")),
    sa.func.octet_length(picture_queue.c.picture).label("picture_bytes"),
    *(sa.func.left(picture_queue.c[name], TEXT_CHARS + 1).label(name) for name in ("location", "path")),
    sa.func.left(sa.cast(picture_queue.c.attributes, sa.Text), ATTRIBUTES_CHARS + 1).label("attributes"),
    picture_queue.c.attempts,
)


def attempt(conn: sa.Connection, instance_id: int, limit: int) -> list[QueuedItem]:
    """The instance's next pending items, their attempts counted (commit before working on them, so that an
    item that kills its worker is counted too): the first ``limit`` not taken before; or, when the first
    was taken before without finishing (its batch failed, its worker died), that one alone, so that an item
    that fails every batch it is in fails alone."""
    heads = conn.execute(
        sa.select(picture_queue.c.id, picture_queue.c.attempts)
        .where(picture_queue.c.instance_id == instance_id, picture_queue.c.state == "pending")
        .order_by(picture_queue.c.id).limit(limit)
    ).all()
    if not heads:
        return []
    ids = [heads[0].id] if heads[0].attempts else [row.id for row in takewhile(lambda row: not row.attempts, heads)]
    rows = conn.execute(
        sa.update(picture_queue).where(picture_queue.c.id.in_(ids))
        .values(attempts=picture_queue.c.attempts + 1).returning(*_READ)
    ).all()
    return sorted((QueuedItem(**row._mapping) for row in rows), key=lambda item: item.id)


def picture(conn: sa.Connection, item_id: int) -> bytes:
    return conn.execute(sa.select(picture_queue.c.picture).where(picture_queue.c.id == item_id)).scalar_one()


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
