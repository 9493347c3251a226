"""A worker's hold on one task: renewed by a heartbeat while the handler works, checked at every checkpoint.

A handler calls ``checkpoint`` in the transaction that applied its work so far; if the lease passed to
another worker meanwhile (this one was paused past its expiry), the checkpoint raises LeaseLost and the
transaction rolls back, so the work is done once, by the worker that holds the task.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from imagesearch_pg.errors import DatabaseUnavailable
from imagesearch_pg.store import tasks
from imagesearch_pg.store.database import Database

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The task is no longer this worker's (its lease expired and another claimed it), or the worker is
    stopping and gives it back."""


class Lease:
    def __init__(self, database: Database, task: tasks.Task, owner: str, seconds: float,
                 stopping: threading.Event | None = None):
        self.database = database
        self.task = task
        self.owner = owner
        self.seconds = seconds
        self.lost = threading.Event()
        self._stopping = stopping or threading.Event()
        self._done = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease-{task.id}", daemon=True)

    def __enter__(self) -> "Lease":
        self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._heartbeat.join()

    def check(self) -> None:
        """Raise LeaseLost if the task is no longer ours or the worker is stopping."""
        if self.lost.is_set():
            raise LeaseLost(f"task {self.task.id}'s lease passed to another worker")
        if self._stopping.is_set():
            raise LeaseLost(f"the worker is stopping; task {self.task.id} is given back")

    def checkpoint(self, conn: sa.Connection, checkpoint: dict, progress: dict) -> None:
        """Record progress in the caller's transaction, which must roll back if this raises."""
        self.check()
        if not tasks.save_checkpoint(conn, self.task.id, self.owner, checkpoint, progress):
            self.lost.set()
            self.check()

    def _beat(self) -> None:
        # Renewed at a third of its length: two renewals may fail (a database restart) before it expires.
        while not self._done.wait(self.seconds / 3):
            try:
                with self.database.transaction() as conn:
                    held = tasks.renew(conn, self.task.id, self.owner, self.seconds)
            except DatabaseUnavailable:
                continue  # the next beat tries again; the checkpoint finds out if the lease is gone
            if not held:
                log.warning("lost the lease of task %s", self.task.id)
                self.lost.set()
                return
