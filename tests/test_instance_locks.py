"""Nobody can freeze an instance: a transaction left open after searching (or queueing a write to) an
instance, as a LOGIN role of the SQL surface would, makes clearing, deleting or creating instances and
rebuilding indexes answer InstanceBusy after a few brief waits (store/locks.py), while searches of the
instance go on; once it ends, the change is made. A client that keeps its transaction open on purpose is
ended when the operator clears or deletes with --end-sessions, if the service's user may end sessions."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from imagesearch_pg.cli import cli
from imagesearch_pg.errors import InstanceBusy, InvalidInstance, NoPermission
from imagesearch_pg.service.models import PicInfo
from imagesearch_pg.store import locks
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.tables import partition_name
from tests.pictures import encode, noise

# Who keeps a transaction open, and what it did first, on the instance named ``name`` (id ``id``): a LOGIN
# role granted only what a DBA grants an application, through the SQL surface, or any session that read the
# pictures through imagesearch.pictures.
HOLDERS = {
    "a-reader-role-searched-it": ("reader", "SELECT count(*) FROM imagesearch.search_by_product(:name, 'p')"),
    "a-writer-role-queued-a-delete": ("writer", "SELECT imagesearch.delete_image(:name, 'p', 'no-such.jpg')"),
    "a-session-read-it-through-imagesearch.pictures":
        ("owner", "SELECT count(*) FROM imagesearch.pictures WHERE instance_id = :id"),
}
_names = itertools.count()


@pytest.fixture(autouse=True)
def brief_waits(monkeypatch):
    monkeypatch.setattr(locks, "LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(locks, "PAUSE_SECONDS", 0.05)


@pytest.fixture
def stocked(service):
    """A new instance holding pictures p/1.jpg and p/2.jpg (each test may delete it)."""
    name = f"locks{os.getpid()}-{next(_names)}"
    service.create_instance(name, "generic")
    for pic in ("1.jpg", "2.jpg"):
        service.add_image(name, "p", pic, encode(noise(150, 150, seed=len(pic) + next(_names))))
    yield name
    if name in {i.name for i in service.list_instances()}:
        service.delete_instance(name)


class OpenTransaction:
    """A second connection that ran ``HOLDERS[holder]`` on instance ``name`` in a transaction, and keeps it
    open until ``end()``."""

    def __init__(self, engines: dict, holder: str, name: str):
        kind, sql = HOLDERS[holder]
        self.conn = engines[kind].connect()
        self.conn.begin()
        self.conn.execute(sa.text(sql), {"name": name, "id": _instance_id(engines["owner"], name)})

    def end(self) -> None:
        self.conn.commit()
        self.conn.close()


@pytest.fixture(scope="module")
def engines(engine, logins) -> dict:
    return {"owner": engine, "reader": logins.make("reader", "imagesearch_reader").engine,
            "writer": logins.make("writer", "imagesearch_writer").engine}


def _instance_id(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM imagesearch.instances WHERE name = :n"), {"n": name}).scalar_one()


def _someone_waits_for_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one() > 0


def _in_background(work) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(work())
        except Exception as exc:  # the outcome to check, whatever it is
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("change", ["clear", "delete"])
def test_an_open_transaction_makes_clear_and_delete_busy_while_searches_go_on(service, engine, engines, stocked,
                                                                              holder, change):
    do = {"clear": service.clear_instance, "delete": service.delete_instance}[change]
    holder = OpenTransaction(engines, holder, stocked)
    try:
        changing, outcome = _in_background(lambda: do(stocked))
        deadline = time.monotonic() + 30
        while not _someone_waits_for_a_lock(engine) and changing.is_alive():  # the change meets the lock
            assert time.monotonic() < deadline
            time.sleep(0.005)
        # Searches of the instance, while the change waits and retries: none queues for good behind it.
        searching, found = _in_background(lambda: [len(service.search_by_name(stocked, "p", "1.jpg").matches)
                                                   for _ in range(5)])
        searching.join(timeout=60)
        changing.join(timeout=60)
        assert not searching.is_alive() and found == [[2] * 5]
        assert not changing.is_alive() and isinstance(outcome[0], InstanceBusy), outcome
        assert "try again" in outcome[0].message and outcome[0].code == "InstanceStatusError"
        assert service.describe_instance(stocked).picture_count == 2  # nothing was changed
    finally:
        holder.end()
    do(stocked)  # the transaction has ended: the change is made
    if change == "clear":
        assert service.describe_instance(stocked).picture_count == 0
        assert service.search_by_filter(stocked, "int_attr>=0").matches == []
    else:
        with pytest.raises(InvalidInstance):
            service.describe_instance(stocked)


def test_creating_and_deleting_other_instances_is_busy_while_a_reader_holds_imagesearch_pictures(service, engines,
                                                                                                 stocked):
    """A partition is attached to and detached from imagesearch.pictures, which a read through it holds."""
    other = f"locks{os.getpid()}-{next(_names)}"
    through_pictures = "a-session-read-it-through-imagesearch.pictures"
    holder = OpenTransaction(engines, through_pictures, stocked)
    try:
        with pytest.raises(InstanceBusy, match="creating instance"):
            service.create_instance(other, "generic")
        assert other not in {i.name for i in service.list_instances()}
    finally:
        holder.end()
    service.create_instance(other, "generic")
    holder = OpenTransaction(engines, through_pictures, stocked)
    try:
        with pytest.raises(InstanceBusy, match="deleting instance"):
            service.delete_instance(other)
    finally:
        holder.end()
    service.delete_instance(other)
    assert other not in {i.name for i in service.list_instances()}


def test_a_write_in_progress_on_one_instance_neither_delays_nor_deadlocks_creating_and_deleting_another(
        service, stocked, monkeypatch):
    """A writer holds its instance's row and counts (instances, from admit_new) before it writes into its
    partition, which takes a lock on imagesearch.pictures: a change that attaches or detaches a partition
    while wanting more of instances than a writer's lock (a foreign key cloned onto the partition did) waits
    for the writer while the writer waits for it."""
    counted, go = threading.Event(), threading.Event()
    upsert_many = picture_store.upsert_many

    def paused_upsert(*args, **kwargs):
        counted.set()
        assert go.wait(60)
        return upsert_many(*args, **kwargs)

    monkeypatch.setattr(picture_store, "upsert_many", paused_upsert)
    writing, written = _in_background(lambda: service.add_image(stocked, "p", "3.jpg", encode(noise(150, 150, seed=3))))
    try:
        assert counted.wait(60)
        other = f"locks{os.getpid()}-{next(_names)}"
        service.create_instance(other, "generic")  # while the writer holds its count, not after
        service.delete_instance(other)
    finally:
        go.set()
        writing.join(timeout=60)
    assert not writing.is_alive() and isinstance(written[0], PicInfo), written
    assert service.describe_instance(stocked).picture_count == 3
    assert other not in {i.name for i in service.list_instances()}


def test_an_index_rebuild_is_busy_while_a_reader_holds_the_partition_and_the_index_stays(service, engine, engines,
                                                                                         stocked):
    instance_id = _instance_id(engine, stocked)
    index_count = sa.text("SELECT count(*) FROM pg_indexes WHERE schemaname = 'imagesearch' AND tablename = :t"
                          " AND indexname LIKE '%hnsw'")
    with engine.connect() as conn:
        indexes = conn.execute(index_count, {"t": partition_name(instance_id)}).scalar_one()
    holder = OpenTransaction(engines, "a-reader-role-searched-it", stocked)
    try:
        with pytest.raises(InstanceBusy, match="vector indexes"):
            with service.database.transaction() as conn:
                picture_store.drop_vector_indexes(conn, instance_id, silhouettes=False)
    finally:
        holder.end()
    with engine.connect() as conn:
        assert indexes >= 1 and conn.execute(index_count, {"t": partition_name(instance_id)}).scalar_one() == indexes


def test_the_cli_says_busy_plainly(engine, engines, settings, stocked):
    holder = OpenTransaction(engines, "a-reader-role-searched-it", stocked)
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    try:
        result = CliRunner().invoke(cli, ["instance", "clear", stocked, "--yes"], env=env, catch_exceptions=False)
    finally:
        holder.end()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: InstanceStatusError: clearing instance {stocked!r} needs a lock" in result.output
    assert f"(imagesearch instance clear {stocked} --end-sessions)" in result.output


def test_the_console_says_nothing_was_cleared(service, settings, engines, stocked):
    from flask_app import create_app
    from tests.test_console import PASSWORD, logged_in, token

    service.console_users.create(f"locks{os.getpid()}", PASSWORD)
    try:
        client = logged_in(create_app({"SETTINGS": settings, "SERVICE": service}), f"locks{os.getpid()}")
        holder = OpenTransaction(engines, "a-reader-role-searched-it", stocked)
        try:
            sent = client.post(f"/instances/{stocked}/clear",
                               data={"confirmation": stocked, "csrf_token": token(client, f"/instances/{stocked}")})
        finally:
            holder.end()
        assert sent.status_code == 302
        page = client.get(sent.headers["Location"]).get_data(as_text=True)
        assert "Nothing was cleared" in page and "needs a lock that another open transaction holds" in page
        assert service.describe_instance(stocked).picture_count == 2
    finally:
        service.console_users.delete(f"locks{os.getpid()}")


# ---- ending the sessions that hold an instance (--end-sessions) ---------------------------------------------

def _sessions_of(engine, user: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pid, wait_event FROM pg_stat_activity WHERE usename = :u"),
                            {"u": user}).all()


@pytest.mark.parametrize("change", ["clear", "delete"])
def test_end_sessions_ends_readers_that_keep_their_transactions_open_and_makes_the_change(
        service, engine, logins, stocked, caplog, change):
    """One reader set its own idle_in_transaction_session_timeout to 0 and stays idle in its transaction;
    another keeps its session busy (pg_sleep) in the transaction that searched the instance."""
    caplog.set_level(logging.WARNING, logger="imagesearch_pg.store.locks")
    do = {"clear": service.clear_instance, "delete": service.delete_instance}[change]
    idle, busy = logins.make("reader", "imagesearch_reader"), logins.make("reader", "imagesearch_reader")
    search = sa.text("SELECT count(*) FROM imagesearch.search_by_product(:name, 'p')")
    held = idle.engine.connect()
    held.execute(sa.text("SET idle_in_transaction_session_timeout = 0"))
    held.execute(search, {"name": stocked})

    def sleeping():
        with busy.engine.connect() as conn:
            conn.execute(search, {"name": stocked})
            conn.execute(sa.text("SELECT pg_sleep(600)"))

    sleeper, slept = _in_background(sleeping)
    deadline = time.monotonic() + 30
    while [wait for _, wait in _sessions_of(engine, busy.name)] != ["PgSleep"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(InstanceBusy) as busy_answer:
        do(stocked)
    assert f"or end the sessions that hold it (imagesearch instance {change} {stocked} --end-sessions)" in \
        busy_answer.value.message

    do(stocked, end_sessions=True)
    if change == "clear":
        assert service.describe_instance(stocked).picture_count == 0
    else:
        with pytest.raises(InvalidInstance):
            service.describe_instance(stocked)
    sleeper.join(60)
    assert isinstance(slept[0], sa.exc.OperationalError)  # its session was ended under it
    with pytest.raises(sa.exc.OperationalError):
        held.execute(sa.text("SELECT 1"))
    held.close()
    assert _sessions_of(engine, idle.name) == [] and _sessions_of(engine, busy.name) == []
    ended = [r for r in caplog.records if r.name == "imagesearch_pg.store.locks"]
    assert {r.user for r in ended} == {idle.name, busy.name}
    assert all(r.change == f"{'clearing' if change == 'clear' else 'deleting'} instance {stocked!r}"
               and isinstance(r.pid, int) and r.transaction_open_seconds >= 0 for r in ended)
    assert "search_by_product" not in caplog.text and "pg_sleep" not in caplog.text  # never what they ran


def test_ending_sessions_needs_the_right_to_and_says_so(engine, logins):
    """As a user that is no superuser: refused without pg_signal_backend, nothing changed and nobody ended;
    granted it, the session that holds the lock is ended and the change made."""
    operator, holder = logins.make("operator"), logins.make("holder")
    tables = f"ops{os.getpid()}_{next(_names)}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {tables} AUTHORIZATION {operator.name}")
    operator.run(f"CREATE TABLE {tables}.t (x integer); INSERT INTO {tables}.t VALUES (1);"
                 f" GRANT USAGE ON SCHEMA {tables} TO {holder.name}; GRANT SELECT ON {tables}.t TO {holder.name}")
    held = holder.engine.connect()
    held.execute(sa.text(f"SELECT count(*) FROM {tables}.t"))  # its transaction stays open

    def empty_it():
        with operator.engine.begin() as conn:
            locks.waiting_briefly(conn, lambda: conn.execute(sa.text(f"TRUNCATE {tables}.t")), "emptying t",
                                  end_sessions=True)

    with pytest.raises(NoPermission) as refused:
        empty_it()
    message = refused.value.message
    assert message.startswith("emptying t was not made: PostgreSQL refused to end session")
    assert f"(user {holder.name})" in message and f"GRANT pg_signal_backend TO {operator.name}" in message
    assert held.execute(sa.text(f"SELECT count(*) FROM {tables}.t")).scalar_one() == 1  # still there, untouched

    with engine.begin() as conn:
        conn.exec_driver_sql(f"GRANT pg_signal_backend TO {operator.name}")
    empty_it()
    with pytest.raises(sa.exc.OperationalError):
        held.execute(sa.text("SELECT 1"))
    held.close()
    assert operator.run(f"SELECT count(*) FROM {tables}.t") == [(0,)]


def test_the_cli_ends_the_sessions_when_told_to(engine, logins, settings, stocked):
    reader = logins.make("reader", "imagesearch_reader")
    held = reader.engine.connect()
    held.execute(sa.text("SELECT count(*) FROM imagesearch.search_by_product(:name, 'p')"), {"name": stocked})
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    result = CliRunner().invoke(cli, ["instance", "clear", stocked, "--yes", "--end-sessions"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0 and result.output.strip().endswith(f"cleared instance {stocked}")
    assert "msg='ended a session that held a lock a change needed'" in result.output  # the operator sees whom
    assert f"user={reader.name!r}" in result.output and "search_by_product" not in result.output
    with pytest.raises(sa.exc.OperationalError):
        held.execute(sa.text("SELECT 1"))
    held.close()
    assert _sessions_of(engine, reader.name) == []
