"""A task's lease as shipped (README: "hold a lease renewed every 10 s; a worker that dies loses its task after
30 s (--lease-seconds)"), with no lease setting given anywhere.

The worker is held inside a real batch import: its location is on an S3 endpoint that takes connections and
never answers, so the task stays claimed while the heartbeat runs. What the lease is comes from the
database's clock (the claim and each renewal write ``lease_expires_at = now() + lease`` and
``updated_at = now()`` together); how often it is renewed, from the waits the heartbeat asks for. Nothing
waits for a clock."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from imagesearch_pg.cli import cli
from imagesearch_pg.storage.filesystems import variable_names
from imagesearch_pg.store.tables import tasks as task_table
from imagesearch_pg.tasks import worker as worker_module
from imagesearch_pg.tasks.lease import Lease
from tests.serving import serving

PATIENCE = 120.0  # seconds a worker may take to claim the task on a busy machine before the test fails


class SilentEndpoint:
    """An S3 endpoint that accepts connections (into the kernel's backlog) and never answers. Closing it
    resets the connections waiting on it: a read held there fails, and its task is given back."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def held_import(service, make_instance, monkeypatch):
    """An import task of a fresh instance, held in its first read: from a location on a SilentEndpoint (its
    own key variables set, for this process and the servers the test starts). Yields (submit, endpoint, env)."""
    endpoint = SilentEndpoint()
    location = f"silent-{uuid.uuid4().hex[:12]}"
    service.storage.add(location, "s3://held/batch", endpoint=endpoint.url)
    key_names = variable_names(location)
    env = {key_names[0]: "AKIDHELD", key_names[1]: "held-secret"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield (lambda: service.tasks.submit_import(make_instance("generic").name, location, "/")), endpoint, env
    finally:
        endpoint.close()
        service.storage.remove(location)


def claimed(engine, task_id: int) -> sa.Row:
    """The task's row once a worker holds it, read in one snapshot: the lease is the time from its last
    write (a claim or a renewal; the import held in its first read writes nothing else) to its end."""
    columns = (task_table.c.state, task_table.c.lease_owner, task_table.c.started_at, task_table.c.updated_at,
               (task_table.c.lease_expires_at - task_table.c.updated_at).label("lease"))
    deadline = time.monotonic() + PATIENCE
    while True:
        with engine.connect() as conn:
            row = conn.execute(sa.select(*columns).where(task_table.c.id == task_id)).one()
        if row.lease_owner is not None:
            return row
        assert time.monotonic() < deadline, f"no worker claimed task {task_id}: {row}"
        time.sleep(0.05)


class _Heartbeat(threading.Event):
    """A lease's ``_done``, which its heartbeat waits on between renewals: records each wait's timeout. The
    first wait ends at once, as if its time had run out (so a renewal happens now); the second wait is real
    and tells the test it began (the renewal before it is committed)."""

    def __init__(self, waits: list, second: threading.Event):
        super().__init__()
        self.waits, self.second = waits, second

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) == 1:
            return False
        self.second.set()
        return super().wait(timeout)


def test_the_heartbeat_renews_a_30_second_lease_every_10_seconds(service, engine, held_import, monkeypatch):
    submit, endpoint, _ = held_import
    waits, second = [], threading.Event()

    class RecordedLease(Lease):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._done = _Heartbeat(waits, second)

    monkeypatch.setattr(worker_module, "Lease", RecordedLease)
    task = submit()
    runner = worker_module.Worker(service, only=task.id)  # no lease given: the default
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert second.wait(PATIENCE), f"the heartbeat never waited twice: {waits}"
        row = claimed(engine, task.id)
        assert waits == [10.0, 10.0]
        assert row.state == "running" and row.lease_owner.startswith(runner.owner)
        assert row.updated_at > row.started_at  # renewed since the claim ...
        assert row.lease == timedelta(seconds=30)  # ... for 30 s from the renewal
    finally:
        stop.set()
        endpoint.close()  # the import's read fails: it gives the task back, and the run ends
        thread.join(PATIENCE)
    assert not thread.is_alive()


def test_serves_worker_holds_a_task_for_30_seconds(engine, settings, held_import):
    """`imagesearch serve` starts `imagesearch worker`, which runs the claim with its defaults."""
    submit, endpoint, location_env = held_import
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home), **location_env}
    with serving(env, workers=1, extra=("--task-workers", "1")):
        try:
            row = claimed(engine, submit().id)
        finally:
            endpoint.close()  # so that the worker, stopped with the server, has no read to wait for
    assert row.state == "running"
    assert row.lease == timedelta(seconds=30)  # from the claim, or from a renewal since


def test_the_worker_commands_default_lease_is_30_seconds():
    default = next(p.default for p in cli.commands["worker"].params if p.name == "lease_seconds")
    assert default == 30
