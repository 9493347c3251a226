"""A worker's hold on a task (imagesearch_pg/tasks/lease.py) against the real queue: checkpoints are
recorded while the lease is held and refused once another worker has the task or the worker stops; the
heartbeat renews the lease before it runs out, and notices when it has passed on."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from imagesearch_pg.store import tasks
from imagesearch_pg.store.database import Database, create_engine
from imagesearch_pg.store.tables import instances
from imagesearch_pg.store.tables import tasks as task_table
from imagesearch_pg.tasks.lease import Lease, LeaseLost

PATIENCE = 30.0  # seconds a condition may take to come about on a busy machine before the test fails


@pytest.fixture
def claim(make_instance, engine):
    """claim(owner, seconds): a fresh task of a fresh instance, claimed by ``owner`` for ``seconds``."""
    def claim(owner: str, seconds: float) -> tasks.Task:
        name = make_instance("generic").name
        with engine.begin() as conn:
            instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
            task_id = tasks.submit(conn, instance_id, "import", {}).id
        with engine.begin() as conn:
            return tasks.claim(conn, owner, seconds, only=[task_id])
    return claim


def owner() -> str:
    return f"worker-{uuid.uuid4().hex[:8]}"


def held(engine, task_id: int):
    """(lease owner, whether the lease is in force, checkpoint, time it has left) on the database's clock as
    the statement runs, after its snapshot (now() is the transaction's start, which may precede a renewal that
    the statement sees)."""
    now = sa.func.clock_timestamp()
    with engine.connect() as conn:
        return conn.execute(sa.select(task_table.c.lease_owner, task_table.c.lease_expires_at > now,
                                      task_table.c.checkpoint, task_table.c.lease_expires_at - now)
                            .where(task_table.c.id == task_id)).one()


def pass_on(engine, task_id: int) -> str:
    """The lease runs out and another worker claims the task; returns that worker's name."""
    other = owner()
    with engine.begin() as conn:
        conn.execute(sa.update(task_table).where(task_table.c.id == task_id).values(lease_expires_at=sa.func.now()))
    with engine.begin() as conn:
        assert tasks.claim(conn, other, 30.0, only=[task_id]).lease_owner == other
    return other


def lease_threads(task_id: int) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"lease-{task_id}"]


def test_a_checkpoint_under_a_held_lease_is_recorded(database, engine, claim):
    me = owner()
    task = claim(me, 30.0)
    with Lease(database, task, me, 30.0) as lease:
        assert [thread.daemon for thread in lease_threads(task.id)] == [True]
        with database.transaction() as conn:
            lease.checkpoint(conn, {"line": 3}, {"done": 3})
        lease.check()
    assert not lease.lost.is_set() and lease_threads(task.id) == []  # the heartbeat ends with the lease
    assert held(engine, task.id)[:3] == (me, True, {"line": 3})
    with engine.connect() as conn:
        assert conn.execute(sa.select(task_table.c.progress).where(task_table.c.id == task.id)).scalar_one() == {
            "done": 3}


def test_a_checkpoint_after_the_task_passed_on_raises_and_its_transaction_rolls_back(database, engine, claim):
    me = owner()
    task = claim(me, 30.0)
    with Lease(database, task, me, 30.0) as lease:
        other = pass_on(engine, task.id)
        with pytest.raises(LeaseLost, match=f"^task {task.id}'s lease passed to another worker$"):
            with database.transaction() as conn:
                conn.execute(sa.update(task_table).where(task_table.c.id == task.id).values(progress={"mine": 1}))
                lease.checkpoint(conn, {"line": 9}, {"done": 9})
        assert lease.lost.is_set()
        with pytest.raises(LeaseLost, match="passed to another worker"):
            lease.check()  # and every check after it
    with engine.connect() as conn:
        progress = conn.execute(sa.select(task_table.c.progress).where(task_table.c.id == task.id)).scalar_one()
    assert held(engine, task.id)[0] == other and held(engine, task.id)[2] is None and progress != {"mine": 1}


def test_a_stopping_worker_records_nothing_more(database, engine, claim):
    me, stopping = owner(), threading.Event()
    task = claim(me, 30.0)
    with Lease(database, task, me, 30.0, stopping) as lease:
        lease.check()
        stopping.set()
        with database.transaction() as conn:  # committed: only the check keeps the checkpoint out
            with pytest.raises(LeaseLost, match=f"^the worker is stopping; task {task.id} is given back$"):
                lease.checkpoint(conn, {"line": 5}, {})
    assert held(engine, task.id)[2] is None and not lease.lost.is_set()


def test_the_heartbeat_renews_the_lease_before_it_runs_out(database, engine, claim):
    """A 3 s lease, renewed every second: watched through two renewals, it is never found expired."""
    me = owner()
    task = claim(me, 3.0)
    remaining = []
    deadline = time.monotonic() + PATIENCE
    with Lease(database, task, me, 3.0) as lease:
        while sum(later > earlier for earlier, later in zip(remaining, remaining[1:])) < 2:
            assert time.monotonic() < deadline, f"the lease was not renewed twice: {remaining}"
            assert lease_threads(task.id), "the heartbeat stopped"
            lease_owner, in_force, _, left = held(engine, task.id)
            assert (lease_owner, in_force) == (me, True), f"the lease ran out: {remaining}"
            remaining.append(left.total_seconds())
            lease.lost.wait(0.05)
    assert not lease.lost.is_set() and max(remaining) <= 3.0 and max(remaining) > 2.0


def test_the_heartbeat_notices_that_the_task_passed_on(database, engine, claim, caplog):
    me = owner()
    task = claim(me, 30.0)
    pass_on(engine, task.id)
    with caplog.at_level(logging.WARNING, logger="imagesearch_pg.tasks.lease"):
        with Lease(database, task, me, 0.3) as lease:
            assert lease.lost.wait(PATIENCE)
            with pytest.raises(LeaseLost, match="passed to another worker"):
                lease.check()
    assert [record.getMessage() for record in caplog.records if record.name == "imagesearch_pg.tasks.lease"] == [
        f"lost the lease of task {task.id}"]


def test_the_heartbeat_keeps_trying_while_the_database_is_unreachable(engine, claim):
    """Renewals that fail for an outage are tried again at the next beat: the lease is not given up. The
    database here is a listener that drops every connection, so each accepted connection is one beat."""
    me = owner()
    task = claim(me, 30.0)
    with socket.create_server(("127.0.0.1", 0)) as down:
        down.settimeout(PATIENCE)
        port = down.getsockname()[1]
        unreachable = Database(create_engine(
            f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?sslmode=disable&gssencmode=disable"))
        with Lease(unreachable, task, me, 0.3) as lease:
            for _ in range(3):  # three beats, each refused
                connection, _ = down.accept()
                connection.close()
            assert lease_threads(task.id) and not lease.lost.is_set()
        unreachable.engine.dispose()
