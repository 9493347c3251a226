"""Changes that take strong locks on an instance's tables wait for them briefly, then give up.

Clearing (TRUNCATE), deleting (DROP) or creating (CREATE TABLE ... PARTITION OF) an instance, and dropping
or building its vector indexes, need locks that an open transaction which read or wrote its pictures holds
until it ends. Waiting for such a lock without limit would be no better than waiting in line: every later
search of the instance queues behind the waiting lock, so one client idle in its transaction would freeze
the instance. Each wait here is cut at LOCK_TIMEOUT, tried again a few times after a pause (while no lock
is waited for, the searches go on), and then the change is refused with InstanceBusy, having changed
nothing.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import psycopg
import sqlalchemy as sa

from imagesearch_pg.errors import InstanceBusy

T = TypeVar("T")

LOCK_TIMEOUT = "1s"  # the longest a search may queue behind one of these changes
ATTEMPTS = 3
PAUSE_SECONDS = 0.25  # before the second attempt; doubled before each later one

_SHOW = sa.text("SELECT current_setting('lock_timeout')")
_SET = sa.text("SELECT set_config('lock_timeout', :value, true)")


def waiting_briefly(conn: sa.Connection, change: Callable[[], T], what: str) -> T:
    """``change()`` (statements on ``conn``) in a savepoint, its every lock waited for at most LOCK_TIMEOUT;
    a lock not granted in time undoes it to the savepoint (releasing the locks it took) and it runs again
    after a pause, ATTEMPTS times in all, then InstanceBusy naming ``what`` (e.g. "clearing instance 'x'").
    Locks the transaction took before are kept throughout: call this first in the transaction where the
    change allows."""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(PAUSE_SECONDS * 2 ** (attempt - 1))
        try:
            with conn.begin_nested():
                previous = conn.execute(_SHOW).scalar_one()
                conn.execute(_SET, {"value": LOCK_TIMEOUT})
                done = change()
                conn.execute(_SET, {"value": previous})  # the rest of the transaction waits as it did
            return done
        except sa.exc.OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise
    raise InstanceBusy(
        f"{what} needs a lock that another open transaction holds (one that read or wrote its pictures); "
        f"nothing was changed after {ATTEMPTS} tries: try again when that transaction has ended"
    )
