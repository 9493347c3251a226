"""A submitted task claimed as a worker claims it, and run to its end on the calling thread: the test knows
when it has ended without waiting for a worker's loop to notice it."""

from __future__ import annotations

import uuid

from imagesearch_pg.store import tasks as task_store
from imagesearch_pg.tasks.worker import Worker


def claim(service, task: task_store.Task) -> task_store.Task:
    """``task`` claimed by a worker of the test's (leased for the shipped 30 s)."""
    with service.database.transaction() as conn:
        claimed = task_store.claim(conn, f"test-{uuid.uuid4().hex[:8]}", 30.0, only=[task.id])
    assert claimed is not None and claimed.id == task.id, f"task {task.id} could not be claimed"
    return claimed


def run_claimed(service, claimed: task_store.Task) -> None:
    """Run a claimed task as the worker that claimed it would, until its handler returns."""
    Worker(service, only=claimed.id).run_task(claimed)


def run_now(service, task: task_store.Task) -> task_store.Task:
    """Claim ``task``, run it, and return it as it ended."""
    run_claimed(service, claim(service, task))
    return service.tasks.get(task.id)
