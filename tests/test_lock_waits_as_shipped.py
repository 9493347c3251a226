"""docs/reliability.md, as shipped (tests/test_instance_locks.py shortens the waits for speed; nothing is
shortened here): a change that needs a lock an open transaction holds "waits for each lock at most 1 s
(`lock_timeout`, in a savepoint), tries 3 times with pauses of 0.25 and 0.5 s, then answers InstanceBusy".

What the test reads: the lock_timeout the database session has when the change's blocked statement is sent
(asked on that very connection), the tries that ended in a lock timeout, the database's clock at each, and
the pauses the change asked for. The numbers are written here, not read from the code. No assertion bounds
a duration from above: only the database's clock is read, and only to show that a try and its pause took at
least as long as they should."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from imagesearch_pg.errors import InstanceBusy
from imagesearch_pg.store import locks
from tests.small_vectors import load, register_small_encoder, unit

LOCK_TIMEOUT = "1s"
TRIES = 3
PAUSES = [0.25, 0.5]
# If a broken build waited without limit, the holder's session ends after this and the test fails rather
# than hangs.
HOLDER_GIVES_UP = "120s"


class _PausesSeen:
    """The time module as store/locks.py sees it, noting each pause it takes (and taking it)."""

    def __init__(self):
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        time.sleep(seconds)

    def __getattr__(self, name):
        return getattr(time, name)


class _LockWaitsSeen:
    """On the service's engine, for statements of the thread that made it: before each, the session's
    lock_timeout and the database's clock, asked on that connection; those statements that then ended in
    a lock timeout are the tries."""

    def __init__(self, engine: sa.Engine):
        self.engine, self.thread = engine, threading.get_ident()
        self.tries: list[tuple[str, float]] = []  # (lock_timeout, database clock) of each timed-out statement
        self._last: tuple[str, float] | None = None

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "handle_error", self._error)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "handle_error", self._error)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        # After a failed statement the transaction is aborted until the savepoint is rolled back: nothing is asked then.
        if threading.get_ident() == self.thread and not statement.lstrip().upper().startswith(("ROLLBACK", "RELEASE")):
            self._last = cursor.connection.execute(
                "SELECT current_setting('lock_timeout'), extract(epoch FROM clock_timestamp())::float8").fetchone()

    def _error(self, context):
        if threading.get_ident() == self.thread and isinstance(context.original_exception,
                                                               psycopg.errors.LockNotAvailable):
            self.tries.append(self._last)


@pytest.fixture
def held_instance(service, engine, logins, tmp_path):
    """A new instance whose partition a LOGIN role of the SQL surface (a reader) holds: it searched the
    instance and left its transaction open. Yields the instance's name; the transaction ends after the test."""
    name = f"shipped-locks-{uuid.uuid4().hex[:10]}"
    service.create_instance(name, "generic", encoder=register_small_encoder(service, tmp_path, 8))
    load(service, name, [("p", f"{i}.jpg", 0, v) for i, v in enumerate(unit(np.ones((2, 8))))])
    reader = logins.make("reader", "imagesearch_reader").engine
    holder = reader.connect()
    try:
        holder.begin()
        holder.execute(sa.text(f"SET LOCAL idle_in_transaction_session_timeout = '{HOLDER_GIVES_UP}'"))
        assert holder.execute(sa.text("SELECT count(*) FROM imagesearch.search_by_product(:n, 'p')"),
                              {"n": name}).scalar_one() == 0  # its own product is left out; the partition was read
        yield name
    finally:
        holder.close()
        reader.dispose()
        service.delete_instance(name)


def test_a_busy_change_waits_1s_per_try_3_tries_with_pauses_of_a_quarter_and_a_half_second(service, held_instance,
                                                                                           monkeypatch):
    pauses = _PausesSeen()
    monkeypatch.setattr(locks, "time", pauses)
    with _LockWaitsSeen(service.database.engine) as waits, pytest.raises(InstanceBusy) as busy:
        service.clear_instance(held_instance)

    assert f"nothing was changed after {TRIES} tries" in busy.value.message
    assert busy.value.code == "InstanceStatusError"
    assert [timeout for timeout, _ in waits.tries] == [LOCK_TIMEOUT] * TRIES
    assert pauses.pauses == PAUSES
    # Each try waited out its lock_timeout, then its pause, before the next began (the database's clock).
    starts = [clock for _, clock in waits.tries]
    for (earlier, later), pause in zip(zip(starts, starts[1:]), PAUSES):
        assert later - earlier >= 1.0 + pause
    assert service.describe_instance(held_instance).picture_count == 2  # nothing was changed
