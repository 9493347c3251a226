"""Changes that take strong locks on an instance's tables wait for them briefly, then give up, or, when the
operator says so, end the sessions that hold them.

Clearing (TRUNCATE), deleting (DROP) or creating (CREATE TABLE ... PARTITION OF) an instance, and dropping
or building its vector indexes, need locks that an open transaction which read or wrote its pictures holds
until it ends. Waiting for such a lock without limit would be no better than waiting in line: every later
search of the instance queues behind the waiting lock, so one client idle in its transaction would freeze
the instance. Each wait here is cut at LOCK_TIMEOUT, tried again a few times after a pause (while no lock
is waited for, the searches go on), and then the change is refused with InstanceBusy, having changed
nothing. A client that keeps its transaction open on purpose (its own idle_in_transaction_session_timeout
set to 0, or a statement that sleeps) would make that answer last for ever: ``end_sessions`` then ends the
sessions that block the change (pg_blocking_pids), each logged, and makes it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

import psycopg
import sqlalchemy as sa

from imagesearch_pg.errors import InstanceBusy, NoPermission

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_TIMEOUT = "1s"  # the longest a search may queue behind one of these changes
ATTEMPTS = 3
PAUSE_SECONDS = 0.25  # before the second attempt; doubled before each later one
_LOOK_SECONDS = 0.05  # how often the sessions that block it are looked for meanwhile
_END_WAIT_MS = 5000  # for each ended session to be gone, its locks with it

_SHOW = sa.text("SELECT current_setting('lock_timeout')")
_SET = sa.text("SELECT set_config('lock_timeout', :value, true)")


def waiting_briefly(conn: sa.Connection, change: Callable[[], T], what: str, *, remedy: str | None = None,
                    end_sessions: bool = False) -> T:
    """``change()`` (statements on ``conn``) in a savepoint, its every lock waited for at most LOCK_TIMEOUT;
    a lock not granted in time undoes it to the savepoint (releasing the locks it took) and it runs again
    after a pause, ATTEMPTS times in all; then, with ``end_sessions``, ATTEMPTS times more while the
    sessions that block it are ended; else InstanceBusy naming ``what`` (e.g. "clearing instance 'x'") and
    ``remedy`` (how to end those sessions, where the caller offers it). Locks the transaction took before
    are kept throughout: call this first in the transaction where the change allows."""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(PAUSE_SECONDS * 2 ** (attempt - 1))
        try:
            return _in_savepoint(conn, change, LOCK_TIMEOUT)
        except sa.exc.OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise
    if end_sessions:
        return _ending_sessions(conn, change, what)
    raise InstanceBusy(
        f"{what} needs a lock that another open transaction holds (one that read or wrote its pictures); "
        f"nothing was changed after {ATTEMPTS} tries: try again when that transaction has ended"
        + (f", or end the sessions that hold it ({remedy})" if remedy else "")
    )


def _in_savepoint(conn: sa.Connection, change: Callable[[], T], lock_timeout: str) -> T:
    with conn.begin_nested():
        previous = conn.execute(_SHOW).scalar_one()
        conn.execute(_SET, {"value": lock_timeout})
        done = change()
        conn.execute(_SET, {"value": previous})  # the rest of the transaction waits as it did
    return done


def _ending_sessions(conn: sa.Connection, change: Callable[[], T], what: str) -> T:
    """ATTEMPTS more tries, each waiting LOCK_TIMEOUT at most (a search still queues no longer behind it),
    while the sessions that block them are ended."""
    ender = _SessionEnder(conn.engine, conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one(), what)
    ender.start()
    try:
        for _ in range(ATTEMPTS):
            try:
                return _in_savepoint(conn, change, LOCK_TIMEOUT)
            except sa.exc.OperationalError as exc:
                if ender.refused and isinstance(exc.orig, (psycopg.errors.LockNotAvailable,
                                                           psycopg.errors.QueryCanceled)):
                    raise NoPermission(f"{what} was not made: {ender.refused}") from None
                if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                    raise
        raise InstanceBusy(f"{what} still found its locks held after ending {len(ender.ended)} session(s); "
                           "nothing was changed")
    finally:
        ender.finish()


_BLOCKERS = sa.text("""
    SELECT b.pid, a.usename, extract(epoch FROM now() - a.xact_start)::integer AS open_seconds
    FROM unnest(pg_blocking_pids(:pid)) AS b(pid)
    LEFT JOIN pg_stat_activity a ON a.pid = b.pid""")


class _SessionEnder(threading.Thread):
    """On a connection of its own, while the change waits: ends each session that blocks it (pg_blocking_pids
    of its backend), logging who it was and how long its transaction had been open (never what it ran). If
    PostgreSQL refuses, it says why in ``refused`` and cancels the change's wait."""

    def __init__(self, engine: sa.Engine, waiting_pid: int, what: str):
        super().__init__(name="ending-sessions", daemon=True)
        self.engine, self.waiting_pid, self.what = engine, waiting_pid, what
        self.ended: list[int] = []
        self.refused: str | None = None
        self._finished = threading.Event()

    def finish(self) -> None:
        self._finished.set()
        self.join()

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # each look sees the sessions as they are
                while not self._finished.wait(_LOOK_SECONDS) and self.refused is None:
                    for pid, user, open_seconds in conn.execute(_BLOCKERS, {"pid": self.waiting_pid}).all():
                        self._end(conn, pid, user, open_seconds)
        except sa.exc.DBAPIError as exc:  # the change then times out as busy
            log.warning("cannot look for the sessions that block a change", extra={"error": str(exc.orig)})

    def _end(self, conn: sa.Connection, pid: int, user: str | None, open_seconds: int | None) -> None:
        try:
            ended = conn.execute(sa.text("SELECT pg_terminate_backend(:pid, :wait)"),
                                 {"pid": pid, "wait": _END_WAIT_MS}).scalar_one()
        except sa.exc.DBAPIError as exc:
            if not isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                raise
            me = conn.execute(sa.text("SELECT current_user")).scalar_one()
            said = " ".join(filter(None, (exc.orig.diag.message_primary, exc.orig.diag.message_detail)))
            self.refused = (f"PostgreSQL refused to end session {pid} (user {user}), which holds a lock it needs: "
                            f"{said} Ending sessions needs a superuser, or a user granted pg_signal_backend "
                            f"(GRANT pg_signal_backend TO {me}); only a superuser ends a superuser's session")
            conn.execute(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": self.waiting_pid})
            return
        if ended:  # else it was gone already
            self.ended.append(pid)
            log.warning("ended a session that held a lock a change needed",
                        extra={"change": self.what, "pid": pid, "user": user, "transaction_open_seconds": open_seconds})
