"""Searches on streaming replicas (IMAGESEARCH_REPLICA_URLS) while writes stay on the primary.

A replica serves a read of an instance's pictures only when
- it has replayed the instance's last write (instances.last_write_xid, set by every write: record_write): a
  client reads its own writes whichever server process it wrote through, and nobody reads an instance older
  than its last acknowledged write;
- it answers, and was less than ``max_lag`` seconds behind the primary at the last check (once a second).
Otherwise the next replica (in turn) serves it, and in the end the primary. A replica that fails during a
read is set aside and the read runs again elsewhere; the checks bring it back once it answers.

The write mark costs one primary round trip per read (a primary-key lookup); the walk of the index, the
work, runs on the replica.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import psycopg
import sqlalchemy as sa

from imagesearch_pg.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_SECONDS = 1.0
# Recovery conflicts (a replayed vacuum removed rows the read needed) and lost connections: run it elsewhere.
_RETRY_ELSEWHERE = {"40001", "40P01", "57P04"}

_LAST_WRITE = sa.text("SELECT last_write_xid::text FROM imagesearch.instances WHERE id = :id")
_REPLAYED = sa.text("SELECT pg_visible_in_snapshot(CAST(:xid AS xid8), pg_current_snapshot())")


@dataclass
class Replica:
    name: str  # the URL without its password, for logs and status
    engine: sa.Engine
    # At the last check; None: it did not answer (a failed read sets it too, until a check succeeds).
    lag_seconds: float | None = None
    served: int = 0  # reads it answered (status and tests)

    def usable(self, max_lag: float) -> bool:
        return self.lag_seconds is not None and self.lag_seconds <= max_lag


@dataclass
class ReplicaRouter:
    primary: sa.Engine  # the primary's autocommit reads
    replicas: list[Replica]
    max_lag: float
    served_by_primary: int = 0
    _turn: int = 0
    _history: deque = field(default_factory=lambda: deque(maxlen=600))  # (monotonic time, primary WAL LSN)
    _monitor_pid: int | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, instance_id: int, work: Callable[[sa.Connection], T], translated) -> T:
        """``work`` on a connection of a replica that may serve the instance, else of the primary.
        ``translated`` is store.database's context that turns lost connections into DatabaseUnavailable."""
        self._ensure_monitor()
        candidates = [r for r in self._in_turn() if r.usable(self.max_lag)]
        if candidates:
            with translated(), self.primary.connect() as conn:
                mark = conn.execute(_LAST_WRITE, {"id": instance_id}).scalar()
            # No mark: the instance is gone (or made again under another id) on the primary, and a replica
            # behind it could still show its pictures. The primary answers, as it does for a deleted one.
            for replica in candidates if mark is not None else []:
                try:
                    with translated(), replica.engine.connect() as conn:
                        if not conn.execute(_REPLAYED, {"xid": mark}).scalar():
                            continue  # not replayed yet: the next one, or the primary, has it
                        result = work(conn)
                except DatabaseUnavailable as exc:
                    self._set_aside(replica, str(exc))
                    continue
                except (sa.exc.DBAPIError, psycopg.Error) as exc:  # wrapped, or from the search's own cursor
                    error = getattr(exc, "orig", None) or exc
                    if getattr(error, "sqlstate", None) not in _RETRY_ELSEWHERE:
                        raise
                    log.info("a read was cancelled on a replica; running it elsewhere",
                             extra={"replica": replica.name, "reason": str(error).splitlines()[0]})
                    continue
                replica.served += 1
                return result
        with translated(), self.primary.connect() as conn:
            result = work(conn)
        self.served_by_primary += 1
        return result

    def status(self) -> list[dict]:
        self._ensure_monitor()
        return [{"replica": r.name, "lag_seconds": r.lag_seconds, "usable": r.usable(self.max_lag),
                 "served": r.served} for r in self.replicas]

    def close(self) -> None:
        self._stopping.set()
        for replica in self.replicas:
            replica.engine.dispose()

    def _in_turn(self) -> list[Replica]:
        with self._lock:
            self._turn = (self._turn + 1) % len(self.replicas)
            return self.replicas[self._turn:] + self.replicas[: self._turn]

    def _set_aside(self, replica: Replica, reason: str) -> None:
        """Not used again until a check finds it answering."""
        if replica.lag_seconds is not None:
            log.warning("a replica is unavailable; its reads go elsewhere",
                        extra={"replica": replica.name, "reason": reason})
        replica.lag_seconds = None

    # ---- the checks ---------------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        """One checking thread per process (a forked server worker starts its own), the first check done
        before the first read."""
        if self._monitor_pid == os.getpid():
            return
        with self._lock:
            if self._monitor_pid == os.getpid():
                return
            self._history.clear()
            self.check()
            threading.Thread(target=self._monitor, name="replica-checks", daemon=True).start()
            self._monitor_pid = os.getpid()

    def _monitor(self) -> None:
        while not self._stopping.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:  # a check must never end the thread
                log.exception("checking the replicas failed")

    def check(self) -> None:
        """Each replica's lag: how long ago the primary was at the WAL position the replica has replayed
        (0 when it has replayed the primary's position of this check)."""
        try:
            with self.primary.connect() as conn:
                self._history.append((time.monotonic(), _lsn(conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar())))
        except (sa.exc.DBAPIError, psycopg.Error):
            return  # the primary is away: the replicas keep their last figures
        for replica in self.replicas:
            try:
                with replica.engine.connect() as conn:
                    recovering, replayed = conn.exec_driver_sql(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()").one()
            except (sa.exc.DBAPIError, psycopg.Error) as exc:
                self._set_aside(replica, (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0])
                continue
            if not recovering or replayed is None:  # not (or no longer, once promoted) a standby: never read from it
                if replica.lag_seconds != float("inf"):
                    log.warning("a replica is not a standby; no reads go to it", extra={"replica": replica.name})
                replica.lag_seconds = float("inf")
                continue
            lag = self._lag(_lsn(replayed))
            was = replica.lag_seconds
            if (was is None or was > self.max_lag) and lag <= self.max_lag:
                log.info("a replica serves searches", extra={"replica": replica.name, "lag_seconds": round(lag, 3)})
            elif lag > self.max_lag and (was is None or was <= self.max_lag):
                log.warning("a replica is behind; its reads go elsewhere",
                            extra={"replica": replica.name, "lag_seconds": round(lag, 3)})
            replica.lag_seconds = lag

    def _lag(self, replayed: int) -> float:
        now = time.monotonic()
        caught_up = [at for at, position in self._history if position <= replayed]
        if not caught_up:
            return now - self._history[0][0] if self._history else 0.0
        return now - max(caught_up) if max(caught_up) < self._history[-1][0] else 0.0


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
