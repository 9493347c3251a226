"""The worker's side of writing pictures from SQL (sql/0016_queue.sql, docs/sql.md).

Each item goes through AddImage's own steps (Pictures.check_add, the pipeline, ready, write), or
DeleteImage's, and ends done or failed with the API's Code and message; the batch of items is written in
one transaction with their outcomes, so a picture is stored exactly when its item says done.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from imagesearch_pg.attributes import MAX_CUSTOM_CONTENT, MAX_STR_ATTR, Attributes
from imagesearch_pg.errors import DatabaseUnavailable, ImageSearchError, InvalidParameter, NoSpecifiedSearchPic
from imagesearch_pg.logs import Every
from imagesearch_pg.service import validation
from imagesearch_pg.service.models import public_name
from imagesearch_pg.service.pictures import FULL, check_delete, full
from imagesearch_pg.storage import StorageUnavailable
from imagesearch_pg.store import picture_queue as queue_store
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.instances import InstanceRef
from imagesearch_pg.store.tables import instances
from imagesearch_pg.vision.intake import MAX_PICTURE_BYTES

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
CLAIMED = 16  # items taken at once: one transaction for a few encoder batches
_PRUNE = Every(600.0)  # an item whose worker died this many times (a picture that crashes it) fails
_ATTRIBUTE_KEYS = {public_name(name): name for name in Attributes.__dataclass_fields__}
ALLOWED_KEYS = (*_ATTRIBUTE_KEYS, "CategoryId", "Crop", "Region")  # as sql/0016_queue.sql lists them


@dataclass(frozen=True)
class QueuedAdd:
    attributes: Attributes
    category_id: int | None
    crop: bool
    region: str | None


def queued_add(service_type: str, given) -> QueuedAdd:
    """An item's attributes (a JSON object under the API's names) checked as the API checks them, in the
    order sql/0016_queue.sql's check_queued_attributes checks them, with its messages."""
    if not isinstance(given, dict):
        kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(given), "null")
        raise InvalidParameter(f"attributes must be a JSON object of {', '.join(ALLOWED_KEYS)}, got {kind}")
    values: dict = {}
    for key in sorted(given):
        value = given[key]
        if key not in ALLOWED_KEYS:
            raise InvalidParameter(f"unknown attribute {key!r}; allowed: {', '.join(ALLOWED_KEYS)}")
        if value is None:
            continue
        if key.startswith("IntAttr"):
            validation.int32(key, value)
        elif key.startswith("StrAttr") or key in ("CustomContent", "Region"):
            if not isinstance(value, str):
                raise InvalidParameter(f"{key} must be a string")
            if key != "Region":
                validation.text(key, value, max_len=MAX_CUSTOM_CONTENT if key == "CustomContent" else MAX_STR_ATTR)
        elif key == "Crop" and not isinstance(value, bool):
            raise InvalidParameter("Crop must be true or false")
        elif key == "CategoryId":
            validation.category(service_type, value)
        values[key] = value
    attributes = Attributes(**{_ATTRIBUTE_KEYS[key]: value for key, value in values.items() if key in _ATTRIBUTE_KEYS})
    category_id = values.get("CategoryId") if service_type == "product" else None
    return QueuedAdd(attributes, category_id, values.get("Crop", True), values.get("Region"))


class _Outcomes(dict):
    def fail(self, item: queue_store.QueuedItem, exc: ImageSearchError) -> None:
        self[item.id] = (exc.code, exc.message)


def process_pending(service, limit: int = CLAIMED) -> int:
    """Take the next instance's first ``limit`` pending items through to done or failed; returns how many
    items were finished (0: nothing to do that another worker is not doing)."""
    with service.database.engine.connect() as conn:
        conn.commit()  # the session lock below outlives the transactions
        instance_id = queue_store.lock_next_instance(conn)
        conn.commit()
        if instance_id is None:
            return 0
        try:
            items = queue_store.attempt(conn, instance_id, limit)
            conn.commit()
            if not items:
                return 0
            with conn.begin():
                _apply(service, conn, instance_id, items)
            return len(items)
        finally:
            try:
                queue_store.release(conn, instance_id)
                conn.commit()
            except sa.exc.DBAPIError:
                pass  # the connection is gone, and its lock with it


def _apply(service, conn: sa.Connection, instance_id: int, items: list[queue_store.QueuedItem]) -> None:
    name = conn.execute(sa.select(instances.c.name).where(instances.c.id == instance_id)).scalar_one()
    locked = service.instances.locked(conn, name, "share")
    outcomes = _Outcomes()
    for item in items:
        if item.attempts > MAX_ATTEMPTS:
            outcomes[item.id] = ("TooManyAttempts", f"the item was taken up {MAX_ATTEMPTS} times without finishing")
    ready = _prepare(service, locked, [item for item in items if item.operation == "add" and item.id not in outcomes],
                     outcomes)
    run: list[queue_store.QueuedItem] = []

    def flush():
        for item, written in zip(run, service.pictures.write(conn, locked, [ready[i.id] for i in run])):
            if written == FULL:
                outcomes.fail(item, full(name))
            else:
                outcomes[item.id] = None
        run.clear()

    for item in items:  # in the order they came: an add, then a delete of it, ends deleted
        if item.id in outcomes and item.id not in ready:
            continue
        if item.operation == "add":
            run.append(item)
            continue
        flush()
        try:
            if item.operation == "delete":
                check_delete(item.product_id, item.pic_name)
                service.pictures.remove(conn, locked, item.product_id, item.pic_name)
            else:
                _update(conn, locked, item)
            outcomes[item.id] = None
        except ImageSearchError as exc:
            outcomes.fail(item, exc)
    flush()
    queue_store.finish(conn, dict(outcomes))
    if _PRUNE:  # a scan of the done items: now and then, not with every batch
        queue_store.prune(conn)


def _update(conn: sa.Connection, locked: InstanceRef, item: queue_store.QueuedItem) -> None:
    """A synced row's attributes changed: set them all as the row has them now (a NULL clears one)."""
    validation.picture_key(item.product_id, item.pic_name)
    checked = queued_add(locked.service_type, item.attributes)
    values = validation.attributes(checked.attributes)
    named = {_ATTRIBUTE_KEYS[key] for key in item.attributes if key in _ATTRIBUTE_KEYS}
    if not picture_store.update_attributes(conn, locked.id, item.product_id, item.pic_name,
                                           {column: values[column] for column in named}):
        raise NoSpecifiedSearchPic(f"no picture with ProductId {item.product_id!r} and PicName {item.pic_name!r}")


def _prepare(service, instance: InstanceRef, adds: list[queue_store.QueuedItem], outcomes: _Outcomes) -> dict:
    """The adds' pictures read, checked, framed and described in batches of the encoder: item id -> the
    NewPicture to write; a failing item's outcome is recorded instead."""
    framed: list[tuple] = []
    for item in adds:
        try:
            add = queued_add(instance.service_type, item.attributes)
            checked = service.pictures.check_add(instance, item.product_id, item.pic_name, add.category_id,
                                                 add.attributes)
            data = item.picture if item.location is None else _read(service, instance, item)
            frame = service.pipeline.framed(instance, data, crop=add.crop, region=add.region)
            framed.append((item, checked, frame, data))
        except (DatabaseUnavailable, StorageUnavailable):
            raise  # not the item's fault: the batch is tried again later
        except ImageSearchError as exc:
            outcomes.fail(item, exc)
    ready = {}
    with ThreadPoolExecutor(2, thread_name_prefix="queue-keypoints") as pool:  # describe_many makes the batches
        prepared = service.pipeline.prepare_stored(instance, [frame for _, _, frame, _ in framed], pool,
                                                   [data for *_, data in framed])
        for (item, checked, _, _), picture in zip(framed, prepared):
            try:
                ready[item.id] = service.pictures.ready(instance, checked, picture)
            except ImageSearchError as exc:
                outcomes.fail(item, exc)
    return ready


def _read(service, instance: InstanceRef, item: queue_store.QueuedItem) -> bytes:
    """An item's picture from its storage location (a path relative to its root, checked as a batch's
    PicName is)."""
    location = service.storage.get(item.location, for_instance=instance.name)
    return location.folder("/").read(item.path, MAX_PICTURE_BYTES)
