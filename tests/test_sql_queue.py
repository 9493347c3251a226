"""Writing pictures from SQL: add_image and delete_image through the queue, the worker's AddImage path, the
status and errors views, retries, synced tables, and the refusals the SQL functions share with the API."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.store.tables import partition
from imagesearch_pg.tasks.picture_queue import QueuedAdd, process_pending, queued_add
from imagesearch_pg.tasks.worker import Worker
from tests.pictures import encode, sample_photos


@pytest.fixture(scope="module")
def photos():
    return {key: encode(image) for key, image in sample_photos().items()}


def run_queue(service) -> int:
    """Work the queue until nothing is left, as the worker's thread does."""
    done = 0
    while (finished := process_pending(service)):
        done += finished
    return done


def sql(engine, statement: str, **values):
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), values)
        return result.all() if result.returns_rows else None


def stored(engine, instance_id: int, product_id: str, pic_name: str):
    part = partition(instance_id)
    with engine.connect() as conn:
        return conn.execute(sa.select(part).where(part.c.product_id == product_id, part.c.pic_name == pic_name)).first()


def instance_id(engine, name: str) -> int:
    return sql(engine, "SELECT id FROM imagesearch.instances WHERE name = :n", n=name)[0][0]


def states(engine, name: str) -> dict[str, int]:
    """How many of the instance's queued items are in each state."""
    return dict(sql(engine, "SELECT state, count(*) FROM imagesearch.queue_status WHERE instance = :i GROUP BY state",
                    i=name))


def test_add_image_from_sql_stores_what_add_image_stores(service, engine, make_instance, photos):
    made = make_instance("product")
    service.add_image(made.name, "api", "a.png", photos["rocket"], attributes=None)
    [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'sql', 'a.png', :p, '{\"IntAttr\": 7, \"StrAttr\": \"red\"}')",
                      i=made.name, p=photos["rocket"])
    assert sql(engine, "SELECT state FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("pending",)]
    run_queue(service)
    assert sql(engine, "SELECT state, attempts FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("done", 1)]
    iid = instance_id(engine, made.name)
    by_api, by_sql = stored(engine, iid, "api", "a.png"), stored(engine, iid, "sql", "a.png")
    np.testing.assert_allclose(by_sql.embedding, by_api.embedding, atol=1e-6)
    assert (by_sql.category_id, by_sql.region) == (by_api.category_id, by_api.region)
    assert (by_sql.int_attr, by_sql.str_attr) == (7, "red")
    # searchable at once, from SQL and from the service
    rows = sql(engine, "SELECT product_id, score FROM imagesearch.search_by_picture(:i, 'api', 'a.png', 2)", i=made.name)
    assert {r[0] for r in rows} == {"api", "sql"} and rows[1][1] > 0.999
    # the picture's bytes are not kept once done
    assert sql(engine, "SELECT picture IS NULL FROM imagesearch.picture_queue WHERE id = :q", q=queued) == [(True,)]


def test_a_bad_picture_lands_in_the_errors_view_with_the_apis_code(service, engine, make_instance):
    made = make_instance()
    bad = b"\x89PNG\r\n\x1a\n this is not a picture"
    with pytest.raises(ImageSearchError) as api:
        service.add_image(made.name, "p", "bad.png", bad)
    [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'bad.png', :p)", i=made.name, p=bad)
    run_queue(service)
    [(code, message)] = sql(engine, "SELECT code, message FROM imagesearch.queue_errors WHERE id = :q", q=queued)
    assert (code, message) == (api.value.code, api.value.message)
    assert service.describe_instance(made.name).picture_count == 0
    # retried, it fails again the same way; retry_failed counts what it sent back
    assert sql(engine, "SELECT imagesearch.retry_failed(:i)", i=made.name) == [(1,)]
    assert sql(engine, "SELECT state FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("pending",)]
    run_queue(service)
    assert sql(engine, "SELECT code FROM imagesearch.queue_errors WHERE id = :q", q=queued) == [(api.value.code,)]


def test_items_apply_in_order_and_deletes_delete(service, engine, make_instance, photos):
    made = make_instance()
    sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p), imagesearch.add_image(:i, 'p', 'b', :q),"
                " imagesearch.delete_image(:i, 'p', 'a'), imagesearch.add_image(:i, 'r', 'c', :p)",
        i=made.name, p=photos["coffee"], q=photos["chelsea"])
    run_queue(service)
    assert states(engine, made.name) == {"done": 4}
    keys = sql(engine, "SELECT product_id, pic_name FROM imagesearch.picture_list WHERE instance = :i ORDER BY 1, 2",
               i=made.name)
    assert keys == [("p", "b"), ("r", "c")]
    sql(engine, "SELECT imagesearch.delete_image(:i, 'p')", i=made.name)  # the whole product
    run_queue(service)
    assert service.describe_instance(made.name).picture_count == 1


def test_a_full_instance_fails_the_item_it_has_no_room_for(service, engine, make_instance, photos):
    made = make_instance(capacity=1)
    sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p), imagesearch.add_image(:i, 'p', 'b', :p)",
        i=made.name, p=photos["coffee"])
    run_queue(service)
    [(pic_name, code)] = sql(engine, "SELECT pic_name, code FROM imagesearch.queue_errors WHERE instance = :i", i=made.name)
    assert (pic_name, code) == ("b", "InstanceStatusError")


# ---- refusals at enqueue time, and the worker's own checks agree with them -------------------------------

BAD_ATTRIBUTES = [
    '[]', '"x"', '5', '{"Price": 5}', '{"intattr": 5}', '{"IntAttr": "5"}', '{"IntAttr": 5.5}', '{"IntAttr": 5.0}',
    '{"IntAttr": 2147483648}', '{"IntAttr2": -2147483649}', '{"IntAttr": true}', '{"StrAttr": 5}',
    '{"StrAttr": "' + "x" * 129 + '"}', '{"CustomContent": "' + "y" * 4097 + '"}', '{"Crop": "yes"}',
    '{"Crop": 1}', '{"Region": 5}', '{"CategoryId": 12345}', '{"CategoryId": "3"}', '{"CategoryId": 3.0}',
    '{"CategoryId": true}', '{"Zeta": 1, "Alpha": 2}', '{"StrAttr": null, "Bad": 1}',
]


@pytest.mark.parametrize("attributes", BAD_ATTRIBUTES)
def test_bad_attributes_are_refused_at_once_as_the_worker_would(engine, make_instance, photos, attributes):
    made = make_instance("product")
    with pytest.raises(ImageSearchError) as worker:
        queued_add("product", json.loads(attributes))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text("SELECT imagesearch.add_image(:i, 'p', 'a', :p, CAST(:a AS jsonb))"),
                     {"i": made.name, "p": photos["coffee"], "a": attributes})
    diag = caught.value.orig.diag
    assert (diag.message_detail, diag.message_primary) == (worker.value.code, worker.value.message)
    assert sql(engine, "SELECT count(*) FROM imagesearch.queue_status WHERE instance = :i", i=made.name) == [(0,)]


@pytest.mark.parametrize("attributes, read", [
    ('{}', QueuedAdd(Attributes(), None, True, None)),
    ('{"IntAttr": 5, "StrAttr": "a", "Crop": false, "Region": "0,10,0,10"}',
     QueuedAdd(Attributes(int_attr=5, str_attr="a"), None, False, "0,10,0,10")),
    ('{"CategoryId": 3, "CustomContent": "", "IntAttr4": null}', QueuedAdd(Attributes(custom_content=""), 3, True, None)),
])
def test_good_attributes_pass_both(service, engine, make_instance, photos, attributes, read):
    """The worker's check reads them as given, the SQL function queues them, and the worker stores them."""
    made = make_instance("product")
    assert queued_add("product", json.loads(attributes)) == read
    [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p, CAST(:a AS jsonb))",
                      i=made.name, p=photos["coffee"], a=attributes)
    assert sql(engine, "SELECT operation, state, attributes FROM imagesearch.picture_queue WHERE id = :q", q=queued) == \
        [("add", "pending", json.loads(attributes))]
    run_queue(service)
    assert sql(engine, "SELECT state FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("done",)]
    row = stored(engine, instance_id(engine, made.name), "p", "a")
    assert {name: getattr(row, name) for name in read.attributes.as_dict()} == read.attributes.as_dict()
    if read.category_id is not None:
        assert row.category_id == read.category_id


@pytest.mark.parametrize("call, code", [
    ("imagesearch.add_image(:i, '', 'a', :p)", "MissingParameter"),
    ("imagesearch.add_image(:i, 'p', NULL, :p)", "MissingParameter"),
    ("imagesearch.add_image(:i, repeat('p', 513), 'a', :p)", "InvalidParameter"),
    ("imagesearch.add_image(:i, 'p', 'a', NULL)", "MissingParameter"),
    ("imagesearch.add_image(:i, 'p', 'a', ''::bytea)", "MissingParameter"),
    ("imagesearch.add_image(:i, 'p', 'a', decode(repeat('00', 4 * 1024 * 1024 + 1), 'hex'))", "InvalidImageSize"),
    ("imagesearch.add_image('no-such', 'p', 'a', :p)", "InvalidInstance"),
    ("imagesearch.add_image('bad name', 'p', 'a', :p)", "InvalidInstance"),
    ("imagesearch.add_image(NULL, 'p', 'a', :p)", "MissingParameter"),
    ("imagesearch.delete_image(:i, '')", "MissingParameter"),
    ("imagesearch.delete_image(:i, 'p', '')", "InvalidParameter"),
    ("imagesearch.add_image_from_storage(:i, 'p', 'a', '', 'x.png')", "MissingParameter"),
    ("imagesearch.retry_failed('no-such')", "InvalidInstance"),
])
def test_bad_calls_are_refused_and_queue_nothing(engine, make_instance, photos, call, code):
    made = make_instance()
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text(f"SELECT {call}"), {"i": made.name, "p": photos["coffee"]})
    assert caught.value.orig.diag.message_detail == code
    assert sql(engine, "SELECT count(*) FROM imagesearch.queue_status WHERE instance = :i", i=made.name) == [(0,)]


def test_a_picture_from_a_storage_location_refuses_paths_out_of_it(service, engine, make_instance, photos, tmp_path):
    made = make_instance()
    (tmp_path / "shoes").mkdir()
    (tmp_path / "shoes" / "a.png").write_bytes(photos["chelsea"])
    (tmp_path.parent / "outside.png").write_bytes(photos["chelsea"])
    name = f"loc-{made.name}"
    service.storage.add(name, str(tmp_path))
    try:
        ids = [sql(engine, "SELECT imagesearch.add_image_from_storage(:i, 'p', :n, :l, :path)",
                   i=made.name, n=path, l=name, path=path)[0][0] for path in ("shoes/a.png", "../outside.png", "/etc/passwd")]
        run_queue(service)
        states = dict(sql(engine, "SELECT pic_name, state FROM imagesearch.queue_status WHERE instance = :i", i=made.name))
        assert states == {"shoes/a.png": "done", "../outside.png": "failed", "/etc/passwd": "failed"}
        codes = {r[0] for r in sql(engine, "SELECT code FROM imagesearch.queue_errors WHERE id = ANY(:ids)", ids=ids)}
        assert codes == {"InvalidParameter"}
    finally:
        service.storage.remove(name)


# ---- synced tables -------------------------------------------------------------------------------------

@pytest.fixture
def products(engine):
    """A table of the user's own, in a schema of theirs; its name is this test's alone."""
    table = f"shop.products_{uuid.uuid4().hex[:12]}"
    sql(engine, "CREATE SCHEMA IF NOT EXISTS shop")
    sql(engine, f"CREATE TABLE {table} (id integer PRIMARY KEY, title text, price_cents integer, brand text,"
                " photo bytea)")
    yield table
    sql(engine, f"DROP TABLE {table}")


def test_a_synced_table_follows_inserts_updates_and_deletes(service, engine, make_instance, photos, products):
    made = make_instance()
    sql(engine, f"INSERT INTO {products} VALUES (1, 'cup', 450, 'acme', :p), (2, 'no photo yet', 100, 'acme', NULL)",
        p=photos["coffee"])
    [(queued,)] = sql(engine, "SELECT imagesearch.sync_table(:i, CAST(:t AS regclass), ARRAY['id'], 'photo',"
                              " '{\"IntAttr\": \"price_cents\", \"StrAttr\": \"brand\"}')", i=made.name, t=products)
    assert queued == 1  # the row with a picture
    run_queue(service)
    iid = instance_id(engine, made.name)
    first = stored(engine, iid, "1", "photo")
    assert (first.int_attr, first.str_attr) == (450, "acme")

    sql(engine, f"INSERT INTO {products} VALUES (3, 'rocket', 999, 'nasa', :p)", p=photos["rocket"])
    sql(engine, f"UPDATE {products} SET photo = :p WHERE id = 2", p=photos["chelsea"])  # gets a picture
    run_queue(service)
    assert stored(engine, iid, "3", "photo").int_attr == 999 and stored(engine, iid, "2", "photo") is not None

    # an attribute-only update changes the attributes, not the vectors; a NULL clears one
    sql(engine, f"UPDATE {products} SET price_cents = 500, brand = NULL WHERE id = 1")
    assert sql(engine, "SELECT operation FROM imagesearch.queue_status WHERE instance = :i AND state = 'pending'",
               i=made.name) == [("update",)]
    run_queue(service)
    updated = stored(engine, iid, "1", "photo")
    assert (updated.int_attr, updated.str_attr) == (500, None)
    # the same float32 values (read as numpy or as Python floats, depending on the pooled connection)
    np.testing.assert_array_equal(np.float32(updated.embedding), np.float32(first.embedding))

    # a new picture is embedded again; a change of nothing synced queues nothing
    sql(engine, f"UPDATE {products} SET photo = :p WHERE id = 1", p=photos["rocket"])
    sql(engine, f"UPDATE {products} SET title = 'mug' WHERE id = 1")
    assert states(engine, made.name).get("pending") == 1
    run_queue(service)
    assert np.dot(stored(engine, iid, "1", "photo").embedding, stored(engine, iid, "3", "photo").embedding) > 0.999

    # a deleted row, or one whose picture goes, loses its picture; a changed key moves it
    sql(engine, f"DELETE FROM {products} WHERE id = 3")
    sql(engine, f"UPDATE {products} SET photo = NULL WHERE id = 2")
    sql(engine, f"UPDATE {products} SET id = 10 WHERE id = 1")
    run_queue(service)
    keys = sql(engine, "SELECT product_id FROM imagesearch.picture_list WHERE instance = :i", i=made.name)
    assert keys == [("10",)]

    # a bad picture fails its item, never the user's statement
    sql(engine, f"INSERT INTO {products} VALUES (4, 'broken', 1, 'x', '\\x0102'::bytea)")
    run_queue(service)
    assert sql(engine, "SELECT product_id, code FROM imagesearch.queue_errors WHERE instance = :i", i=made.name) == \
        [("4", "InvalidImage")]

    sql(engine, "SELECT imagesearch.unsync_table(:i, CAST(:t AS regclass))", i=made.name, t=products)
    sql(engine, f"INSERT INTO {products} VALUES (5, 'after', 1, 'x', :p)", p=photos["coffee"])
    assert sql(engine, "SELECT count(*) FROM imagesearch.queue_status WHERE instance = :i AND state = 'pending'",
               i=made.name) == [(0,)]


@pytest.mark.parametrize("arguments, fragment", [
    ("ARRAY['nope'], 'photo'", "has no column 'nope'"),
    ("ARRAY['id'], 'title'", "the picture column 'title' is text"),
    ("ARRAY[]::text[], 'photo'", "key_columns must name"),
    ("ARRAY['id', 'title', 'brand'], 'photo'", "1 or 2 columns"),
    ("ARRAY['id'], 'photo', '{\"Price\": \"price_cents\"}'", "unknown attribute 'Price'"),
    ("ARRAY['id'], 'photo', '{\"IntAttr\": 5}'", "attribute_columns must be"),
    ("ARRAY['id'], 'photo', '{}', 'no-such-location'", "no storage location"),
])
def test_sync_table_refuses_what_it_cannot_follow(engine, make_instance, products, arguments, fragment):
    made = make_instance()
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text(f"SELECT imagesearch.sync_table(:i, CAST(:t AS regclass), {arguments})"),
                     {"i": made.name, "t": products})
    assert fragment in caught.value.orig.diag.message_primary
    assert sql(engine, "SELECT count(*) FROM imagesearch.synced_tables WHERE instance = :i", i=made.name) == [(0,)]
    assert sql(engine, "SELECT count(*) FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass)", t=products) == [(0,)]


def test_a_synced_insert_is_taken_up_on_its_notify_by_a_running_worker(service, engine, make_instance, photos,
                                                                       products):
    made = make_instance()
    sql(engine, "SELECT imagesearch.sync_table(:i, CAST(:t AS regclass), ARRAY['id'], 'photo')", i=made.name, t=products)
    stop = threading.Event()
    worker = Worker(service, poll_seconds=3600.0)  # its poll never comes during the test: only a NOTIFY wakes it
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.listening.wait(60), "the worker never listened"
        sql(engine, f"INSERT INTO {products} (id, photo) VALUES (7, :p)", p=photos["rocket"])
        deadline = time.monotonic() + 120  # only against a hang: the poll is an hour away
        while states(engine, made.name) != {"done": 1}:
            assert time.monotonic() < deadline and thread.is_alive(), states(engine, made.name)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert sql(engine, "SELECT product_id FROM imagesearch.search_by_picture(:i, '7', 'photo', 1)", i=made.name) == [("7",)]


def test_a_worker_killed_mid_batch_leaves_its_items_pending(service, engine, make_instance, photos, monkeypatch):
    """The batch's writes and its items' outcomes commit together: a failure before the commit leaves both
    undone, the items pending with one attempt counted."""
    made = make_instance()
    sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p)", i=made.name, p=photos["coffee"])
    from imagesearch_pg.store import picture_queue as queue_store

    def crash(conn, outcomes):
        raise RuntimeError("killed")

    monkeypatch.setattr(queue_store, "finish", crash)
    with pytest.raises(RuntimeError):
        process_pending(service)
    monkeypatch.undo()
    assert sql(engine, "SELECT state, attempts FROM imagesearch.queue_status WHERE instance = :i", i=made.name) == \
        [("pending", 1)]
    assert service.describe_instance(made.name).picture_count == 0
    run_queue(service)
    assert service.describe_instance(made.name).picture_count == 1


def test_the_claim_keeps_one_instance_to_one_worker(service, engine, make_instance, photos):
    from imagesearch_pg.store import picture_queue as queue_store

    made = make_instance()
    [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p)", i=made.name, p=photos["coffee"])
    with queue_store.claimed_instance(engine) as held:
        assert held == instance_id(engine, made.name)
        with queue_store.claimed_instance(engine) as other:
            assert other != held
        run_queue(service)  # another worker: whatever else is pending, never the instance held
        assert sql(engine, "SELECT state, attempts FROM imagesearch.queue_status WHERE id = :q", q=queued) == \
            [("pending", 0)]
    with queue_store.claimed_instance(engine) as again:
        assert again == held
    run_queue(service)
    assert sql(engine, "SELECT state, attempts FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("done", 1)]


@pytest.mark.parametrize("granted", [(), ("imagesearch_reader",), ("imagesearch_writer",)],
                         ids=["no-grant", "reader", "writer"])
def test_no_other_role_can_hold_up_an_instances_queue(service, engine, logins, make_instance, photos, granted):
    """The keys the worker and the upgrade took as advisory locks, held by a LOGIN role, change nothing;
    the rows the worker claims cannot be locked by anyone else."""
    made = make_instance()
    stranger = logins.make("stranger", *granted)
    with stranger.engine.connect() as holding:
        holding.execute(sa.text("SELECT pg_advisory_xact_lock(6766, :i), pg_advisory_xact_lock(:upgrade)"),
                        {"i": instance_id(engine, made.name), "upgrade": 0x1A6E5EA2C4})
        for locking in ("SELECT instance_id FROM imagesearch.picture_queue_claims FOR UPDATE",
                        "SELECT instance_id FROM imagesearch.picture_queue_claims FOR KEY SHARE",
                        "LOCK TABLE imagesearch.picture_queue_claims IN ACCESS EXCLUSIVE MODE"):
            assert isinstance(stranger.refused(locking).orig, psycopg.errors.InsufficientPrivilege)
        [(queued,)] = sql(engine, "SELECT imagesearch.add_image(:i, 'p', 'a', :p)", i=made.name, p=photos["coffee"])
        run_queue(service)
        assert sql(engine, "SELECT state FROM imagesearch.queue_status WHERE id = :q", q=queued) == [("done",)]


def test_psycopg_gets_the_code_in_the_detail(engine, make_instance):
    made = make_instance()
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            conn.execute("SELECT imagesearch.delete_image(%s, %s, %s)", (made.name, "p", ""))
    assert caught.value.diag.message_detail == "InvalidParameter"


def test_names_that_need_quoting_stay_names(service, engine, make_instance, photos):
    """Table and column names are only ever quoted identifiers in the SQL the sync builds."""
    made = make_instance()
    schema = f'"sh""op; --{uuid.uuid4().hex[:12]}"'
    sql(engine, f"CREATE SCHEMA {schema}")
    try:
        table = f'{schema}."ta ble"'
        sql(engine, f'CREATE TABLE {table} ("id; DROP TABLE x" text PRIMARY KEY, "pho""to" bytea, "price)" integer)')
        sql(engine, "SELECT imagesearch.sync_table(:i, :t, ARRAY['id; DROP TABLE x'], 'pho\"to', :a)",
            i=made.name, t=table, a=json.dumps({"IntAttr": "price)"}))
        sql(engine, f"INSERT INTO {table} VALUES ('k''1', :p, 5)", p=photos["coffee"])
        run_queue(service)
        assert sql(engine, "SELECT product_id, pic_name, int_attr FROM imagesearch.picture_list WHERE instance = :i",
                   i=made.name) == [("k'1", 'pho"to', 5)]
    finally:
        sql(engine, f"DROP SCHEMA {schema} CASCADE")


def test_deleting_a_synced_instance_leaves_the_users_table_writable(service, engine, photos, products):
    made = service.create_instance(f"t{os.getpid()}-deleted-{uuid.uuid4().hex[:8]}", "generic")
    sql(engine, "SELECT imagesearch.sync_table(:i, CAST(:t AS regclass), ARRAY['id'], 'photo')", i=made.name, t=products)
    service.delete_instance(made.name)
    warnings = []
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: warnings.append(notice.message_primary))
        conn.execute(f"INSERT INTO {products} (id, photo) VALUES (1, %s)", (photos["coffee"],))
        assert conn.execute(f"SELECT id FROM {products}").fetchall() == [(1,)]
        conn.execute(f"DELETE FROM {products}")
        assert conn.execute(f"SELECT count(*) FROM {products}").fetchone() == (0,)
    # each write says why it syncs nothing, and how to remove the trigger
    assert len(warnings) == 2 and all("is no longer synced" in w and "DROP TRIGGER" in w for w in warnings), warnings
    assert sql(engine, "SELECT count(*) FROM imagesearch.synced_tables WHERE source = CAST(:t AS regclass)",
               t=products) == [(0,)]
