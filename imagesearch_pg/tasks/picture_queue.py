"""The worker's side of writing pictures from SQL (sql/0016_queue.sql, docs/sql.md).

Each item goes through AddImage's own steps (Pictures.check_add, the pipeline, ready, write), or
DeleteImage's, and ends done or failed with the API's Code and message; the batch of items is written in
one transaction with their outcomes, so a picture is stored exactly when its item says done.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from imagesearch_pg.attributes import MAX_CUSTOM_CONTENT, MAX_STR_ATTR, Attributes
from imagesearch_pg.errors import (DatabaseUnavailable, ImageSearchError, InvalidImageSize, InvalidParameter,
                                   MissingParameter, NoSpecifiedSearchPic)
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

MAX_ATTEMPTS = 5  # an item taken up this many times without finishing (it crashes its worker) fails
CLAIMED = 16  # items taken at once: one transaction for a few encoder batches
_PRUNE = Every(600.0)
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
    """Take the next instance's next pending items through to done or failed; returns how many items were
    finished (0: nothing to do that another worker is not doing)."""
    engine = service.database.engine
    with queue_store.claimed_instance(engine) as instance_id:
        if instance_id is None:
            return 0
        with engine.connect() as conn:
            gave_up = queue_store.give_up(conn, instance_id, MAX_ATTEMPTS)
            items = queue_store.attempt(conn, instance_id, limit)
            conn.commit()
            if items:
                with conn.begin():
                    _apply(service, conn, instance_id, items)
            return gave_up + len(items)


def _apply(service, conn: sa.Connection, instance_id: int, items: list[queue_store.QueuedItem]) -> None:
    name = conn.execute(sa.select(instances.c.name).where(instances.c.id == instance_id)).scalar_one()
    locked = service.instances.locked(conn, name, "share")
    outcomes = _Outcomes()
    given = {}  # item id -> its attributes
    for item in items:
        try:
            given[item.id] = _attributes(item)
        except ImageSearchError as exc:
            outcomes.fail(item, exc)
    adds = [item for item in items if item.operation == "add" and item.id not in outcomes]
    ready = _prepare(service, conn, locked, adds, given, outcomes)
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
                _update(conn, locked, item, given[item.id])
            outcomes[item.id] = None
        except ImageSearchError as exc:
            outcomes.fail(item, exc)
    flush()
    queue_store.finish(conn, dict(outcomes))
    if _PRUNE:  # a scan of the done items: now and then, not with every batch
        queue_store.prune(conn)


def _attributes(item: queue_store.QueuedItem):
    """An item's attributes as JSON values, once its texts are known to be whole (the store reads each
    only up to its bound)."""
    for label, value in (("ProductId", item.product_id), ("PicName", item.pic_name),
                         ("the storage location", item.location), ("the path", item.path)):
        if value is not None and len(value) > queue_store.TEXT_CHARS:
            raise InvalidParameter(f"{label} is longer than {queue_store.TEXT_CHARS} characters")
    if len(item.attributes) > queue_store.ATTRIBUTES_CHARS:
        raise InvalidParameter(f"the attributes are longer than {queue_store.ATTRIBUTES_CHARS} characters as JSON")
    try:
        return json.loads(item.attributes)
    except (RecursionError, ValueError):  # nested past Python's recursion limit; a number of thousands of digits
        raise InvalidParameter(f"the attributes cannot be read (nested too deeply, or a number too long): they must "
                               f"be a JSON object of {', '.join(ALLOWED_KEYS)} with plain values") from None


def _update(conn: sa.Connection, locked: InstanceRef, item: queue_store.QueuedItem, given) -> None:
    """A synced row's attributes changed: set them all as the row has them now (a NULL clears one)."""
    validation.picture_key(item.product_id, item.pic_name)
    checked = queued_add(locked.service_type, given)
    values = validation.attributes(checked.attributes)
    named = {_ATTRIBUTE_KEYS[key] for key in given if key in _ATTRIBUTE_KEYS}
    if not picture_store.update_attributes(conn, locked.id, item.product_id, item.pic_name,
                                           {column: values[column] for column in named}):
        raise NoSpecifiedSearchPic(f"no picture with ProductId {item.product_id!r} and PicName {item.pic_name!r}")


def _prepare(service, conn: sa.Connection, instance: InstanceRef, adds: list[queue_store.QueuedItem], given: dict,
             outcomes: _Outcomes) -> dict:
    """The adds' pictures read, checked, framed and described in batches of the encoder: item id -> the
    NewPicture to write; a failing item's outcome is recorded instead."""
    framed: list[tuple] = []
    for item in adds:
        try:
            add = queued_add(instance.service_type, given[item.id])
            checked = service.pictures.check_add(instance, item.product_id, item.pic_name, add.category_id,
                                                 add.attributes)
            data = _picture(service, conn, instance, item)
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


def _picture(service, conn: sa.Connection, instance: InstanceRef, item: queue_store.QueuedItem) -> bytes:
    """An add's picture: the item's own, read only when its size is within the API's limit; or from its
    storage location (a path relative to its root, checked as a batch's PicName is)."""
    if item.location is not None:
        location = service.storage.get(item.location, for_instance=instance.name)
        return location.folder("/").read(item.path, MAX_PICTURE_BYTES)
    if not item.picture_bytes:
        raise MissingParameter("PicContent is required")
    if item.picture_bytes > MAX_PICTURE_BYTES:
        raise InvalidImageSize(f"the picture is {item.picture_bytes} bytes; at most {MAX_PICTURE_BYTES} (4 MB) "
                               "are allowed")
    return queue_store.picture(conn, item.id)
