"""Background tasks as the doors see them: batch imports (IncreaseInstance, IncreaseList) and metadata
exports (DumpMeta, DumpMetaList). Submit, list, resubmit, and the signed links of their results.

The work itself is done by a worker (imagesearch_pg/tasks/); this module only reads and writes the queue.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator
from urllib.parse import urlencode

from imagesearch_pg.errors import ImageSearchError, InstanceStatusError, InvalidParameter, NoPermission, RequestExpired
from imagesearch_pg.service import validation
from imagesearch_pg.service.access_keys import secret_key
from imagesearch_pg.service.instances import Instances
from imagesearch_pg.service.models import public_record
from imagesearch_pg.store import tasks as task_store
from imagesearch_pg.store.tasks import Task

log = logging.getLogger(__name__)

IMPORT, EXPORT = "import", "export"
# The states as IncreaseList and DumpMetaList show them.
STATUS = {"queued": "QUEUED", "running": "PROCESSING", "succeeded": "SUCCEEDED",
          "partially_failed": "PARTIALLY_FAILED", "failed": "FAILED"}
MAX_UNFINISHED = 100  # queued or running tasks of one instance
MAX_TASK_ID = 2**63 - 1  # a bigint
EXPORTS_KEPT, EXPORT_DAYS = 30, 30
MAX_IMPORT_PAGE, MAX_EXPORT_PAGE = 100, 30
LINK_SECONDS = 24 * 3600  # how long a download link made now stays valid
ERRORS, META = "errors", "meta"  # what a download link gives


class Tasks:
    def __init__(self, instances: Instances, storage, settings, clock: Callable[[], float] = time.time):
        self.instances = instances
        self.database = instances.database
        self.storage = storage
        self.settings = settings
        self.clock = clock  # seconds since the epoch, for download links' expiry (tests pass their own)

    @functools.cached_property
    def _link_key(self) -> bytes:
        return hashlib.sha256(b"imagesearch-pg download links\0" + secret_key(self.settings)).digest()

    # ---- batch imports ----------------------------------------------------------------------------------

    def submit_import(self, instance_name: str, location: str, path: str, callback_address: str | None = None) -> Task:
        from imagesearch_pg.tasks.callback_policy import CallbackPolicy

        instance = self.instances.current(instance_name)
        # An unknown location, one this instance may not read, or a path out of it: refused now.
        self.storage.get(location, for_instance=instance_name).folder(path)
        if callback_address:
            CallbackPolicy.from_settings(self.settings).check(callback_address)
        params = {"instance": instance_name, "location": location, "path": path,
                  "callback_address": callback_address or None}
        return self._submit(instance.id, instance_name, IMPORT, params)

    def list_imports(self, instance_name: str, *, task_id: int | None = None, location: str | None = None,
                     path: str | None = None, page_number: int = 1, page_size: int = 10) -> tuple[int, list[Task]]:
        validation.text("BucketName", location, max_len=1024)
        validation.text("Path", path, max_len=1024)
        filters = {name: value for name, value in (("location", location), ("path", path)) if value}
        return self._page(instance_name, IMPORT, task_id, filters, page_number, page_size, MAX_IMPORT_PAGE)

    def resubmit(self, task_id: int) -> Task:
        """The finished task ``task_id`` again, as a new task (its own Id, state and error report)."""
        validation.positive("Id", task_id, MAX_TASK_ID)
        with self.database.reading() as conn:
            task = task_store.get(conn, task_id)
        if task is None:
            raise InvalidParameter(f"there is no task {task_id}")
        if task.state not in task_store.FINAL_STATES:
            raise InvalidParameter(f"task {task_id} is {task.state}; only a finished task can be resubmitted")
        instance = self.instances.current(task.params["instance"])
        return self._submit(instance.id, instance.name, task.kind, task.params)

    def get(self, task_id: int) -> Task:
        validation.positive("Id", task_id, MAX_TASK_ID)
        with self.database.reading() as conn:
            task = task_store.get(conn, task_id)
        if task is None:
            raise InvalidParameter(f"there is no task {task_id}")
        return task

    def error_report(self, task_id: int) -> Iterator[bytes]:
        """The failed lines of a batch task as JSON lines, {"line", "content", "reason"}, read in pages."""
        after = 0
        while True:
            with self.database.reading() as conn:
                failed = task_store.errors(conn, task_id, after, 1000)
            for line, content, reason in failed:
                yield (json.dumps({"line": line, "content": content, "reason": reason}, ensure_ascii=False) + "\n").encode()
            if len(failed) < 1000:
                return
            after = failed[-1][0]

    # ---- metadata exports -------------------------------------------------------------------------------

    def submit_export(self, instance_name: str) -> Task:
        instance = self.instances.current(instance_name)
        self._expire_exports(instance.id, submitting=True)
        return self._submit(instance.id, instance_name, EXPORT, {"instance": instance_name})

    def list_exports(self, instance_name: str, *, task_id: int | None = None, page_number: int = 1,
                     page_size: int = 10) -> tuple[int, list[Task]]:
        self._expire_exports(self.instances.current(instance_name).id)
        return self._page(instance_name, EXPORT, task_id, {}, page_number, page_size, MAX_EXPORT_PAGE)

    def open_export(self, task: Task):
        """The export's file, open for reading."""
        return self.storage.results().reader(task.result_url)

    def _expire_exports(self, instance_id: int, *, submitting: bool = False) -> None:
        """At most EXPORTS_KEPT exports per instance (the oldest finished go first), none older than
        EXPORT_DAYS; their files go with them. ``submitting``: one more is about to be queued."""
        cutoff = datetime.now(timezone.utc) - timedelta(days=EXPORT_DAYS)
        with self.database.transaction() as conn:
            room = EXPORTS_KEPT - int(submitting) - task_store.unfinished_count(conn, instance_id, EXPORT)
            removed = task_store.remove_finished(conn, instance_id, EXPORT, keep=max(room, 0), before=cutoff)
        self.remove_files([task.result_url for task in removed if task.result_url])

    def export_files(self, instance_name: str) -> list[str]:
        """The files of the instance's exports (to remove once the instance is deleted)."""
        instance = self.instances.current(instance_name)
        with self.database.reading() as conn:
            return task_store.result_files(conn, instance.id, EXPORT)

    def remove_files(self, files: list[str]) -> None:
        results = self.storage.results()
        for file in files:
            try:
                results.remove(file)
            except ImageSearchError as exc:  # its task is gone either way; the file is left behind
                log.warning("could not remove the export file %s: %s", file, exc.message)

    # ---- both -------------------------------------------------------------------------------------------

    def _submit(self, instance_id: int, instance_name: str, kind: str, params: dict) -> Task:
        with self.database.transaction() as conn:
            self.instances.locked(conn, instance_name, "share")
            if task_store.unfinished_count(conn, instance_id) >= MAX_UNFINISHED:
                raise InstanceStatusError(
                    f"instance {instance_name!r} has {MAX_UNFINISHED} unfinished tasks; wait for some to finish")
            # Callbacks that keep failing must not pile up for every other instance to wait behind.
            if params.get("callback_address") and task_store.due_callbacks(conn, instance_id) >= MAX_UNFINISHED:
                raise InstanceStatusError(
                    f"instance {instance_name!r} has {MAX_UNFINISHED} callbacks not delivered yet; fix their "
                    "receiver, or submit without CallbackAddress")
            return task_store.submit(conn, instance_id, kind, params)

    def _page(self, instance_name: str, kind: str, task_id, filters: dict, page_number: int, page_size: int,
              max_size: int) -> tuple[int, list[Task]]:
        validation.positive("PageNumber", page_number, 1_000_000)
        validation.positive("PageSize", page_size, max_size)
        if task_id is not None:
            validation.positive("Id", task_id, MAX_TASK_ID)
        instance = self.instances.current(instance_name)
        with self.database.reading() as conn:
            total, found = task_store.page(conn, instance.id, kind, task_id=task_id, params=filters,
                                           offset=(page_number - 1) * page_size, limit=page_size)
        if task_id is not None and total == 0:
            raise InvalidParameter(f"instance {instance_name!r} has no {kind} task {task_id}")
        return total, found

    def link(self, task: Task, what: str, base_url: str | None = None, seconds: float = LINK_SECONDS) -> str | None:
        """A signed, expiring download link of the task's error report (ERRORS) or export (META), served
        by the HTTP app at ``base_url`` (default Settings.public_url); None if it has none."""
        has = task_store.has_errors if what == ERRORS else (lambda conn, t: bool(task.result_url))
        with self.database.reading() as conn:
            if task.state not in task_store.FINAL_STATES or not has(conn, task.id):
                return None
        expires = int(self.clock() + seconds)
        query = urlencode({"Expires": expires, "Signature": self._signature(what, task.id, expires)})
        return f"{(base_url or self.settings.public_url).rstrip('/')}/downloads/{what}/{task.id}?{query}"

    def check_link(self, what: str, task_id: int, expires: str, signature: str) -> Task:
        """The task a download link names, if the link is this server's and has not expired."""
        # As the link wrote it: ASCII digits, no sign, no leading zero (int() also reads ' 1', '+1', '1_0', '١').
        if not (isinstance(expires, str) and expires.isascii() and expires.isdigit() and len(expires) <= 12
                and str(int(expires)) == expires):
            raise InvalidParameter("Expires must be the link's expiry as it wrote it, in seconds since the epoch")
        when = int(expires)
        given = (signature or "").encode("utf-8", errors="replace")  # any text a client sends, compared as bytes
        if not hmac.compare_digest(self._signature(what, task_id, when).encode(), given):
            raise NoPermission("the download link's signature does not match; ask for a new link")
        if when < self.clock():
            raise RequestExpired("the download link has expired; list the tasks again for a new one")
        return self.get(task_id)

    def result_url(self, task: Task) -> str | None:
        """What a finished task's callback points to: its export, else its error report."""
        return self.link(task, META if task.kind == EXPORT else ERRORS)

    def _signature(self, what: str, task_id: int, expires: int) -> str:
        return hmac.new(self._link_key, f"{what}/{task_id}/{expires}".encode(), hashlib.sha256).hexdigest()


def increment(task: Task, error_url: str | None) -> dict:
    """A batch task as IncreaseList (and `imagesearch batch list --json`) shows it."""
    return {**_listed(task, {"location": task.params["location"], "path": task.params["path"],
                             "callback_address": task.params.get("callback_address"), "error_url": error_url}),
            "Progress": task.progress}


def dump(task: Task, meta_url: str | None) -> dict:
    """An export task as DumpMetaList (and `imagesearch export`) shows it."""
    return _listed(task, {"meta_url": meta_url})


def _listed(task: Task, fields: dict) -> dict:
    """A task as the lists show it, typed as the SDKs' models declare: Id and UtcModified numbers, UtcCreate
    text (both milliseconds since the epoch), Code text; a field without a value left out."""
    shown = public_record({"id": task.id, **fields, "status": STATUS[task.state],
                           "code": task.error_code or ("0" if task.state == "succeeded" else None),
                           "msg": task.error_message or _progress_text(task),
                           "created_at": task.created_at, "updated_at": task.updated_at})
    shown["UtcCreate"] = str(shown["UtcCreate"])
    return {name: value for name, value in shown.items() if value is not None}


def _progress_text(task: Task) -> str:
    if task.state == "succeeded":
        return "success"
    done, total = task.progress.get("done"), task.progress.get("total")
    return f"{done} of {total} lines" if total is not None else STATUS[task.state].lower()
