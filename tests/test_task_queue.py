"""The task queue in PostgreSQL: exclusive claims, per-instance order, leases that expire and pass on,
fenced changes by a worker that lost its lease, and the NOTIFY that wakes idle workers.

The database may be shared with other tests and other runs: each test claims only among the tasks it
submitted (claim's ``only``), and leaves every other task alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import sqlalchemy as sa

from imagesearch_pg.store import tasks
from imagesearch_pg.store.tables import instances
from imagesearch_pg.store.tables import tasks as task_table


def _instance_id(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()


@pytest.fixture
def queue(service, make_instance, engine):
    """Two fresh instances; their tasks are deleted after the test."""
    ids = [_instance_id(engine, make_instance("generic").name) for _ in range(2)]
    yield ids
    with engine.begin() as conn:
        conn.execute(sa.delete(task_table).where(task_table.c.instance_id.in_(ids)))


def _submit(engine, instance_id: int, n: int) -> int:
    with engine.begin() as conn:
        return tasks.submit(conn, instance_id, "import", {"n": n}).id


def _claim(engine, owner: str, among, lease: float = 30.0):
    with engine.begin() as conn:
        return tasks.claim(conn, owner, lease, among)


def _expire(engine, task_id: int) -> None:
    """As if the task's lease had run out (no waiting on the clock)."""
    with engine.begin() as conn:
        conn.execute(sa.update(task_table).where(task_table.c.id == task_id)
                     .values(lease_expires_at=sa.func.now() - sa.text("interval '1 second'")))


def test_one_task_per_instance_at_a_time_in_submission_order(engine, queue):
    a, b = queue
    a1, a2, b1 = _submit(engine, a, 1), _submit(engine, a, 2), _submit(engine, b, 1)
    submitted = (a1, a2, b1)
    assert _claim(engine, "w0", (a2,)) is None  # a2 waits for a1, queued before it on the same instance
    first, second = _claim(engine, "w1", submitted), _claim(engine, "w2", submitted)
    assert (first.id, second.id) == (a1, b1)  # a2 waits for a1: same instance
    assert first.state == "running" and first.attempts == 1 and first.lease_owner == "w1"
    assert _claim(engine, "w3", submitted) is None
    with engine.begin() as conn:
        assert tasks.finish(conn, a1, "w1", "succeeded")
    third = _claim(engine, "w3", submitted)
    assert third.id == a2 and third.params == {"n": 2}


def test_an_expired_lease_passes_the_task_on_and_fences_its_old_owner(engine, queue):
    a, _ = queue
    task_id = _submit(engine, a, 1)
    assert _claim(engine, "crashed", (task_id,)).id == task_id
    assert _claim(engine, "other", (task_id,)) is None  # the lease still holds
    _expire(engine, task_id)
    taken = _claim(engine, "other", (task_id,))
    assert taken.id == task_id and taken.attempts == 2 and taken.lease_owner == "other"
    with engine.begin() as conn:
        assert not tasks.renew(conn, task_id, "crashed", 30)
        assert not tasks.save_checkpoint(conn, task_id, "crashed", {"line": 9}, {})
        assert not tasks.finish(conn, task_id, "crashed", "failed")
        assert tasks.save_checkpoint(conn, task_id, "other", {"line": 3}, {"done": 3})
        assert tasks.renew(conn, task_id, "other", 30)
    with engine.connect() as conn:
        kept = tasks.get(conn, task_id)
    assert kept.state == "running" and kept.checkpoint == {"line": 3} and kept.progress == {"done": 3}


def test_concurrent_workers_never_claim_one_task_twice(service, make_instance, engine, queue):
    ids = list(queue) + [_instance_id(engine, make_instance("generic").name) for _ in range(6)]
    submitted = [_submit(engine, i, n) for i in ids for n in range(3)]
    claimed, lock = [], threading.Lock()

    def worker(name: str) -> list[int]:
        """Claims and finishes tasks until all are claimed; returns the finishes it was refused."""
        refused = []
        while True:
            task = _claim(engine, name, submitted)
            if task is None:
                with lock:
                    if len(claimed) >= len(submitted):
                        return refused
                time.sleep(0.01)  # the others hold the claimable ones: try again shortly
                continue
            with lock:
                claimed.append(task.id)
            with engine.begin() as conn:
                if not tasks.finish(conn, task.id, name, "succeeded"):
                    refused.append(task.id)

    with ThreadPoolExecutor(6) as pool:
        runs = [pool.submit(worker, f"w{i}") for i in range(6)]
        refused = [r for run in runs for r in run.result(timeout=120)]  # a worker's exception fails the test here
    assert sorted(claimed) == sorted(submitted)  # each exactly once
    assert refused == []  # each finished by the worker that claimed it


def test_a_submitted_task_wakes_a_listening_worker(engine, queue):
    a, _ = queue
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {tasks.CHANNEL}")
        with engine.begin() as conn:
            task_id = tasks.submit(conn, a, "import", {"n": 1}).id
            # not before the commit (other tests and runs may submit tasks meanwhile: only ours counts)
            assert str(task_id) not in [n.payload for n in listener.notifies(timeout=0.2)]
        # A waiting worker hears it at the commit (the timeout only keeps a broken trigger from hanging the test).
        heard = next((n for n in listener.notifies(timeout=60) if n.payload == str(task_id)), None)
    assert heard is not None and heard.channel == tasks.CHANNEL


def test_a_task_ends_only_in_a_final_state(engine, queue):
    a, _ = queue
    task_id = _submit(engine, a, 1)
    _claim(engine, "w", (task_id,))
    with engine.begin() as conn, pytest.raises(ValueError, match="succeeded"):
        tasks.finish(conn, task_id, "w", "queued")


def test_each_claim_of_one_worker_is_its_own_lease_owner(service, queue, engine):
    """A worker that claims a task again (its lease expired while a slow thread still ran it) fences off
    its own earlier run: the two runs do not share an owner."""
    from imagesearch_pg.tasks.worker import Worker

    task_id = _submit(engine, queue[0], 1)
    worker = Worker(service, concurrency=2, lease_seconds=0.2, poll_seconds=0.05, only=task_id)
    stop = threading.Event()
    claimed = []

    def run_task(task):  # the first run stalls past its lease; the loop claims the task again meanwhile
        claimed.append(task)
        if len(claimed) == 1:
            stop.wait(5)
        else:
            stop.set()

    worker.run_task = run_task
    worker.run(stop)
    first, second = claimed
    assert first.id == second.id == task_id
    assert first.lease_owner.startswith(worker.owner) and second.lease_owner.startswith(worker.owner)
    assert first.lease_owner != second.lease_owner
    with engine.begin() as conn:
        assert not tasks.save_checkpoint(conn, task_id, first.lease_owner, {"line": 1}, {})
        assert tasks.save_checkpoint(conn, task_id, second.lease_owner, {"line": 1}, {})
