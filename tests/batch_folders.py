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


def run_to_end(service, task, timeout: float = 300.0):
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


# ---- added for tests/test_task_sources.py and tests/test_task_doors.py --------------------------------


def wait_for(condition, timeout: float = 300.0, what: str = "the condition", every: float = 0.05):
    """Poll ``condition()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not reached after {timeout} s"
        time.sleep(every)
    return value


class worker_loop:
    """A full ``Worker.run`` loop (every claimable task, and due callbacks) on a thread, for a ``with``."""

    def __init__(self, service, **options):
        self.worker = Worker(service, **{"poll_seconds": 0.2, **options})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), daemon=True)

    def __enter__(self) -> Worker:
        self._thread.start()
        return self.worker

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the worker did not stop"


def upload_folder(s3, bucket: str, prefix: str, folder: Path) -> None:
    """Every file under ``folder`` put at ``prefix/<its relative path>`` of the bucket (prefix "" for the root)."""
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            key = "/".join(part for part in (prefix, file.relative_to(folder).as_posix()) if part)
            s3.put(bucket, key, file.read_bytes())


def pictures_of(engine, service, instance_name: str) -> dict[tuple[str, str], dict]:
    """Every stored picture of the instance by (ProductId, PicName), without timestamps and ids."""
    import sqlalchemy as sa

    from imagesearch_pg.store.tables import partition

    part = partition(service.instances.current(instance_name).id)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(part).order_by(part.c.product_id, part.c.pic_name)).mappings().all()
    return {(row["product_id"], row["pic_name"]): {k: v for k, v in row.items() if k not in (
        "created_at", "updated_at", "instance_id")} for row in rows}


def exported(service, instance_name: str) -> list[dict]:
    """What an export of the instance must hold: each picture's key, category and set attributes, in
    (ProductId, PicName) order, read from the database."""
    from imagesearch_pg.attributes import ATTRIBUTE_NAMES
    from imagesearch_pg.service.models import public_name

    columns = ("product_id", "pic_name", "category_id", *ATTRIBUTE_NAMES)
    rows = pictures_of(service.database.engine, service, instance_name).values()
    return [{public_name(c): row[c] for c in columns if row[c] is not None} for row in rows]


class app_server:
    """The HTTP app over ``service`` on a free loopback port (Werkzeug, threaded), for a ``with``: its
    base URL. For a service whose settings differ from the session's (conftest's ``server``)."""

    def __init__(self, service):
        from werkzeug.serving import make_server

        from flask_app import create_app
        from flask_app.server import RequestHandler

        self._httpd = make_server("127.0.0.1", 0, create_app({"SETTINGS": service.settings, "SERVICE": service}),
                                  threaded=True, request_handler=RequestHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
