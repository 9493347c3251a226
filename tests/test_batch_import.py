"""Batch import (IncreaseInstance) from a local folder, run by a real worker on the real database and models:
every line kind, every reason a line fails, the task's own failures, file order, AddImage's equivalence,
resubmission, and the worker's wake-up on NOTIFY."""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.errors import InvalidInstance, InvalidParameter
from imagesearch_pg.store.tables import partition
from imagesearch_pg.tasks.worker import Worker
from tests.batch_folders import errors, picture, run_to_end, write_folder
from tests.pictures import encode, noise

_locations = itertools.count()


@pytest.fixture
def local(service, tmp_path):
    """A storage location over a fresh folder: (its name, the folder)."""
    name = f"batch-{os.getpid()}-{next(_locations)}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def stored(engine, service, instance_name: str) -> dict[tuple[str, str], dict]:
    """Every stored picture of the instance, by key, without timestamps."""
    instance = service.instances.current(instance_name)
    part = partition(instance.id)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(part).order_by(part.c.product_id, part.c.pic_name)).mappings().all()
    return {(row["product_id"], row["pic_name"]): {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
            for row in rows}


def count(service, name: str) -> int:
    return service.describe_instance(name).picture_count


def test_every_line_kind_applies_in_file_order(service, make_instance, local, engine):
    name = make_instance("product").name
    location, root = local
    pictures = {f"p{i}.jpg": picture(i) for i in range(6)}
    path = write_folder(root, [
        {"OperationType": "ADD", "ProductId": "a", "PicName": "p0.jpg", "CategoryId": 3, "IntAttr": -5,
         "IntAttr4": "12", "StrAttr": "red", "StrAttr3": "x", "CustomContent": "k1:v1,k2:v2", "Region": "10,150,10,150"},
        {"OperationType": "ADD", "ProductId": "a", "PicName": "p1.jpg", "Crop": False},
        {"OperationType": "ADD", "ProductId": "b", "PicName": "p2.jpg", "Crop": "false"},
        {"OperationType": "ADD", "ProductId": "b", "PicName": "p3.jpg"},
        "",  # a blank line is no operation
        {"OperationType": "DELETE", "ProductId": "b", "PicName": "p3.jpg"},
        {"OperationType": "ADD", "ProductId": "c", "PicName": "p4.jpg"},
        {"OperationType": "DELETE", "ProductId": "c"},  # every picture of the product
        {"OperationType": "ADD", "ProductId": "d", "PicName": "p5.jpg", "IntAttr": 1},
        {"OperationType": "ADD", "ProductId": "d", "PicName": "p5.jpg", "IntAttr": 2},  # the later one wins
        {"OperationType": "DELETE", "ProductId": "nobody"},  # deleting nothing is no error
    ], pictures)
    task = run_to_end(service, service.tasks.submit_import(name, location, path))
    assert (task.state, task.error_code) == ("succeeded", None)
    assert errors(service, task) == []
    rows = stored(engine, service, name)
    assert set(rows) == {("a", "p0.jpg"), ("a", "p1.jpg"), ("b", "p2.jpg"), ("d", "p5.jpg")}
    first = rows[("a", "p0.jpg")]
    assert (first["category_id"], first["category_given"], first["region"]) == (3, True, "10,150,10,150")
    assert (first["int_attr"], first["int_attr4"], first["str_attr"], first["str_attr3"], first["custom_content"]) == (
        -5, 12, "red", "x", "k1:v1,k2:v2")
    assert rows[("a", "p1.jpg")]["region"] == "0,160,0,160"  # Crop false: the whole picture
    assert rows[("d", "p5.jpg")]["int_attr"] == 2
    assert count(service, name) == 4
    progress = task.progress
    assert (progress["total"], progress["done"], progress["failed"]) == (11, 11, 0)
    assert (progress["added"], progress["deleted"]) == (6, 2)
    assert progress["pictures_per_second"] > 0
    assert set(progress["seconds"]) == {"read", "decode_detect", "encode", "write"}


def test_a_batch_picture_is_stored_as_add_image_stores_it(service, make_instance, local, engine):
    name = make_instance("product").name
    location, root = local
    photo = encode(noise(300, 240, 7), "JPEG", quality=90)
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": "x", "PicName": "batch.jpg", "StrAttr": "s"}],
                        {"batch.jpg": photo})
    run_to_end(service, service.tasks.submit_import(name, location, path))
    service.add_image(name, "x", "single.jpg", photo, attributes=Attributes(str_attr="s"))
    rows = stored(engine, service, name)
    batch, single = rows[("x", "batch.jpg")], rows[("x", "single.jpg")]
    for column in ("category_id", "category_given", "region", "str_attr", "int_attr"):
        assert batch[column] == single[column], column
    assert np.allclose(np.asarray(batch["embedding"]), np.asarray(single["embedding"]), atol=1e-5)


BAD_LINES = [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "Colour": 1}', "unknown field 'Colour'"),
    ('{"OperationType": "ADD", "ProductId": "p", "ProductId": "q", "PicName": "ok.jpg"}', "given twice"),
    ('{"OperationType": "ADD", "PicName": "ok.jpg"}', "ProductId is required"),
    ('{"OperationType": "ADD", "ProductId": "p"}', "PicName is required"),
    ('{"OperationType": "UPSERT", "ProductId": "p", "PicName": "ok.jpg"}', "ADD or DELETE"),
    ('{"ProductId": "p", "PicName": "ok.jpg"}', "ADD or DELETE"),
    ('{"OperationType": "ADD", "ProductId": 7, "PicName": "ok.jpg"}', "ProductId must be a string"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "IntAttr": 1.5}', "IntAttr must be an integer"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "IntAttr": true}', "IntAttr must be an integer"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "IntAttr2": 2147483648}', "32-bit"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "Crop": "yes"}', "Crop must be true or false"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "StrAttr": "' + "s" * 129 + '"}', "StrAttr"),
    ('{"OperationType": "ADD", "ProductId": "' + "p" * 513 + '", "PicName": "ok.jpg"}', "ProductId must be 1-512"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "CustomContent": "' + "c" * 4097 + '"}',
     "CustomContent"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "CategoryId": 12345}', "not a category"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "Region": "1,2,3"}', "Region"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "Region": "0,500,0,500"}', "Region"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "missing.jpg"}', "no picture 'missing.jpg' in /batch"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "text.jpg"}', "text.jpg"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "tiny.png"}', "100-4096"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "huge.bmp"}', "4 MB"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "../outside.jpg"}', ".."),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "/etc/passwd"}', "PicName"),
    ('{"OperationType": "DELETE", "ProductId": "p", "PicName": "ok.jpg", "IntAttr": 1}', "DELETE takes"),
    ('{"OperationType": "DELETE", "ProductId": ""}', "ProductId"),
    (b'{"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg", "CustomContent": "' + b"c" * 70000 + b'"}',
     "over 64 KB"),
    (b"[" * 60000, "nests too deep"),
    ('{"OperationType": "ADD", "ProductId": "p\\ud800", "PicName": "ok.jpg"}', "unpaired surrogate"),
    (b'{"OperationType": "DELETE", "ProductId": "p\x00"}', "not JSON"),
    ('{"OperationType": "ADD", "ProductId": "p\\u0000", "PicName": "ok.jpg"}', "NUL"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "fifo"}', "not a regular file"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "loop.jpg"}', "symbolic links"),
    ('{"OperationType": "ADD", "ProductId": "p", "PicName": "sub"}', "not a regular file"),
]


def test_each_bad_line_is_reported_and_the_task_goes_on(service, make_instance, local, engine, tmp_path):
    name = make_instance("product").name
    location, root = local
    (tmp_path.parent / "outside.jpg").write_bytes(picture(1))
    pictures = {"ok.jpg": picture(0), "text.jpg": b"this is not a picture", "tiny.png": encode(noise(60, 60, 2)),
                "huge.bmp": encode(noise(1300, 1300, 3), "BMP")}
    good = {"OperationType": "ADD", "ProductId": "p", "PicName": "ok.jpg"}
    path = write_folder(root, [line for line, _ in BAD_LINES] + [good], pictures)
    folder = root / path.lstrip("/")
    os.mkfifo(folder / "fifo")  # opening it would wait for a writer forever
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "sub").mkdir()
    task = run_to_end(service, service.tasks.submit_import(name, location, path))
    assert task.state == "partially_failed" and task.error_code == "LinesFailed"
    assert f"{len(BAD_LINES)} of {len(BAD_LINES) + 1} lines failed" in task.error_message
    report = errors(service, task)
    assert [entry["line"] for entry in report] == list(range(1, len(BAD_LINES) + 1))
    for entry, (line, expected) in zip(report, BAD_LINES):
        assert expected in entry["reason"], (line[:80], entry["reason"])
        if isinstance(line, str):
            assert entry["content"] == line[:2048] + ("..." if len(line) > 2048 else "")
    assert "\x00" not in report[-5]["content"] and "\ufffd" in report[-5]["content"]  # the raw NUL line
    assert set(stored(engine, service, name)) == {("p", "ok.jpg")}  # only the good line is applied
    assert count(service, name) == 1


def test_lines_past_the_capacity_fail_and_replacements_still_apply(service, make_instance, local, engine):
    name = make_instance("generic", capacity=2).name
    location, root = local
    pictures = {f"p{i}.jpg": picture(i) for i in range(4)}
    path = write_folder(root, [
        {"OperationType": "ADD", "ProductId": "a", "PicName": "p0.jpg"},
        {"OperationType": "ADD", "ProductId": "b", "PicName": "p1.jpg"},
        {"OperationType": "ADD", "ProductId": "c", "PicName": "p2.jpg"},  # full
        {"OperationType": "ADD", "ProductId": "a", "PicName": "p0.jpg", "IntAttr": 9},  # a replacement: room needed none
        {"OperationType": "DELETE", "ProductId": "b"},
        {"OperationType": "ADD", "ProductId": "d", "PicName": "p3.jpg"},  # room again after the delete
    ], pictures)
    task = run_to_end(service, service.tasks.submit_import(name, location, path))
    assert task.state == "partially_failed"
    assert [(e["line"], "capacity" in e["reason"]) for e in errors(service, task)] == [(3, True)]
    rows = stored(engine, service, name)
    assert set(rows) == {("a", "p0.jpg"), ("d", "p3.jpg")} and rows[("a", "p0.jpg")]["int_attr"] == 9
    assert count(service, name) == 2


def test_a_task_fails_whole_with_a_plain_reason(service, instance, local):
    location, root = local
    (root / "empty").mkdir()
    task = run_to_end(service, service.tasks.submit_import(instance.name, location, "/empty"))
    assert (task.state, task.error_code) == ("failed", "NoIncrementMeta")
    assert task.error_message == f"no increment.meta file in /empty of location {location!r}"
    if os.geteuid() != 0:  # root reads any file
        path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}], {})
        (root / path.lstrip("/") / "increment.meta").chmod(0)
        task = run_to_end(service, service.tasks.submit_import(instance.name, location, path))
        assert task.state == "failed" and "permission denied" in task.error_message


def test_a_submission_is_refused_before_anything_is_queued(service, instance, local, engine):
    location, root = local
    before = service.tasks.list_imports(instance.name)[0]
    refused = [
        (dict(location="no-such-location", path="/"), "unknown storage location"),
        (dict(location=location, path="/../etc"), ".."),
        (dict(location=location, path="relative"), "/"),
        (dict(location=location, path="/", callback_address="ftp://example.com/"), "http"),
        (dict(location=location, path="/", callback_address="http://127.0.0.1:9/"), "loopback"),
    ]
    for options, expected in refused:
        with pytest.raises(InvalidParameter, match=expected):
            service.tasks.submit_import(instance.name, **options)
    with pytest.raises(InvalidInstance):
        service.tasks.submit_import("no-such-instance", location, "/")
    # another tenant's location: to this instance, no location at all
    service.storage.add(f"{location}-theirs", str(root), instances=["someone-else"])
    try:
        with pytest.raises(InvalidParameter, match="unknown storage location"):
            service.tasks.submit_import(instance.name, f"{location}-theirs", "/")
    finally:
        service.storage.remove(f"{location}-theirs")
    assert service.tasks.list_imports(instance.name)[0] == before


def test_a_finished_task_can_be_resubmitted(service, instance, local, engine):
    location, root = local
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": "a", "PicName": "p.jpg"}], {})
    first = run_to_end(service, service.tasks.submit_import(instance.name, location, path))
    assert first.state == "partially_failed"
    (root / path.lstrip("/") / "p.jpg").write_bytes(picture(5))  # the missing picture is there now
    again = service.tasks.resubmit(first.id)
    assert again.id != first.id and again.state == "queued" and again.params == first.params
    assert run_to_end(service, again).state == "succeeded"
    assert count(service, instance.name) == 1
    with pytest.raises(InvalidParameter, match="no task"):
        service.tasks.resubmit(10**12)


def test_a_submitted_task_is_started_on_its_notify(service, instance, local):
    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}], {})
    stop = threading.Event()
    worker = Worker(service, poll_seconds=3600.0)  # its poll never comes during the test: only a NOTIFY wakes it
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.listening.wait(60), "the worker never listened"
        task = service.tasks.submit_import(instance.name, location, path)
        deadline = time.monotonic() + 120  # only against a hang: the poll is an hour away
        while (seen := service.tasks.get(task.id)).finished_at is None:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.05)
        assert (seen.state, seen.attempts) == ("succeeded", 1)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_task_whose_file_changed_since_its_checkpoint_fails_rather_than_resume_elsewhere(service, instance, local,
                                                                                            engine):
    from imagesearch_pg.store.tables import tasks as task_table

    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}] * 3, {})
    task = service.tasks.submit_import(instance.name, location, path)
    size = (root / path.lstrip("/") / "increment.meta").stat().st_size
    with engine.begin() as conn:  # as if a worker had applied line 1 of a shorter file, then died
        conn.execute(sa.update(task_table).where(task_table.c.id == task.id)
                     .values(checkpoint={"line": 1, "offset": 10, "size": size - 1}))
    ended = run_to_end(service, task)
    assert (ended.state, ended.error_code) == ("failed", "IncrementMetaChanged")
    assert "changed while the task ran" in ended.error_message


def _has_vector_index(engine, service, name: str) -> bool:
    instance = service.instances.current(name)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_indexes WHERE schemaname = 'imagesearch' "
                                    "AND indexname = :name"), {"name": f"pictures_{instance.id}_embedding_hnsw"}
                            ).scalar_one() == 1


def test_a_large_batch_builds_the_vector_index_once_at_the_end(service, make_instance, local, engine, monkeypatch):
    from imagesearch_pg.tasks import batch_import

    monkeypatch.setattr(batch_import, "DEFERRED_INDEX_LINES", 10)  # a small folder counts as large here
    name = make_instance("generic").name
    location, root = local
    pictures = {f"p{i}.jpg": picture(i) for i in range(12)}
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"p{i}.jpg"}
                               for i in range(12)], pictures)
    task = run_to_end(service, service.tasks.submit_import(name, location, path))
    assert task.state == "succeeded" and task.checkpoint["deferred_index"] is True
    assert _has_vector_index(engine, service, name)
    found = service.search_by_picture(name, pictures["p7.jpg"], num=1)
    assert found.matches[0].product_id == "p7"
    # Into an instance already holding more than half as many pictures, rows go into the index as they come.
    again = run_to_end(service, service.tasks.submit_import(name, location, path))
    assert again.state == "succeeded" and again.checkpoint["deferred_index"] is False


def test_a_deferred_index_is_built_by_the_run_that_resumes_or_abandons_the_task(service, make_instance, local, engine):
    from imagesearch_pg.store import pictures as picture_store
    from imagesearch_pg.store.tables import tasks as task_table

    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}] * 3, {})
    size = (root / path.lstrip("/") / "increment.meta").stat().st_size
    for attempts, state in ((1, "succeeded"), (21, "failed")):
        name = make_instance("generic").name
        task = service.tasks.submit_import(name, location, path)
        instance = service.instances.current(name)
        with engine.begin() as conn:  # as if a run had dropped the index, checkpointed, and died
            picture_store.drop_vector_indexes(conn, instance.id, False)
            conn.execute(sa.update(task_table).where(task_table.c.id == task.id).values(
                attempts=attempts - 1, checkpoint={"line": 0, "offset": 0, "size": size, "deferred_index": True}))
        assert not _has_vector_index(engine, service, name)
        ended = run_to_end(service, task)
        assert ended.state == state and (state == "succeeded" or ended.error_code == "TooManyAttempts")
        assert _has_vector_index(engine, service, name)
