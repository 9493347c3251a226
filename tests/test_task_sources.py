"""Background tasks on their other sources and sinks: batch imports from a real S3-compatible server (moto)
equal to a local folder's, its failures (a missing file, a missing picture, the endpoint down mid-task),
callbacks sent by a full worker loop to a real receiver, and exports written to an S3 results location,
downloaded through their link, and expired (30 per instance, 30 days)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.service import ImageSearch, tasks
from imagesearch_pg.storage.filesystems import S3Credentials
from imagesearch_pg.store.tables import tasks as task_table
from tests import s3_server as moto
from tests.batch_folders import (
    app_server, errors, exported, picture, pictures_of, run_to_end, upload_folder, wait_for, worker_loop,
    write_folder,
)
from tests.test_callbacks import receiver  # noqa: F401  (a real HTTP receiver on loopback)

_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@pytest.fixture
def locations(service, monkeypatch):
    """add_s3(server, bucket, prefix) and add_local(folder): new locations, removed after the test."""
    made = []

    def add_s3(server, bucket: str, prefix: str = "") -> str:
        name = fresh("s3")
        moto.give_location(monkeypatch, name, server.credentials)
        service.storage.add(name, f"s3://{bucket}{prefix}", endpoint=server.endpoint, region="us-east-1")
        made.append(name)
        return name

    def add_local(folder) -> str:
        made.append(fresh("local"))
        service.storage.add(made[-1], str(folder))
        return made[-1]

    yield add_s3, add_local
    for name in made:
        service.storage.remove(name)


def set_lease(engine, task_id: int) -> None:
    """The task claimable now (as if its retry delay had passed)."""
    with engine.begin() as conn:
        conn.execute(sa.update(task_table).where(task_table.c.id == task_id).values(lease_expires_at=sa.func.now()))


def lease_left(engine, task_id: int) -> float:
    """Seconds until the task may be claimed again."""
    with engine.connect() as conn:
        return conn.execute(sa.select(task_table.c.lease_expires_at - sa.func.now())
                            .where(task_table.c.id == task_id)).scalar_one().total_seconds()


# ---- batch imports from S3 -------------------------------------------------------------------------------


def test_an_s3_batch_stores_what_the_same_local_folder_does(service, make_instance, locations, s3_server, engine,
                                                            tmp_path):
    add_s3, add_local = locations
    pictures = {"p0.jpg": picture(0), "sub/p1.jpg": picture(1, 200), "p2.jpg": picture(2), "p3.jpg": picture(3)}
    path = write_folder(tmp_path, [
        {"OperationType": "ADD", "ProductId": "a", "PicName": "p0.jpg", "CategoryId": 3, "IntAttr": -5,
         "StrAttr": "red", "CustomContent": "k:v", "Region": "10,150,10,150"},
        {"OperationType": "ADD", "ProductId": "a", "PicName": "sub/p1.jpg", "Crop": False, "IntAttr2": 7},
        {"OperationType": "ADD", "ProductId": "b", "PicName": "p2.jpg", "StrAttr4": "日本"},
        {"OperationType": "ADD", "ProductId": "c", "PicName": "p3.jpg"},
        {"OperationType": "DELETE", "ProductId": "c"},
    ], pictures)
    bucket = s3_server.bucket()
    upload_folder(s3_server, bucket, "prefix", tmp_path / path.lstrip("/"))
    s3_server.put(bucket, "elsewhere/increment.meta", b"{broken")  # outside the prefix: never read
    on_s3, local = make_instance("product").name, make_instance("product").name

    from_s3 = run_to_end(service, service.tasks.submit_import(on_s3, add_s3(s3_server, bucket, "/prefix"), "/"))
    from_disk = run_to_end(service, service.tasks.submit_import(local, add_local(tmp_path), path))

    assert (from_s3.state, from_s3.error_code) == (from_disk.state, from_disk.error_code) == ("succeeded", None)
    assert {k: from_s3.progress[k] for k in ("total", "done", "added", "deleted", "failed")} == {
        "total": 5, "done": 5, "added": 4, "deleted": 1, "failed": 0}
    got, expected = pictures_of(engine, service, on_s3), pictures_of(engine, service, local)
    assert set(got) == set(expected) == {("a", "p0.jpg"), ("a", "sub/p1.jpg"), ("b", "p2.jpg")}
    for key, row in expected.items():
        for column, value in row.items():
            if column == "embedding":
                assert np.allclose(np.asarray(got[key][column]), np.asarray(value), atol=1e-5), key
            else:
                assert got[key][column] == value, (key, column)
    assert got[("a", "p0.jpg")]["region"] == "10,150,10,150" and got[("a", "sub/p1.jpg")]["region"] == "0,200,0,200"
    assert service.describe_instance(on_s3).picture_count == 3


def test_s3_failures_of_a_task_and_of_a_line(service, instance, locations, s3_server):
    add_s3, _ = locations
    bucket = s3_server.bucket()
    s3_server.put(bucket, "empty/p.jpg", picture(1))
    s3_server.put(bucket, "half/present.jpg", picture(2))
    s3_server.put(bucket, "half/increment.meta",
                  b'{"OperationType": "ADD", "ProductId": "a", "PicName": "present.jpg"}\n'
                  b'{"OperationType": "ADD", "ProductId": "b", "PicName": "gone.jpg"}\n')
    no_meta = add_s3(s3_server, bucket, "/empty")
    task = run_to_end(service, service.tasks.submit_import(instance.name, no_meta, "/"))
    assert (task.state, task.error_code) == ("failed", "NoIncrementMeta")
    assert task.error_message == f"no increment.meta file in / of location {no_meta!r}"
    task = run_to_end(service, service.tasks.submit_import(instance.name, add_s3(s3_server, bucket), "/half"))
    assert (task.state, task.error_code) == ("partially_failed", "LinesFailed")
    [missing] = errors(service, task)
    assert missing["line"] == 2 and "'gone.jpg'" in missing["reason"]
    assert missing["content"] == '{"OperationType": "ADD", "ProductId": "b", "PicName": "gone.jpg"}'
    assert service.check_image_exists(instance.name, "a", "present.jpg") is not None


def _given_back(service, task_id: int):
    seen = service.tasks.get(task_id)
    return seen if seen.attempts >= 1 and seen.lease_owner is None else None


def test_an_endpoint_down_gives_the_task_back_for_a_later_retry(service, make_instance, locations, s3_server, engine,
                                                                tmp_path, monkeypatch):
    """A moto server of its own stopped while the task reads pictures: the task keeps its checkpoint and is
    claimed again after a delay (worker.Transient), not failed; back up, it ends from where it stopped."""
    add_s3, _ = locations
    name = make_instance("generic").name
    lines = [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"{i}.jpg", "Crop": False} for i in range(192)]
    path = write_folder(tmp_path, lines, {f"{i}.jpg": picture(i, 100) for i in range(192)})
    flaky = moto.start()
    try:
        bucket = flaky.bucket()
        upload_folder(flaky, bucket, "", tmp_path / path.lstrip("/"))
        location = add_s3(flaky, bucket)
        task = service.tasks.submit_import(name, location, "/")
        with worker_loop(service):
            wait_for(lambda: (service.tasks.get(task.id).checkpoint or {}).get("line", 0) >= 64, 120, "a checkpoint")
            flaky.stop()
            down = wait_for(lambda: _given_back(service, task.id), 60, "the task given back")
    finally:
        flaky.stop()
    assert (down.state, down.attempts, down.error_code, down.finished_at) == ("running", 1, None, None)
    assert 64 <= down.checkpoint["line"] < 192 and down.progress["done"] == down.checkpoint["line"]
    assert 2 < lease_left(engine, task.id) <= 10  # the retry waits 10 s after a first try, then any worker may claim it

    # Back up (the same bucket on the session's server, the location pointed at it), and the delay past:
    s3_server.client.create_bucket(Bucket=bucket)
    upload_folder(s3_server, bucket, "", tmp_path / path.lstrip("/"))
    service.storage.remove(location)
    service.storage.add(location, f"s3://{bucket}", endpoint=s3_server.endpoint, region="us-east-1")
    moto.give_location(monkeypatch, location, s3_server.credentials)  # each server issues keys of its own
    set_lease(engine, task.id)
    final = run_to_end(service, service.tasks.get(task.id))
    assert (final.state, final.progress["done"], final.progress["added"], final.progress["replaced"]) == (
        "succeeded", 192, 192, 0)  # resumed from its checkpoint: no line applied twice
    assert service.describe_instance(name).picture_count == 192 and errors(service, final) == []


def test_a_closed_endpoint_port_is_transient_too(service, instance, locations, engine):
    add_s3, _ = locations
    location = add_s3(SimpleNamespace(endpoint=f"http://127.0.0.1:{moto.free_port()}",
                                      credentials=S3Credentials("AKIAEXAMPLE", "unused")), "down-bucket")
    task = service.tasks.submit_import(instance.name, location, "/batch")
    with worker_loop(service, only=task.id):
        down = wait_for(lambda: _given_back(service, task.id), 60, "the task given back")
        assert (down.state, down.attempts, down.error_code, down.checkpoint) == ("running", 1, None, None)
        set_lease(engine, task.id)  # its retry due now: tried again, given back again, twice the delay
        again = wait_for(lambda: (seen := _given_back(service, task.id)) and seen.attempts == 2 and seen, 60,
                         "a second try")
    assert (again.state, again.finished_at) == ("running", None) and lease_left(engine, task.id) > 12


# ---- callbacks, sent by a full worker loop -----------------------------------------------------------------


@pytest.fixture
def loopback_service(database, encoders, settings, server):
    """A service whose callbacks may reach loopback, retried after 0.2 s, 3 attempts; links to ``server``."""
    made = ImageSearch(database, encoders, replace(
        settings, callback_allowed_networks=("127.0.0.0/8",), callback_retry_seconds=0.2, callback_attempts=3,
        public_url=f"http://{server}"))
    yield made
    made.pipeline.close()


def _settled(service, task_id: int):
    seen = service.tasks.get(task_id)
    return seen if seen.callback_state in ("delivered", "gave_up") else None


def test_callbacks_through_the_worker(loopback_service, make_instance, locations, receiver, tmp_path):  # noqa: F811
    service = loopback_service
    _, add_local = locations
    location, shop = add_local(tmp_path), make_instance("generic")
    path = write_folder(tmp_path, [{"OperationType": "ADD", "ProductId": "a", "PicName": "1.jpg"},
                                   {"OperationType": "ADD", "ProductId": "b", "PicName": "missing.jpg"}],
                        {"1.jpg": picture(1)})
    (tmp_path / "empty").mkdir()
    flaky, steady = receiver([500]), receiver()
    down = f"http://127.0.0.1:{moto.free_port()}/hook"  # nothing listens there
    partly = service.tasks.submit_import(shop.name, location, path, flaky.url())
    failed = service.tasks.submit_import(shop.name, location, "/empty", steady.url())
    unheard = service.tasks.submit_import(shop.name, location, "/empty", down)
    with worker_loop(service):
        ended = [wait_for(lambda t=t: _settled(service, t.id), 60, f"task {t.id}'s callback")
                 for t in (partly, failed, unheard)]
    partly, failed, unheard = ended

    assert partly.state == "partially_failed" and partly.callback_state == "delivered"
    assert [(a["outcome"], a["status"], a["error"]) for a in partly.callback_attempts] == [
        ("failed", 500, "HTTP 500"), ("delivered", 200, None)]
    (_, first), (_, body) = flaky.requests  # the same message, with a fresh link each time
    assert first | {"processResultUrl": ""} == body | {"processResultUrl": ""}
    assert body == {"finishTime": partly.finished_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    "instanceId": str(partly.instance_id), "instanceName": shop.name,
                    "message": partly.error_message, "processResultUrl": body["processResultUrl"],
                    "status": "NORMAL", "taskId": partly.id}
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/downloads/errors/{partly.id}\?Expires=\d+&Signature=\w+",
                        body["processResultUrl"])
    report = requests.get(body["processResultUrl"], timeout=30)
    assert report.status_code == 200
    [missing] = [json.loads(line) for line in report.text.splitlines()]
    assert [missing] == errors(service, partly) and "'missing.jpg'" in missing["reason"]
    assert missing["content"] == '{"OperationType": "ADD", "ProductId": "b", "PicName": "missing.jpg"}'

    assert (failed.state, failed.callback_state, len(failed.callback_attempts)) == ("failed", "delivered", 1)
    [(_, sent)] = steady.requests
    assert (sent["status"], sent["message"], sent["processResultUrl"]) == ("FAIL", failed.error_message, "")

    assert unheard.callback_state == "gave_up"  # after callback_attempts = 3
    assert [(a["outcome"], a["status"], a["error"]) for a in unheard.callback_attempts] == [
        ("failed", None, "Connection refused")] * 3


# ---- exports to an S3 results location -----------------------------------------------------------------


@pytest.fixture
def s3_results(database, encoders, settings, locations, s3_server):
    """(a service writing exports to a new S3 location, its HTTP app's base URL, the bucket)."""
    add_s3, _ = locations
    bucket = s3_server.bucket()
    made = ImageSearch(database, encoders, replace(settings, results_location=add_s3(s3_server, bucket, "/results")))
    with app_server(made) as base_url:
        yield made, base_url, bucket
    made.pipeline.close()


def _download(service, task, base_url: str) -> bytes:
    link = service.tasks.link(task, tasks.META, base_url)
    answer = requests.get(link, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_an_export_to_s3_downloads_as_the_database_holds_it(s3_results, s3_server, make_instance):
    service, base_url, bucket = s3_results
    shop, empty = make_instance("generic").name, make_instance("generic").name
    service.add_image(shop, "p1", "a.jpg", picture(1), attributes=Attributes(int_attr=1, str_attr="x",
                                                                             custom_content="c"))
    service.add_image(shop, "p1", "b.jpg", picture(2), attributes=Attributes(int_attr2=-7, str_attr4="日本"))
    service.add_image(shop, "p2", "c.jpg", picture(3))
    task = run_to_end(service, service.tasks.submit_export(shop))
    assert (task.state, task.error_message) == ("succeeded", "3 pictures exported")
    assert f"results/exports/{shop}/{task.id}.jsonl" in s3_server.keys(bucket)
    rows = [json.loads(line) for line in _download(service, task, base_url).decode().splitlines()]
    assert rows == exported(service, shop) and len(rows) == 3
    assert rows[1] == {"ProductId": "p1", "PicName": "b.jpg", "CategoryId": 88888888, "IntAttr2": -7,
                       "StrAttr4": "日本"}

    nothing = run_to_end(service, service.tasks.submit_export(empty))
    assert (nothing.state, nothing.error_message) == ("succeeded", "0 pictures exported")
    assert _download(service, nothing, base_url) == b""


def test_exports_are_kept_30_per_instance_and_30_days(s3_results, s3_server, make_instance, engine):
    service, _, bucket = s3_results
    shop = make_instance("generic").name
    submitted = [service.tasks.submit_export(shop) for _ in range(31)]
    with worker_loop(service):
        wait_for(lambda: all(service.tasks.get(t.id).state == "succeeded" for t in submitted), 120, "31 exports")
    files = lambda: {key for key in s3_server.keys(bucket) if key.startswith(f"results/exports/{shop}/")}  # noqa: E731
    assert len(files()) == 31
    ids = [t.id for t in submitted]

    newest = service.tasks.submit_export(shop)  # room for it: the two oldest finished go, with their files
    total, kept = service.tasks.list_exports(shop, page_size=30)
    assert total == 30 and [t.id for t in kept] == [newest.id, *reversed(ids[2:])]
    assert files() == {f"results/exports/{shop}/{i}.jsonl" for i in ids[2:]}

    with engine.begin() as conn:  # one finished 31 days ago
        conn.execute(sa.update(task_table).where(task_table.c.id == ids[10])
                     .values(finished_at=sa.func.now() - sa.text("interval '31 days'")))
    total, kept = service.tasks.list_exports(shop, page_size=30)
    assert total == 29 and ids[10] not in [t.id for t in kept]
    assert f"results/exports/{shop}/{ids[10]}.jsonl" not in files() and len(files()) == 28
