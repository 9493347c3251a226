"""IncreaseInstance, IncreaseList, DumpMeta and DumpMetaList through the official SDK against a live server,
with a real worker running the tasks: response shapes as the SDK's models read them, the error report and
the export behind their signed links, and the errors of each action."""

from __future__ import annotations

import json
import os
import threading

import pytest
import requests
import sqlalchemy as sa
from alibabacloud_imagesearch20201214 import models as sdk

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.errors import InstanceStatusError
from imagesearch_pg.store import tasks as task_store
from tests.batch_folders import picture, run_to_end, wait_for, write_folder
from tests.task_runs import claim, run_claimed
from tests.test_api import client, code_of  # noqa: F401  (the SDK client fixture)


@pytest.fixture
def folder_location(service, tmp_path):
    name = f"sdk-{os.getpid()}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def test_a_batch_through_the_sdk(client, service, shop, folder_location):  # noqa: F811
    location, root = folder_location
    path = write_folder(root, [
        {"OperationType": "ADD", "ProductId": "a", "PicName": "1.jpg", "IntAttr": 4},
        {"OperationType": "ADD", "ProductId": "b", "PicName": "missing.jpg"},
        "{broken",
    ], {"1.jpg": picture(1)})
    submitted = client.increase_instance(sdk.IncreaseInstanceRequest(
        instance_name=shop, bucket_name=location, path=path)).body
    assert submitted.success and submitted.data.increment_status == "QUEUED"
    task_id = int(submitted.data.id)
    run_to_end(service, service.tasks.get(task_id))

    listed = client.increase_list(sdk.IncreaseListRequest(instance_name=shop, id=task_id)).body.data
    assert (listed.total_count, listed.page_number, listed.page_size) == (1, 1, 10)
    item = listed.increments.instance[0]
    assert (item.id, item.status, item.code, item.bucket_name, item.path) == (
        task_id, "PARTIALLY_FAILED", "LinesFailed", location, path)
    assert "2 of 3 lines failed" in item.msg and item.utc_create and item.utc_modified
    report = requests.get(item.error_url, timeout=30)
    assert report.status_code == 200
    lines = [json.loads(line) for line in report.text.splitlines()]
    assert [(line["line"], line["content"]) for line in lines] == [
        (2, '{"OperationType": "ADD", "ProductId": "b", "PicName": "missing.jpg"}'), (3, "{broken")]
    # the link is the permission: changed, it is refused
    assert requests.get(item.error_url.replace("Signature=", "Signature=0"), timeout=30).status_code == 403
    assert requests.get(item.error_url.replace(f"/{task_id}?", f"/{task_id + 1}?"), timeout=30).status_code == 403

    by_location = client.increase_list(sdk.IncreaseListRequest(instance_name=shop, bucket_name=location)).body.data
    assert task_id in [i.id for i in by_location.increments.instance]
    other = client.increase_list(sdk.IncreaseListRequest(instance_name=shop, path="/elsewhere")).body.data
    assert other.total_count == 0 and other.increments.instance == []
    assert service.check_image_exists(shop, "a", "1.jpg").attributes.int_attr == 4


def test_a_task_is_processing_while_a_worker_runs_it(client, service, shop, folder_location, engine):  # noqa: F811
    """The README's states as IncreaseList (and the DBA's view imagesearch.task_status) show them: QUEUED,
    PROCESSING while a worker is inside the task, then how it ended. The test holds the task mid-run by
    locking the table its failed line is written to, so the task is seen while it runs, not after."""
    location, root = folder_location
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": "a", "PicName": "1.jpg"}, "{broken"],
                        {"1.jpg": picture(1)})
    task = service.tasks.submit_import(shop, location, path)

    def shown() -> tuple[str, str]:
        [item] = client.increase_list(sdk.IncreaseListRequest(instance_name=shop, id=task.id)).body.data.increments.instance
        with engine.connect() as conn:
            state = conn.execute(sa.text("SELECT state FROM imagesearch.task_status WHERE id = :id"),
                                 {"id": task.id}).scalar_one()
        return item.status, state

    assert shown() == ("QUEUED", "queued")
    with engine.connect() as holding:
        holding.execute(sa.text("LOCK TABLE imagesearch.task_errors IN EXCLUSIVE MODE"))  # reads pass, writes wait
        running = threading.Thread(target=run_claimed, args=(service, claim(service, task)), daemon=True)
        running.start()
        with engine.connect() as conn:  # the worker's chunk waits for the lock: it is inside the task
            wait_for(lambda: conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE relation = 'imagesearch.task_errors'::regclass "
                "AND NOT granted")).scalar_one(), 120, "the task's write")
        assert shown() == ("PROCESSING", "running")
        holding.rollback()
        running.join(timeout=120)
    assert not running.is_alive()
    assert shown() == ("PARTIALLY_FAILED", "partially_failed")


def test_the_errors_of_the_batch_actions(client, shop, folder_location):  # noqa: F811
    location, _ = folder_location
    assert code_of(lambda: client.increase_instance(sdk.IncreaseInstanceRequest(
        instance_name=shop, bucket_name="no-such-location", path="/"))) == "InvalidParameter"
    assert code_of(lambda: client.increase_instance(sdk.IncreaseInstanceRequest(
        instance_name=shop, bucket_name=location, path="/../.."))) == "InvalidParameter"
    assert code_of(lambda: client.increase_instance(sdk.IncreaseInstanceRequest(
        instance_name=shop, bucket_name=location, path="/", callback_address="http://169.254.169.254/"))) == (
        "InvalidParameter")
    assert code_of(lambda: client.increase_instance(sdk.IncreaseInstanceRequest(
        instance_name="no-such-instance", bucket_name=location, path="/"))) == "InvalidInstance"
    assert code_of(lambda: client.increase_list(sdk.IncreaseListRequest(instance_name=shop, id=10**9))) == (
        "InvalidParameter")
    assert code_of(lambda: client.increase_list(sdk.IncreaseListRequest(instance_name=shop, page_size=101))) == (
        "InvalidParameter")
    assert code_of(lambda: client.dump_meta_list(sdk.DumpMetaListRequest(instance_name=shop, page_size=31))) == (
        "InvalidParameter")
    assert code_of(lambda: client.dump_meta_list(sdk.DumpMetaListRequest(instance_name=shop, id=10**9))) == (
        "InvalidParameter")
    assert code_of(lambda: client.dump_meta(sdk.DumpMetaRequest(instance_name="no-such-one"))) == "InvalidInstance"


def test_an_instance_holds_at_most_100_unfinished_tasks(client, service, shop, folder_location, engine):  # noqa: F811
    """The README: "at most 100 unfinished per instance", imports and exports together; a finished one
    makes room for one more. (The server runs no task worker: they stay queued.)"""
    location, _ = folder_location
    made = [service.tasks.submit_import(shop, location, "/") for _ in range(99)] + [service.tasks.submit_export(shop)]
    another = sdk.IncreaseInstanceRequest(instance_name=shop, bucket_name=location, path="/")
    assert code_of(lambda: client.increase_instance(another)) == "InstanceStatusError"
    assert code_of(lambda: client.dump_meta(sdk.DumpMetaRequest(instance_name=shop))) == "InstanceStatusError"
    with pytest.raises(InstanceStatusError, match="100 unfinished tasks"):
        service.tasks.submit_import(shop, location, "/")

    with engine.begin() as conn:
        assert task_store.claim(conn, "test", 30, only=[made[0].id]).id == made[0].id
        assert task_store.finish(conn, made[0].id, "test", "failed", error_message="finished by the test")
    assert client.increase_instance(another).body.success
    assert code_of(lambda: client.increase_instance(another)) == "InstanceStatusError"


def test_an_export_through_the_sdk_equals_the_database(client, service, shop):  # noqa: F811
    service.add_image(shop, "p1", "a.jpg", picture(1), attributes=Attributes(int_attr=1, str_attr="x", custom_content="c"))
    service.add_image(shop, "p1", "b.jpg", picture(2), attributes=Attributes(int_attr2=-7, str_attr4="日本"))
    service.add_image(shop, "p2", "c.jpg", picture(3))
    submitted = client.dump_meta(sdk.DumpMetaRequest(instance_name=shop)).body
    assert submitted.success and submitted.data.dump_meta_status == "QUEUED"
    task_id = int(submitted.data.id)
    run_to_end(service, service.tasks.get(task_id))

    listed = client.dump_meta_list(sdk.DumpMetaListRequest(instance_name=shop)).body.data
    assert listed.total_count == 1
    item = listed.dump_meta_list[0]
    assert (item.id, item.status, item.code) == (task_id, "SUCCEEDED", "0") and item.utc_create
    exported = requests.get(item.meta_url, timeout=30)
    assert exported.status_code == 200
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert rows == [
        {"ProductId": "p1", "PicName": "a.jpg", "CategoryId": 88888888, "CustomContent": "c", "IntAttr": 1, "StrAttr": "x"},
        {"ProductId": "p1", "PicName": "b.jpg", "CategoryId": 88888888, "IntAttr2": -7, "StrAttr4": "日本"},
        {"ProductId": "p2", "PicName": "c.jpg", "CategoryId": 88888888},
    ]


def test_download_links_refuse_what_they_do_not_sign(service, server, shop):
    task = service.tasks.submit_export(shop)
    run_to_end(service, task)
    task = service.tasks.get(task.id)
    base = f"http://{server}"
    good = service.tasks.link(task, "meta", base)
    assert requests.get(good, timeout=30).status_code == 200
    expired = service.tasks.link(task, "meta", base, seconds=-1)
    answers = {
        "expired": requests.get(expired, timeout=30),
        "other-kind": requests.get(good.replace("/meta/", "/errors/"), timeout=30),
        "unknown-kind": requests.get(good.replace("/meta/", "/etc/"), timeout=30),
        "no-signature": requests.get(good.split("&Signature=")[0], timeout=30),
        "expires-text": requests.get(good.replace("Expires=", "Expires=x"), timeout=30),
        "later-expiry": requests.get(good.replace("Expires=", "Expires=9"), timeout=30),
        "expires-padded": requests.get(good.replace("Expires=", "Expires=0"), timeout=30),
        "expires-signed": requests.get(good.replace("Expires=", "Expires=%2B"), timeout=30),
        "not-a-number-id": requests.get(good.replace(f"/{task.id}?", "/abc?"), timeout=30),
        "non-ascii-signature": requests.get(good.split("&Signature=")[0] + "&Signature=%C3%A9", timeout=30),
    }
    codes = {name: (answer.status_code, answer.json()["Code"]) for name, answer in answers.items()}
    assert codes == {
        "expired": (403, "RequestExpired"), "other-kind": (403, "NoPermission"),
        "unknown-kind": (400, "InvalidParameter"), "no-signature": (403, "NoPermission"),
        "expires-text": (400, "InvalidParameter"), "later-expiry": (403, "NoPermission"),
        "expires-padded": (400, "InvalidParameter"), "expires-signed": (400, "InvalidParameter"),
        "not-a-number-id": (404, "InvalidPath"), "non-ascii-signature": (403, "NoPermission"),
    }
    assert service.tasks.link(service.tasks.submit_export(shop), "meta", base) is None  # not finished: no link


def test_deleting_an_instance_removes_its_export_files(service, settings):
    service.create_instance("exported-then-deleted", "generic")
    try:
        service.add_image("exported-then-deleted", "p", "1.jpg", picture(1))
        task = run_to_end(service, service.tasks.submit_export("exported-then-deleted"))
        file = settings.results_dir / task.result_url
        assert file.read_text().count("\n") == 1
    finally:
        service.delete_instance("exported-then-deleted")
    assert not file.exists()
