"""The task queue in PostgreSQL: exclusive claims, per-instance order, leases that expire and pass on,
fenced changes by a worker that lost its lease, and the NOTIFY that wakes idle workers."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from imagesearch_pg.store import tasks
from imagesearch_pg.store.tables import instances
from imagesearch_pg.store.tables import tasks as task_table


@pytest.fixture
def queue(service, make_instance, engine):
    """Two fresh instances, and the queue emptied of any other test's unfinished tasks (restored after)."""
    ids = []
    for _ in range(2):
        made = make_instance("generic")
        with engine.connect() as conn:
            ids.append(conn.execute(sa.select(instances.c.id).where(instances.c.name == made.name)).scalar_one())
    with engine.begin() as conn:
        conn.execute(sa.delete(task_table).where(task_table.c.state.in_(("queued", "running"))))
    yield ids
    with engine.begin() as conn:
        conn.execute(sa.delete(task_table).where(task_table.c.instance_id.in_(ids)))


def _submit(engine, instance_id: int, n: int) -> int:
    with engine.begin() as conn:
        return tasks.submit(conn, instance_id, "import", {"n": n}).id


def _claim(engine, owner: str, lease: float = 30.0):
    with engine.begin() as conn:
        return tasks.claim(conn, owner, lease)


def test_one_task_per_instance_at_a_time_in_submission_order(engine, queue):
    a, b = queue
    a1, a2, b1 = _submit(engine, a, 1), _submit(engine, a, 2), _submit(engine, b, 1)
    first, second = _claim(engine, "w1"), _claim(engine, "w2")
    assert (first.id, second.id) == (a1, b1)  # a2 waits for a1: same instance
    assert first.state == "running" and first.attempts == 1 and first.lease_owner == "w1"
    assert _claim(engine, "w3") is None
    with engine.begin() as conn:
        assert tasks.finish(conn, a1, "w1", "succeeded")
    third = _claim(engine, "w3")
    assert third.id == a2 and third.params == {"n": 2}


def test_an_expired_lease_passes_the_task_on_and_fences_its_old_owner(engine, queue):
    a, _ = queue
    task_id = _submit(engine, a, 1)
    assert _claim(engine, "crashed", lease=0.2).id == task_id
    assert _claim(engine, "other") is None  # the lease still holds
    time.sleep(0.4)
    taken = _claim(engine, "other")
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
    ids = list(queue)
    for _ in range(6):
        made = make_instance("generic")
        with engine.connect() as conn:
            ids.append(conn.execute(sa.select(instances.c.id).where(instances.c.name == made.name)).scalar_one())
    submitted = {_submit(engine, i, n) for i in ids for n in range(3)}
    claimed, lock = [], threading.Lock()

    def worker(name: str) -> None:
        while True:
            task = _claim(engine, name)
            if task is None:
                if len(claimed) >= len(submitted):
                    return
                time.sleep(0.01)
                continue
            with lock:
                claimed.append(task.id)
            with engine.begin() as conn:
                assert tasks.finish(conn, task.id, name, "succeeded")

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == sorted(submitted)  # each exactly once
    with engine.begin() as conn:
        conn.execute(sa.delete(task_table).where(task_table.c.instance_id.in_(ids)))


def test_a_submitted_task_wakes_a_listening_worker(engine, queue):
    a, _ = queue
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {tasks.CHANNEL}")
        began = time.monotonic()
        task_id = _submit(engine, a, 1)
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == [str(task_id)] and time.monotonic() - began < 1


def test_a_task_ends_only_in_a_final_state(engine, queue):
    a, _ = queue
    task_id = _submit(engine, a, 1)
    _claim(engine, "w")
    with engine.begin() as conn, pytest.raises(ValueError, match="succeeded"):
        tasks.finish(conn, task_id, "w", "queued")


def test_each_claim_of_one_worker_is_its_own_lease_owner(service, queue, engine):
    """A worker that claims a task again (its lease expired while a slow thread still ran it) fences off
    its own earlier run: the two runs do not share an owner."""
    from imagesearch_pg.tasks.worker import Worker

    worker = Worker(service, concurrency=2, lease_seconds=0.2, poll_seconds=0.05)
    task_id = _submit(engine, queue[0], 1)
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
