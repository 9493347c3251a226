"""The README's task failures: "FAILED with a plain reason (Code NoIncrementMeta ..., NoPermission "cannot read
increment.meta ...: permission denied", TooManyAttempts)", and that a task goes with its instance.

NoPermission from a local folder is produced whoever runs the suite: root reads any file, so the task runs on
a thread that has given up the two capabilities that let root read what its mode forbids (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH), as a server run by an ordinary user is. (An S3 location whose key the store refuses is
tests/test_storage_credentials.py's.)"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import uuid
from pathlib import Path

import pytest

from imagesearch_pg.errors import InvalidInstance, InvalidParameter
from imagesearch_pg.service.tasks import increment
from tests.batch_folders import write_folder
from tests.task_runs import claim, run_claimed

_CAPABILITY_VERSION_3 = 0x20080522
_READ_ANY_FILE = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_file_reading_privileges_of_this_thread() -> None:
    """capset(2) with pid 0 changes the calling thread alone: the rest of the test process keeps its rights."""
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~_READ_ANY_FILE
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def run_as_an_ordinary_user(service, claimed, unreadable: Path) -> None:
    """Run a claimed task to its end on a thread that reads files as their modes say (``unreadable``, a file
    of mode 0, shows that it does)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            _drop_file_reading_privileges_of_this_thread()
            with pytest.raises(PermissionError):  # the thread is what the test needs it to be
                open(unreadable).close()
            run_claimed(service, claimed)
        except BaseException as exc:  # re-raised on the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="ordinary-user")
    thread.start()
    thread.join()
    assert not failures, failures


@pytest.fixture
def local(service, tmp_path):
    name = f"codes-{os.getpid()}-{tmp_path.name}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def test_an_unreadable_increment_meta_fails_the_task_with_no_permission(service, instance, local):
    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}], {})
    meta = root / path.lstrip("/") / "increment.meta"
    meta.chmod(0)
    task = service.tasks.submit_import(instance.name, location, path)
    run_as_an_ordinary_user(service, claim(service, task), meta)

    ended = service.tasks.get(task.id)
    assert (ended.state, ended.error_code) == ("failed", "NoPermission")
    assert ended.error_message == f"cannot read increment.meta in {path} of location {location!r}: permission denied"
    listed = increment(ended, None)  # as IncreaseList shows it
    assert (listed["Status"], listed["Code"], listed["Msg"]) == ("FAILED", "NoPermission", ended.error_message)


def test_a_task_goes_with_its_instance(service, local, caplog):
    """Deleting an instance deletes its tasks: a queued one, and one a worker had claimed, which then ends
    without recording anything or logging an error (no task is left to show InvalidInstance)."""
    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}], {})
    name = f"codes-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    claimed = claim(service, service.tasks.submit_import(name, location, path))
    queued = service.tasks.submit_import(name, location, path)  # behind it: an instance's tasks run in turn
    service.delete_instance(name)
    for task in (queued, claimed):
        with pytest.raises(InvalidParameter, match=f"there is no task {task.id}"):
            service.tasks.get(task.id)
    with pytest.raises(InvalidInstance):
        service.tasks.list_imports(name)

    caplog.set_level(logging.INFO)
    run_claimed(service, claimed)
    with pytest.raises(InvalidParameter, match=f"there is no task {claimed.id}"):
        service.tasks.get(claimed.id)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
