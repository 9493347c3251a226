"""The metadata export task (DumpMeta): every picture's metadata of an instance as JSON lines
(../shared/spec/batch.md), streamed from one snapshot into a file of the results location.

An export has no checkpoint: one killed midway leaves no file (the writer publishes only what it
finished), and the next worker writes it again from the start.
"""

from __future__ import annotations

import json
import logging

from imagesearch_pg.logs import Every
from imagesearch_pg.service.models import public_name
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store import tasks as task_store
from imagesearch_pg.tasks.worker import Outcome

log = logging.getLogger(__name__)

_CHECK_EVERY = 5000  # rows between looks at the lease


def run(service, task: task_store.Task, lease) -> Outcome:
    instance = service.instances.current(task.params["instance"])
    relative = f"exports/{instance.name}/{task.id}.jsonl"
    report = Every(10.0)
    written = 0
    with service.database.transaction() as conn, service.storage.results().writer(relative) as out:
        rows = picture_store.metadata(conn, instance.id)
        names = [public_name(column) for column in picture_store.METADATA_COLUMNS]
        for row in rows:
            out.write(_line(names, row))
            written += 1
            if written % _CHECK_EVERY == 0:
                lease.check()
                if report:
                    log.info("task %s: %d pictures exported", task.id, written)
    return Outcome("succeeded", message=f"{written} pictures exported", result_url=relative)


def abandon(service, task: task_store.Task) -> None:
    """Nothing to undo: an export that did not finish published no file."""


def _line(names: list[str], row) -> bytes:
    # Attributes without a value are left out, as in search results.
    record = {name: value for name, value in zip(names, row) if value is not None}
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()
