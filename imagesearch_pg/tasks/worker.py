"""The worker: claims tasks from the queue in PostgreSQL and runs each with its kind's handler.

It wakes on the NOTIFY of a submitted task (so a task starts within a second) and polls besides, for
leases that expired and retries that came due. Each running task holds a lease that a heartbeat renews;
a worker that dies (SIGKILL, a lost machine) stops renewing, and another claims the task after the lease
and resumes it from its last checkpoint. Due callbacks of finished tasks are sent on a thread of their own,
and pictures written from SQL (tasks/picture_queue.py) are embedded on another.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa

from imagesearch_pg.errors import DatabaseUnavailable, ImageSearchError, InstanceBusy
from imagesearch_pg.logs import Every
from imagesearch_pg.storage import StorageUnavailable
from imagesearch_pg.store import picture_queue, tasks
from imagesearch_pg.tasks.lease import Lease, LeaseLost

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
POLL_SECONDS = 5.0
# A task claimed this many times without getting further (its worker died each time: a picture that
# crashes the process, a machine that keeps failing) ends as failed rather than taking workers down forever.
MAX_ATTEMPTS = 20
_RETRY_SECONDS = 10.0  # after a transient failure (the database or the storage unreachable), doubling


@dataclass(frozen=True)
class Outcome:
    """How a handler's task ended."""

    state: str  # one of tasks.FINAL_STATES
    code: str | None = None
    message: str | None = None
    result_url: str | None = None


class Transient(Exception):
    """Raised by a handler when the task cannot go on now but may later (storage unreachable): the task is
    given back and claimed again after a delay, from its checkpoint."""


def handlers() -> dict:
    """Each kind's handler module: ``run(service, task, lease) -> Outcome``, and ``abandon(service, task)``
    for a task that will not run again (TooManyAttempts), to undo what its runs left half done."""
    from imagesearch_pg.tasks import batch_import, metadata_export

    return {"import": batch_import, "export": metadata_export}


class Worker:
    def __init__(self, service, *, concurrency: int = 1, lease_seconds: float = LEASE_SECONDS,
                 poll_seconds: float = POLL_SECONDS, only: int | None = None):
        """``only``: run that one task and nothing else (``imagesearch batch run --wait``)."""
        if concurrency < 1:
            raise ValueError("a worker runs at least one task at a time")
        self.service = service
        self.database = service.database
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.only = only
        self.handlers = handlers()
        self._slots = threading.Semaphore(concurrency)
        self._claims = itertools.count(1)
        self._wake = threading.Event()
        self._pictures_wake = threading.Event()
        self._stopping = threading.Event()
        self._unavailable_log = Every(30.0)
        # Set while the LISTEN is active: from then on a submitted task or queued picture wakes the worker
        # at once rather than at its next poll (for those that start a worker and then submit).
        self.listening = threading.Event()

    # ---- the loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Claim and run tasks until ``stop`` is set; then give running tasks back at their next step."""
        listener = threading.Thread(target=self._listen, args=(stop,), name="task-listener", daemon=True)
        listener.start()
        callbacks = threading.Thread(target=self._send_callbacks, args=(stop,), name="task-callbacks", daemon=True)
        callbacks.start()
        pictures = threading.Thread(target=self._embed_queued, args=(stop,), name="picture-queue", daemon=True)
        if self.only is None:
            pictures.start()
        log.info("task worker %s running up to %d task(s) at a time", self.owner, self.concurrency)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="task") as pool:
            try:
                while not stop.is_set():
                    self._claim_while_free(pool)
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
            finally:  # also on Ctrl-C or SIGTERM: running tasks stop at their next step and are given back
                stop.set()
                self._stopping.set()
                self._pictures_wake.set()
        callbacks.join()
        if pictures.is_alive():
            pictures.join()

    def _claim_while_free(self, pool: ThreadPoolExecutor) -> None:
        while self._slots.acquire(blocking=False):
            try:
                with self.database.transaction() as conn:
                    # Each claim its own owner: a task whose lease expired and that this worker claims
                    # again on another thread fences off the earlier run (its calls no longer match).
                    task = tasks.claim(conn, f"{self.owner}/{next(self._claims)}", self.lease_seconds,
                                       None if self.only is None else (self.only,))
            except DatabaseUnavailable as exc:
                task = None
                if self._unavailable_log:
                    log.warning("cannot claim tasks: %s", exc.message)
            if task is None:
                self._slots.release()
                return
            pool.submit(self._run_and_free, task)

    def _run_and_free(self, task: tasks.Task) -> None:
        try:
            self.run_task(task)
        finally:
            self._slots.release()
            self._wake.set()  # a slot is free: claim again now, not at the next poll

    def _listen(self, stop: threading.Event) -> None:
        """LISTEN on the queue's channel and wake the loop on every NOTIFY; reconnect when it breaks."""
        url = self.database.libpq_url()
        try:
            while not stop.is_set():
                try:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {tasks.CHANNEL}")
                        conn.execute(f"LISTEN {picture_queue.CHANNEL}")
                        self.listening.set()
                        self._wake.set()  # tasks submitted while we were not listening
                        self._pictures_wake.set()
                        while not stop.is_set():
                            for notice in conn.notifies(timeout=1.0, stop_after=1):
                                (self._pictures_wake if notice.channel == picture_queue.CHANNEL else self._wake).set()
                except psycopg.Error:
                    self.listening.clear()
                    stop.wait(self.poll_seconds)
        finally:
            self.listening.clear()
            self._wake.set()  # the loop sees ``stop`` now, not at its next poll

    def _send_callbacks(self, stop: threading.Event) -> None:
        from imagesearch_pg.tasks import callbacks
        from imagesearch_pg.tasks.callback_policy import CallbackPolicy

        policy = CallbackPolicy.from_settings(self.service.settings)
        while not stop.wait(min(self.poll_seconds, 1.0)):
            try:
                callbacks.run_due_callbacks(self.database, policy, self.service.tasks.result_url)
            except DatabaseUnavailable:
                continue
            except Exception:  # a bug: logged, and the next round tries again
                log.exception("sending callbacks failed")

    def _embed_queued(self, stop: threading.Event) -> None:
        """Take pictures written from SQL through AddImage's steps, batch after batch, while there are any."""
        from imagesearch_pg.tasks.picture_queue import process_pending

        while not stop.is_set():
            self._pictures_wake.wait(self.poll_seconds)
            self._pictures_wake.clear()
            try:
                while not stop.is_set() and process_pending(self.service):
                    pass
            except (DatabaseUnavailable, StorageUnavailable, sa.exc.OperationalError) as exc:
                if self._unavailable_log:
                    log.warning("cannot embed queued pictures now: %s", getattr(exc, "message", exc))
                stop.wait(self.poll_seconds)
            except Exception:  # a bug: logged, and the next round tries again
                log.exception("embedding queued pictures failed")
                stop.wait(self.poll_seconds)

    # ---- one task ---------------------------------------------------------------------------------------

    def run_task(self, task: tasks.Task) -> None:
        """Run a task this worker claimed, to its end or until it is given back."""
        handler = self.handlers[task.kind]
        if task.attempts > MAX_ATTEMPTS:
            handler.abandon(self.service, task)
            self._finish(task, Outcome("failed", "TooManyAttempts",
                                       f"the task was started {MAX_ATTEMPTS} times without getting further"))
            return
        with Lease(self.database, task, task.lease_owner, self.lease_seconds, self._stopping) as lease:
            try:
                outcome = handler.run(self.service, task, lease)
            except LeaseLost as exc:
                log.info("task %s stopped: %s", task.id, exc)
                self._give_back(task, 0.0)
                return
            except (Transient, DatabaseUnavailable, StorageUnavailable, InstanceBusy) as exc:  # may pass later
                delay = _RETRY_SECONDS * 2 ** min(task.attempts - 1, 6)
                log.warning("task %s paused for %.0f s: %s", task.id, delay, exc)
                self._give_back(task, delay)
                return
            except ImageSearchError as exc:  # e.g. the instance was deleted under it
                outcome = Outcome("failed", exc.code, exc.message)
            except Exception:
                log.exception("task %s failed", task.id)
                outcome = Outcome("failed", "InternalError", "the task failed on a bug; the worker's log has the details")
        self._finish(task, outcome)

    def _give_back(self, task: tasks.Task, delay: float) -> None:
        try:
            with self.database.transaction() as conn:
                tasks.release(conn, task.id, task.lease_owner, delay)
        except DatabaseUnavailable:
            pass  # the lease expires by itself

    def _finish(self, task: tasks.Task, outcome: Outcome) -> None:
        from imagesearch_pg.store import callbacks

        try:
            with self.database.transaction() as conn:
                finished = tasks.finish(conn, task.id, task.lease_owner, outcome.state, error_code=outcome.code,
                                        error_message=outcome.message, result_url=outcome.result_url)
                if finished and task.params.get("callback_address"):
                    callbacks.mark_due(conn, task.id)
        except DatabaseUnavailable:
            return  # not finished: the lease expires and the task runs again from its checkpoint
        if finished:
            log.info("task %s %s%s", task.id, outcome.state, f": {outcome.message}" if outcome.message else "")
