"""No queued item can stop the picture queue: a role that may only write a synced table queues items whose
attributes are nested thousands deep or longer than any the API takes, whose ProductId is huge, or whose
picture is over the API's 4 MB; each fails alone with the API's Code while the items around it, of its
instance and of another, are written. A batch that fails for a reason nobody foresaw does not hold up other
instances, its items are then tried one by one, and one that fails every time ends TooManyAttempts."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

import pytest
import sqlalchemy as sa

from imagesearch_pg.tasks import picture_queue as queue_tasks
from imagesearch_pg.tasks.picture_queue import MAX_ATTEMPTS, process_pending
from imagesearch_pg.tasks.worker import Worker
from tests.pictures import encode, noise

_names = itertools.count()


def sql(engine, statement: str, **values):
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), values)
        return result.all() if result.returns_rows else None


def outcomes(engine, instance: str) -> dict:
    """ProductId (its first 20 characters) -> (state, code, message) of the instance's items."""
    rows = sql(engine, "SELECT left(q.product_id, 20), q.state, q.error_code, q.error_message"
                       " FROM imagesearch.picture_queue q JOIN imagesearch.instances i ON i.id = q.instance_id"
                       " WHERE i.name = :i", i=instance)
    return {key: (state, code, message) for key, state, code, message in rows}


def picture(seed: int) -> bytes:
    return encode(noise(160, 120, seed=seed))


@pytest.fixture
def synced(engine, logins, make_instance):
    """An instance synced to a table of the owner's that a LOGIN role granted nothing of ours may write;
    yields (instance name, that role)."""
    made = make_instance()
    table = f"poison{os.getpid()}_{next(_names)}"
    sql(engine, f"CREATE TABLE public.{table} (id text, photo bytea, note jsonb, content text)")
    writer = logins.make("tablewriter")
    sql(engine, f"GRANT SELECT, INSERT, UPDATE ON public.{table} TO {writer.name}")
    sql(engine, "SELECT imagesearch.sync_table(:i, :t, ARRAY['id'], 'photo', :a)", i=made.name, t=f"public.{table}",
        a=json.dumps({"StrAttr": "note", "CustomContent": "content"}))
    yield made.name, writer, f"public.{table}"
    sql(engine, f"DROP TABLE public.{table}")


def test_poisoned_items_fail_alone_and_the_rest_are_written(service, engine, make_instance, synced):
    name, writer, table = synced
    other = make_instance().name
    writer.run(f"INSERT INTO {table} (id, photo, note) VALUES ('nested', :p,"
               " (repeat('[', 5000) || repeat(']', 5000))::jsonb)", p=picture(1))
    writer.run(f"INSERT INTO {table} (id, photo, content) VALUES ('long-content', :p, repeat('x', 100000))",
               p=picture(2))
    writer.run(f"INSERT INTO {table} (id, photo)"
               " VALUES ('big-picture', :p || decode(repeat('00', 4 * 1024 * 1024), 'hex'))", p=picture(3))
    writer.run(f"INSERT INTO {table} (id, photo) VALUES (repeat('k', 100000), :p)", p=picture(4))
    writer.run(f"INSERT INTO {table} (id, photo, note) VALUES ('good', :p, '\"red\"')", p=picture(5))
    sql(engine, "SELECT imagesearch.add_image(:i, 'elsewhere', 'a.png', :p)", i=other, p=picture(6))

    while process_pending(service):  # as the worker's thread does: no round raises
        pass

    found = outcomes(engine, name)
    assert {key: value[:2] for key, value in found.items()} == {
        "nested": ("failed", "InvalidParameter"), "long-content": ("failed", "InvalidParameter"),
        "big-picture": ("failed", "InvalidImageSize"), "k" * 20: ("failed", "InvalidParameter"),
        "good": ("done", None)}
    assert "nested too deeply" in found["nested"][2]
    assert "longer than 65536 characters" in found["long-content"][2]
    assert f"is {4 * 1024 * 1024 + len(picture(3))} bytes; at most 4194304 (4 MB)" in found["big-picture"][2]
    assert found["k" * 20][2] == "ProductId is longer than 4096 characters"
    assert outcomes(engine, other) == {"elsewhere": ("done", None, None)}
    assert sql(engine, "SELECT product_id, str_attr FROM imagesearch.picture_list WHERE instance = :i", i=name) == \
        [("good", "red")]


def _rounds_until(service, done, most: int = 40) -> list[str]:
    """Rounds of the worker's thread until ``done()``: each 'ok', or 'raised' (logged and tried again)."""
    rounds = []
    while not done():
        assert len(rounds) < most, rounds
        try:
            process_pending(service)
            rounds.append("ok")
        except RuntimeError:
            rounds.append("raised")
    return rounds


def test_a_batch_that_keeps_failing_holds_up_no_other_instance(service, engine, make_instance, monkeypatch):
    """An item that fails its batch for a reason nobody foresaw (here a bug in framing its picture): the
    next round takes another instance; then its items are tried one by one, and it ends TooManyAttempts."""
    first, second = make_instance().name, make_instance().name
    bomb = picture(10)
    sql(engine, "SELECT imagesearch.add_image(:i, 'bomb', 'a.png', :b), imagesearch.add_image(:i, 'fine', 'a.png', :p)",
        i=first, b=bomb, p=picture(11))
    sql(engine, "SELECT imagesearch.add_image(:i, 'other', 'a.png', :p)", i=second, p=picture(12))
    framed = service.pipeline.framed

    def framing(instance, data, **options):
        if data == bomb:
            raise RuntimeError("a bug")
        return framed(instance, data, **options)

    monkeypatch.setattr(service.pipeline, "framed", framing)
    rounds = _rounds_until(service, lambda: outcomes(engine, second)["other"][0] == "done")
    assert rounds.count("raised") == 1  # the first instance failed once, then the second's turn came
    assert outcomes(engine, first)["bomb"][0] == "pending"

    rounds = _rounds_until(service, lambda: all(state != "pending" for state, *_ in outcomes(engine, first).values()))
    assert rounds.count("raised") == MAX_ATTEMPTS - 1
    found = outcomes(engine, first)
    assert found["bomb"] == ("failed", "TooManyAttempts",
                             f"the item was taken up {MAX_ATTEMPTS} times without finishing")
    assert found["fine"] == ("done", None, None)  # tried on its own, not failed with the bomb


def test_items_whose_batch_never_gets_going_end_too_many_attempts(service, engine, make_instance, monkeypatch):
    """However early a batch fails (before any item is looked at), its items' attempts are counted, and the
    claim that finds one past MAX_ATTEMPTS fails it in SQL."""
    made = make_instance().name
    [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a.png', :p)", i=made, p=picture(20))
    iid = sql(engine, "SELECT id FROM imagesearch.instances WHERE name = :i", i=made)[0][0]
    apply = queue_tasks._apply

    def failing(service_, conn, instance_id, items):
        if instance_id == iid:
            raise RuntimeError("never gets going")
        return apply(service_, conn, instance_id, items)

    monkeypatch.setattr(queue_tasks, "_apply", failing)
    rounds = _rounds_until(service, lambda: outcomes(engine, made)["p"][0] != "pending")
    assert rounds.count("raised") == MAX_ATTEMPTS
    assert sql(engine, "SELECT state, error_code, attempts FROM imagesearch.picture_queue WHERE id = :q", q=queued) == \
        [("failed", "TooManyAttempts", MAX_ATTEMPTS)]


def test_the_worker_thread_outlives_a_poisoned_item(service, engine, synced):
    name, writer, table = synced
    stop = threading.Event()
    worker = Worker(service, poll_seconds=0.2)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        writer.run(f"INSERT INTO {table} (id, photo, note) VALUES ('nested', :p,"
                   " (repeat('[', 5000) || repeat(']', 5000))::jsonb)", p=picture(30))
        writer.run(f"INSERT INTO {table} (id, photo) VALUES ('good', :p)", p=picture(31))
        deadline = time.monotonic() + 60
        while any(state == "pending" for state, *_ in outcomes(engine, name).values()):
            assert time.monotonic() < deadline, outcomes(engine, name)
            time.sleep(0.05)
        assert {key: value[:2] for key, value in outcomes(engine, name).items()} == {
            "nested": ("failed", "InvalidParameter"), "good": ("done", None)}
        assert any(t.name == "picture-queue" and t.is_alive() for t in threading.enumerate())
        writer.run(f"INSERT INTO {table} (id, photo) VALUES ('later', :p)", p=picture(32))
        while outcomes(engine, name)["later"][0] == "pending":  # the same thread takes the next item
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert outcomes(engine, name)["later"][:2] == ("done", None)
    finally:
        stop.set()
        thread.join(30)
