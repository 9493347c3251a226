"""Pictures: add (or replace), update attributes, delete, check; each write in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.errors import InstanceStatusError, InvalidParameter, MissingParameter, NoSpecifiedSearchPic
from imagesearch_pg.service import validation
from imagesearch_pg.service.instances import Instances
from imagesearch_pg.service.models import DeleteResult, Match, PicInfo
from imagesearch_pg.service.picture_pipeline import PicturePipeline, Prepared, category
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.filters import parse_filter
from imagesearch_pg.store.instances import InstanceRef, admit_new, record_write
from imagesearch_pg.store.tables import key_digest
from imagesearch_pg.vision import descriptors


ADDED, REPLACED, FULL = "added", "replaced", "full"  # what write() did with each picture


@dataclass(frozen=True)
class CheckedAdd:
    """An add's key and values, checked (validation) before its picture is looked at."""

    values: dict  # product_id, pic_name and the attribute columns
    given_category: int | None


@dataclass(frozen=True)
class NewPicture:
    """A picture ready to write: its columns (vectors included) and what AddImage answers about it."""

    row: dict
    pic_info: PicInfo

    @property
    def digest(self) -> bytes:
        return key_digest(self.row["product_id"], self.row["pic_name"])


class Pictures:
    """AddImage's steps are methods of their own (check_add, ready, write) so that a batch task takes each
    line through the same ones, many pictures at a time."""

    def __init__(self, instances: Instances, pipeline: PicturePipeline):
        self.instances = instances
        self.database = instances.database
        self.pipeline = pipeline

    def add(self, instance_name: str, product_id: str, pic_name: str, picture: bytes, *,
            category_id: int | None = None, crop: bool = True, region: str | None = None,
            attributes: Attributes | None = None) -> PicInfo:
        """Store a picture under (product_id, pic_name), replacing any picture stored under that pair."""
        instance = self.instances.current(instance_name)  # a write works with fresh facts
        checked = self.check_add(instance, product_id, pic_name, category_id, attributes)
        prepared = self.pipeline.prepare(instance, picture, crop=crop, region=region, query=False, keypoints=True)
        new = self.ready(instance, checked, prepared)
        with self.database.transaction() as conn:
            # The locked row, not the cached one: it is the instance that exists now.
            locked = self.instances.locked(conn, instance_name, "share")
            if self.write(conn, locked, [new]) == [FULL]:
                raise full(instance_name)
        return new.pic_info

    def check_add(self, instance: InstanceRef, product_id: str, pic_name: str, category_id: int | None,
              attributes: Attributes | None) -> CheckedAdd:
        validation.picture_key(product_id, pic_name)
        values = validation.attributes(attributes or Attributes())
        given = validation.category(instance.service_type, category_id)
        return CheckedAdd({"product_id": product_id, "pic_name": pic_name, **values}, given)

    def ready(self, instance: InstanceRef, checked: CheckedAdd, prepared: Prepared) -> NewPicture:
        """The picture's category (which reads the instance's labelled pictures) and its columns."""
        pic_info = prepared.pic_info(category(self.instances, instance, prepared, checked.given_category))
        description = prepared.description
        keypoints = None if prepared.keypoints is None else descriptors.pack_local(prepared.keypoints.result())
        return NewPicture(
            {
                **checked.values,
                "category_id": pic_info.category_id,
                "category_given": checked.given_category is not None,
                "region": pic_info.region,
                "embedding": description.embedding,
                "silhouette": None if description.silhouettes is None else description.silhouettes[0],
                "keypoints": keypoints,
                "thumbnail": prepared.thumbnail,
            },
            pic_info,
        )

    def write(self, conn: sa.Connection, locked: InstanceRef, pictures: list[NewPicture]) -> list[str]:
        """Write pictures of the instance (its row locked by the caller) in one statement, in order: of two
        with one key the later wins. A new picture past the capacity is not written (FULL); the others are
        ADDED or REPLACED. The kept count ends exact even when other writers add or delete meanwhile."""
        last = {new.digest: at for at, new in enumerate(pictures)}  # in order of first appearance
        kept = [pictures[at] for at in last.values()]
        stored = picture_store.stored_digests(conn, locked.id, list(last))
        expected_new = [new.digest for new in kept if new.digest not in stored]
        room = admit_new(conn, locked.id, len(expected_new))
        refused = set(expected_new[room:])  # the first ones in file order get the room there is
        written = [new for new in kept if new.digest not in refused]
        inserted = picture_store.upsert_many(conn, locked.id, [new.row for new in written])
        # Another writer may have added or deleted one of these keys since they were looked up.
        admitted = set(expected_new[:room])
        correction = len(inserted - admitted) - len(admitted - inserted)
        record_write(conn, locked.id, correction)
        return [FULL if new.digest in refused else ADDED if new.digest in inserted and last[new.digest] == at
                else REPLACED for at, new in enumerate(pictures)]

    def update(self, instance_name: str, product_id: str, pic_name: str, attributes: Attributes) -> None:
        """Change a stored picture's attributes (those given, not None); its vectors stay as they are."""
        validation.picture_key(product_id, pic_name)
        values = {name: value for name, value in validation.attributes(attributes).items() if value is not None}
        if not values:
            raise MissingParameter("nothing to update: give CustomContent, IntAttr..IntAttr4 or StrAttr..StrAttr4")
        with self.database.transaction() as conn:
            instance = self.instances.locked(conn, instance_name, "share")
            if not picture_store.update_attributes(conn, instance.id, product_id, pic_name, values):
                raise NoSpecifiedSearchPic(f"no picture with ProductId {product_id!r} and PicName {pic_name!r}")

    def delete(self, instance_name: str, product_id: str | None = None, pic_name: str | None = None, *,
               filter: str | None = None) -> DeleteResult:
        """Delete every picture of ``product_id``, or only ``pic_name`` of it, or every picture matching
        ``filter`` (IsDeleteByFilter); returns the deleted PicNames."""
        if filter is not None:
            if product_id is not None or pic_name is not None:
                raise InvalidParameter("a delete by Filter takes no ProductId or PicName")
            parsed = parse_filter(filter)
        else:
            check_delete(product_id, pic_name)
        with self.database.transaction() as conn:
            instance = self.instances.locked(conn, instance_name, "share")
            if filter is not None:
                return DeleteResult(picture_store.delete_matching(conn, instance.id, parsed))
            return DeleteResult(self.remove(conn, instance, product_id, pic_name))

    def remove(self, conn: sa.Connection, locked: InstanceRef, product_id: str, pic_name: str | None) -> list[str]:
        """Delete a checked (check_delete) product's pictures, or one of them, in the caller's transaction."""
        return picture_store.delete(conn, locked.id, product_id, pic_name)

    def thumbnail(self, instance_name: str, product_id: str, pic_name: str) -> bytes | None:
        """The stored picture's thumbnail (JPEG), or None if it is not stored or was stored without one."""
        validation.picture_key(product_id, pic_name)
        return self.instances.read(
            instance_name, lambda conn, instance: picture_store.thumbnail(conn, instance.id, product_id, pic_name)
        )

    def check(self, instance_name: str, product_id: str, pic_name: str) -> Match | None:
        """The stored picture's attributes (as a match without score), or None if it is not stored."""
        validation.picture_key(product_id, pic_name)
        row = self.instances.read(
            instance_name, lambda conn, instance: picture_store.stored(conn, instance.id, product_id, pic_name)
        )
        return None if row is None else Match.from_row(row, None)



def check_delete(product_id: str, pic_name: str | None) -> None:
    validation.picture_key(product_id, pic_name, pic_name_required=False)


def full(instance_name: str) -> InstanceStatusError:
    return InstanceStatusError(
        f"instance {instance_name!r} is full (its capacity is reached); delete pictures first, "
        "or replace existing ones (same ProductId and PicName)"
    )
