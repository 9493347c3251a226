"""The batch import task (IncreaseInstance): apply a folder's increment.meta, line by line, in file order.

Each ADD and DELETE takes AddImage's and DeleteImage's own steps (Pictures.check_add, the pipeline,
Pictures.ready and write, check_delete and remove), many lines at a time: the pictures of a chunk of lines
are read, decoded and their subjects detected on a few threads, embedded in batches, and written in one
transaction with the chunk's failed lines and the checkpoint. A worker killed anywhere leaves the last
committed chunk as the place to resume. The encoder batches run across chunks, two described at once and
the next read and framed meanwhile, and a chunk is written on its own thread while the next is prepared.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.logs import Every
from imagesearch_pg.service.pictures import FULL, REPLACED, check_delete
from imagesearch_pg.storage import PathRefused, StorageNotFound, StoragePermissionDenied, StorageUnavailable
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store import tasks as task_store
from imagesearch_pg.tasks.increment_meta import FILE_NAME, Add, Delete, Line, LineRefused, count_lines, lines, parse
from imagesearch_pg.tasks.worker import Outcome, Transient
from imagesearch_pg.vision.encoders.base import BATCH
from imagesearch_pg.vision.intake import MAX_PICTURE_BYTES

log = logging.getLogger(__name__)

_BUG = "the line failed on a bug in imagesearch-pg; the worker's log has the details"
# From this many lines (into an instance holding at most half as many pictures) the vector index is dropped
# and built once at the end: 6,400 1280-d rows took 10.9 s inserted into the graph, 4.1 s with one build.
DEFERRED_INDEX_LINES = 5000
MAX_REPORTED_LINES = 100_000  # failed lines kept in a task's error report (at most about 250 MB)
CHUNK_LINES = 64  # lines per transaction (and per checkpoint)
READERS = 3  # threads reading, decoding and detecting a chunk's pictures (I/O, OpenCV and ONNX release the GIL)
# Encoder batches described at once: one alone leaves a core idle at each layer's end and while its pictures
# are made ready; two keep both busy (10,520 pictures at batch 8: 145 -> 193 pictures/s, docs/benchmarks.md).
ENCODING_STREAMS = 2
FRAMED_AHEAD = 1  # encoder batches read and framed ahead of those waiting to be described (each BATCH pictures)


@dataclass
class _Entry:
    line: Line
    operation: Add | Delete | None = None
    reason: str | None = None  # why the line failed
    checked: object = None  # CheckedAdd
    prepared: object = None  # Prepared
    original: bytes | None = None  # the picture's file, held only when the pipeline keeps originals


@dataclass
class _Stages:
    """Seconds spent in each stage, summed over the threads doing it."""

    read: float = 0.0
    decode_detect: float = 0.0
    encode: float = 0.0
    write: float = 0.0

    def as_dict(self) -> dict:
        return {name: round(value, 3) for name, value in vars(self).items()}


@dataclass
class _Progress:
    total: int
    done: int = 0
    failed: int = 0
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    seconds: _Stages = field(default_factory=_Stages)
    pictures_per_second: float = 0.0

    @classmethod
    def of(cls, saved: dict, total: int) -> "_Progress":
        counts = {name: saved[name] for name in ("done", "failed", "added", "replaced", "deleted") if name in saved}
        return cls(total, **counts, seconds=_Stages(**saved.get("seconds", {})))

    def as_dict(self) -> dict:
        return {**{name: getattr(self, name) for name in ("total", "done", "failed", "added", "replaced", "deleted",
                                                          "pictures_per_second")},
                "seconds": self.seconds.as_dict()}


def pulled_ahead(items, count: int):
    """The items in order, each given once ``count`` more have been taken from ``items``: work that taking
    one starts (a submit to a pool) runs that far ahead of its use."""
    window = collections.deque(itertools.islice(items, count))
    for item in items:
        window.append(item)
        yield window.popleft()
    yield from window


def framed_ahead(groups, frame, readers: ThreadPoolExecutor):
    """``(key, group)`` pairs as ``(key, group, [frame(item) for item in group])``, the FRAMED_AHEAD groups
    after the one given framed on ``readers`` meanwhile: the encoder never waits for a chunk's first batch."""
    submitted = ((key, group, [readers.submit(frame, item) for item in group]) for key, group in groups)
    for key, group, futures in pulled_ahead(submitted, FRAMED_AHEAD):
        yield key, group, [future.result() for future in futures]


def overlapped(items, work, pool: ThreadPoolExecutor, streams: int):
    """``(item, work(item))`` for each item, in the items' order, ``streams`` of them worked on at once on
    ``pool`` (and one more waiting, so that a stream never waits for its next item)."""
    for item, future in pulled_ahead(((item, pool.submit(work, item)) for item in items), streams):
        yield item, future.result()


def run(service, task: task_store.Task, lease) -> Outcome:
    instance = service.instances.current(task.params["instance"])
    outcome, deferred = _applied(service, instance, task, lease)
    if deferred:
        _index(service, instance)
    return outcome


def abandon(service, task: task_store.Task) -> None:
    """The task ends without running again (the worker gives up on it): an index it deferred is built."""
    if (task.checkpoint or {}).get("deferred_index"):
        _index(service, service.instances.current(task.params["instance"]))


def _applied(service, instance, task: task_store.Task, lease) -> tuple[Outcome, bool]:
    """The task's outcome, and whether its instance's vector index waits to be built."""
    params = task.params
    where = f"{params['path']} of location {params['location']!r}"
    deferred = bool((task.checkpoint or {}).get("deferred_index"))
    try:
        folder = service.storage.get(params["location"], for_instance=instance.name).folder(params["path"])
        meta = folder.open(FILE_NAME)
    except StorageNotFound:
        return Outcome("failed", "NoIncrementMeta", f"no {FILE_NAME} file in {where}"), deferred
    except StoragePermissionDenied:
        return Outcome("failed", "NoPermission", f"cannot read {FILE_NAME} in {where}: permission denied"), deferred
    except StorageUnavailable as exc:
        raise Transient(exc.message) from None
    except ImageSearchError as exc:  # the location was removed, or its folder no longer allowed
        return Outcome("failed", exc.code, exc.message), deferred
    with meta:
        size = meta.seek(0, 2)
        checkpoint = task.checkpoint or {"line": 0, "offset": 0, "size": size}
        if checkpoint["size"] != size:  # its offsets mean nothing in another file
            return Outcome("failed", "IncrementMetaChanged",
                           f"{FILE_NAME} in {where} changed while the task ran ({checkpoint['size']} bytes, now "
                           f"{size}); resubmit the task to apply the new file from its start"), deferred
        progress = _Progress.of(task.progress, task.progress.get("total") or count_lines(meta))
        if task.checkpoint is None:  # the first run decides, for every run of the task
            deferred = _defers(service, instance, progress.total)
            checkpoint = {**checkpoint, "deferred_index": deferred}
            if deferred:
                with service.database.transaction() as conn:  # dropped and recorded at once
                    picture_store.drop_vector_indexes(conn, instance.id, _silhouettes(service, instance))
                    lease.checkpoint(conn, checkpoint, progress.as_dict())
        _Import(service, instance, folder, task, lease, progress, checkpoint).apply(
            lines(meta, checkpoint["offset"], checkpoint["line"]))
    if progress.failed:
        listed = "lists them" if progress.failed <= MAX_REPORTED_LINES else f"lists the first {MAX_REPORTED_LINES}"
        return Outcome("partially_failed", "LinesFailed",
                       f"{progress.failed} of {progress.total} lines failed; the error report (ErrorUrl) {listed}"), deferred
    return Outcome("succeeded"), deferred


def _defers(service, instance, lines_total: int) -> bool:
    """Whether to build the vector index once at the end: a batch of many lines into an instance that
    holds at most half as many pictures (rebuilding costs less than inserting each into the graph)."""
    if lines_total < DEFERRED_INDEX_LINES:
        return False
    return 2 * service.describe_instance(instance.name).picture_count <= lines_total


def _silhouettes(service, instance) -> bool:
    return service.encoders.get(instance.encoder).silhouettes


def _index(service, instance) -> None:
    with service.database.transaction() as conn:
        picture_store.create_vector_indexes(conn, instance.id, _silhouettes(service, instance))


class _Import:
    def __init__(self, service, instance, folder, task, lease, progress: _Progress, checkpoint: dict):
        self.service = service
        self.pictures = service.pictures
        self.pipeline = service.pipeline
        self.instance = instance
        self.folder = folder
        self.task = task
        self.lease = lease
        self.progress = progress
        self.checkpoint = checkpoint  # its size and deferred_index go into every later one
        self._began = time.monotonic()
        self._written = 0
        self._report = Every(10.0)
        self._timing = threading.Lock()  # readers add their seconds from several threads

    def apply(self, remaining) -> None:
        chunks = iter(lambda: list(itertools.islice(remaining, CHUNK_LINES)), [])
        with ThreadPoolExecutor(READERS, thread_name_prefix="batch-read") as readers, \
                ThreadPoolExecutor(1, thread_name_prefix="batch-write") as writer:
            written = None
            for entries in self.prepared(chunks, readers):
                if written is not None:
                    written.result()  # in file order, one chunk at a time; a failed write ends the run here
                written = writer.submit(self.write, entries)
            if written is not None:
                written.result()

    # ---- reading, decoding, detecting, encoding (no database writes) ------------------------------------

    def prepared(self, chunks, readers: ThreadPoolExecutor):
        """Each chunk's entries, once every picture of it is described (or its line has failed)."""
        groups = (group for chunk in chunks for group in self._groups(chunk))
        with ThreadPoolExecutor(ENCODING_STREAMS, thread_name_prefix="batch-encode") as encoding:
            framed = framed_ahead(groups, self._framed, readers)
            for (entries, _, _), _ in overlapped(framed, partial(self._described, readers), encoding, ENCODING_STREAMS):
                if entries is not None:
                    yield entries

    def _described(self, readers: ThreadPoolExecutor, framed_group: tuple) -> None:
        """A framed batch's pictures described (prepare_stored), each onto its entry."""
        _, group, framed = framed_group
        ready = [(entry, frame) for entry, frame in zip(group, framed) if frame is not None]
        if ready:
            began = time.perf_counter()
            originals = [entry.original for entry, _ in ready] if self.pipeline.keep_originals else None
            prepared = self.pipeline.prepare_stored(self.instance, [frame for _, frame in ready], readers,
                                                    originals)
            self._spent("encode", time.perf_counter() - began)
            for (entry, _), picture in zip(ready, prepared):
                entry.prepared = picture

    def _groups(self, chunk: list[Line]):
        """The chunk's lines checked, then its ADDs in encoder batches: (None, batch) for each but the last,
        (the chunk's entries, its last batch) at the end (a batch that may be empty)."""
        self.lease.check()
        entries = [_Entry(line) for line in chunk]
        for entry in entries:
            try:
                entry.operation = parse(entry.line)
                if isinstance(entry.operation, Add):
                    op = entry.operation
                    entry.checked = self.pictures.check_add(self.instance, op.product_id, op.pic_name, op.category_id,
                                                            op.attributes)
                elif isinstance(entry.operation, Delete):
                    check_delete(entry.operation.product_id, entry.operation.pic_name)
            except LineRefused as exc:
                entry.reason = exc.reason
            except ImageSearchError as exc:
                entry.reason = exc.message
            except Exception:  # a bug met on one line must not end the task: that line fails, loudly
                log.exception("task %s: line %d failed on a bug", self.task.id, entry.line.number)
                entry.reason = _BUG
        adds = [entry for entry in entries if entry.checked is not None and entry.reason is None]
        starts = range(0, len(adds), BATCH)
        for start in starts[:-1]:
            yield None, adds[start : start + BATCH]
        yield entries, adds[starts[-1]:] if adds else []

    def _framed(self, entry: _Entry):
        """The line's picture read and framed (decoded, subject found); None with the reason on the entry."""
        op = entry.operation
        began = time.perf_counter()
        try:
            data = self.folder.read(op.pic_name, MAX_PICTURE_BYTES)
        except StorageUnavailable as exc:
            raise Transient(exc.message) from None
        except PathRefused as exc:
            entry.reason = f"PicName refused: {exc.message}"
            return None
        except ImageSearchError as exc:
            entry.reason = exc.message
            return None
        finally:
            read = time.perf_counter()
            self._spent("read", read - began)
        try:
            framed = self.pipeline.framed(self.instance, data, crop=op.crop, region=op.region, alongside=True)
            if self.pipeline.keep_originals:
                entry.original = data
            return framed
        except ImageSearchError as exc:
            entry.reason = f"picture {op.pic_name[:128]!r}: {exc.message}"
            return None
        except Exception:  # as in prepare: the line fails, the task goes on
            log.exception("task %s: line %d failed on a bug", self.task.id, entry.line.number)
            entry.reason = _BUG
            return None
        finally:
            self._spent("decode_detect", time.perf_counter() - read)

    def _spent(self, stage: str, seconds: float) -> None:
        with self._timing:
            setattr(self.progress.seconds, stage, getattr(self.progress.seconds, stage) + seconds)

    # ---- writing ----------------------------------------------------------------------------------------

    def write(self, entries: list[_Entry]) -> None:
        began = time.perf_counter()
        ready = {id(entry): self.pictures.ready(self.instance, entry.checked, entry.prepared)
                 for entry in entries if entry.prepared is not None}
        failed = [entry for entry in entries if entry.reason is not None]
        counts = {"added": 0, "replaced": 0, "deleted": 0}
        with self.service.database.transaction() as conn:
            locked = self.service.instances.locked(conn, self.instance.name, "share")
            run: list[_Entry] = []

            def flush():
                for entry, outcome in zip(run, self.pictures.write(conn, locked, [ready[id(e)] for e in run])):
                    if outcome == FULL:
                        entry.reason = "the instance is full (capacity reached); the picture was not added"
                        failed.append(entry)
                    else:
                        counts["replaced" if outcome == REPLACED else "added"] += 1
                run.clear()

            for entry in entries:
                if id(entry) in ready:
                    run.append(entry)
                elif entry.reason is None and isinstance(entry.operation, Delete):
                    flush()  # the ADDs before a DELETE are written before it: file order
                    counts["deleted"] += len(self.pictures.remove(conn, locked, entry.operation.product_id,
                                                                  entry.operation.pic_name))
            flush()
            failed.sort(key=lambda entry: entry.line.number)
            room = max(MAX_REPORTED_LINES - self.progress.failed, 0)  # past it, failed lines are only counted
            task_store.add_errors(conn, self.task.id,
                                  [(e.line.number, e.line.content(), e.reason) for e in failed[:room]])
            progress = self._advanced(entries[-1].line, len(failed), counts, time.perf_counter() - began)
            last = entries[-1].line
            self.lease.checkpoint(conn, {**self.checkpoint, "line": last.number, "offset": last.end}, progress)
        if self._report:
            log.info("task %s: %d of %d lines, %.1f pictures/s", self.task.id, self.progress.done, self.progress.total,
                     self.progress.pictures_per_second)

    def _advanced(self, last: Line, failed: int, counts: dict, write_seconds: float) -> dict:
        """The progress after this chunk. If its transaction then fails the task stops, and its next run
        starts from the progress saved with the last checkpoint."""
        p = self.progress
        self._written += counts["added"] + counts["replaced"]
        with self._timing:
            p.seconds.write += write_seconds
            p.done, p.failed = last.number, p.failed + failed
            p.added, p.replaced, p.deleted = (p.added + counts["added"], p.replaced + counts["replaced"],
                                              p.deleted + counts["deleted"])
            p.pictures_per_second = round(self._written / max(time.monotonic() - self._began, 1e-6), 2)
            return p.as_dict()
