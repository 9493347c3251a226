"""Batch folders for the task tests: pictures and an increment.meta written to a local storage location,
and a way to run a submitted task to its end with a real worker."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

from imagesearch_pg.store.tasks import FINAL_STATES
from imagesearch_pg.tasks.worker import Worker
from tests.pictures import encode, noise

_folders = itertools.count()


def picture(seed: int, side: int = 160) -> bytes:
    return encode(noise(side, side, seed), "JPEG", quality=92)


def write_folder(root: Path, lines: list, pictures: dict[str, bytes]) -> str:
    """A new folder under ``root`` with these pictures and an increment.meta of ``lines`` (dicts as JSON,
    bytes and str as they are); returns its Path as IncreaseInstance takes it ("/name")."""
    name = f"batch{next(_folders)}"
    folder = root / name
    folder.mkdir(parents=True)
    for pic_name, data in pictures.items():
        (folder / pic_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / pic_name).write_bytes(data)
    raw = b"".join((line if isinstance(line, bytes) else
                    (line if isinstance(line, str) else json.dumps(line)).encode()) + b"\n" for line in lines)
    (folder / "increment.meta").write_bytes(raw)
    return f"/{name}"


def run_to_end(service, task, timeout: float = 120.0):
    """Run ``task`` with a worker of its own until it ends; returns it as it ended."""
    stop = threading.Event()
    worker = Worker(service, only=task.id, poll_seconds=0.2)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while (task := service.tasks.get(task.id)).state not in FINAL_STATES:
            assert time.monotonic() < deadline, f"task {task.id} still {task.state} after {timeout} s"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    return task


def errors(service, task) -> list[dict]:
    return [json.loads(line) for line in service.tasks.error_report(task.id)]
