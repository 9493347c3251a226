"""The README: an export is "streamed from one snapshot". The export is stopped at its first written line, the
instance is changed through the service (pictures added before and after the rows already written, others
deleted, one updated), and the export is let go on: its file must be the instance as it was when the export
began, each picture once, and a second export must show the changes (so they were made, and committed)."""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager

import numpy as np
import pytest

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.store import bulk_load
from tests.batch_folders import picture
from tests.small_vectors import load, register_small_encoder, unit
from tests.task_runs import claim, run_claimed, run_now

PICTURES = 12_000  # more than a server-side cursor's batch, so that a paged export would read several pages
DIM = 8
OTHER = 88888888  # the category of every picture of a generic instance
EVENT_WAIT = 300  # seconds: only a bound on a test that went wrong; the events decide when each side goes on


class _PausingStream:
    """The export's output stream: at its first write it says so and waits until the test lets it go on."""

    def __init__(self, stream, started: threading.Event, proceed: threading.Event):
        self._stream, self._started, self._proceed = stream, started, proceed

    def write(self, data: bytes) -> int:
        if not self._started.is_set():
            self._started.set()
            if not self._proceed.wait(EVENT_WAIT):
                raise TimeoutError("the test never let the export go on")
        return self._stream.write(data)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _PausingResults:
    """The results location, whose writers pause at their first write."""

    def __init__(self, location, started: threading.Event, proceed: threading.Event):
        self._location, self._started, self._proceed = location, started, proceed

    @contextmanager
    def writer(self, relative_path: str):
        with self._location.writer(relative_path) as stream:
            yield _PausingStream(stream, self._started, self._proceed)

    def __getattr__(self, name):
        return getattr(self._location, name)


@pytest.fixture
def small_instance(service, tmp_path):
    name = f"snapshot-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic", encoder=register_small_encoder(service, tmp_path, DIM))
    yield name
    service.delete_instance(name)


def line(product_id: str, int_attr: int | None = None) -> dict:
    record = {"ProductId": product_id, "PicName": "n", "CategoryId": OTHER}
    return record if int_attr is None else {**record, "IntAttr": int_attr}


def exported(service, task) -> list[dict]:
    assert (task.state, task.error_code) == ("succeeded", None), task.error_message
    with service.tasks.open_export(task) as stream:
        return [json.loads(text) for text in stream.read().decode().splitlines()]


def test_an_export_is_one_snapshot_while_the_instance_changes(service, small_instance, monkeypatch):
    name = small_instance
    vectors = unit(np.random.default_rng(12).random((PICTURES, DIM)) + 0.1)
    load(service, name, ((f"p{i:05d}", "n", OTHER, vectors[i], i) for i in range(PICTURES)),
         bulk_load.BULK_COLUMNS + ("int_attr",))
    before = [line(f"p{i:05d}", i) for i in range(PICTURES)]  # the export's order: ProductId, then PicName

    started, proceed = threading.Event(), threading.Event()
    results = service.storage.results
    monkeypatch.setattr(service.storage, "results", lambda: _PausingResults(results(), started, proceed))
    task = claim(service, service.tasks.submit_export(name))
    failures: list[BaseException] = []

    def export() -> None:
        try:
            run_claimed(service, task)
        except BaseException as exc:  # re-raised on the test's thread
            failures.append(exc)
        finally:
            started.set()  # a run that never wrote must not leave the test waiting

    exporting = threading.Thread(target=export, name="export")
    exporting.start()
    try:
        assert started.wait(EVENT_WAIT) and not failures, failures
        # The first line is written: the export has begun reading. Change the instance around that point.
        added = ["p00000a", "p06000a", "zz-last"]
        for product_id in added:
            service.add_image(name, product_id, "n", picture(len(product_id)), crop=False)
        deleted = ["p00001", "p06001", *(f"p{i:05d}" for i in range(PICTURES - 10, PICTURES))]
        for product_id in deleted:
            assert service.delete_image(name, product_id).pic_names == ["n"]
        updated = {"p00002": -2, "p06002": -6002, f"p{PICTURES - 11:05d}": -11}
        for product_id, value in updated.items():
            service.update_image(name, product_id, "n", Attributes(int_attr=value))
    finally:
        proceed.set()
        exporting.join()
    assert not failures, failures

    assert exported(service, service.tasks.get(task.id)) == before
    monkeypatch.undo()
    after = [record for record in before if record["ProductId"] not in deleted]
    after = [line(r["ProductId"], updated.get(r["ProductId"], r["IntAttr"])) for r in after]
    after = sorted(after + [line(product_id) for product_id in added], key=lambda r: (r["ProductId"], r["PicName"]))
    assert exported(service, run_now(service, service.tasks.submit_export(name))) == after
