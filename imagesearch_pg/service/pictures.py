"""Pictures: add (or replace), update attributes, delete, check; each write in one transaction."""

from __future__ import annotations

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.errors import InstanceStatusError, InvalidParameter, MissingParameter, NoSpecifiedSearchPic
from imagesearch_pg.service import validation
from imagesearch_pg.service.instances import Instances
from imagesearch_pg.service.models import DeleteResult, Match, PicInfo
from imagesearch_pg.service.picture_pipeline import PicturePipeline, category
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.filters import parse_filter
from imagesearch_pg.store.instances import count_added
from imagesearch_pg.vision import descriptors


class Pictures:
    def __init__(self, instances: Instances, pipeline: PicturePipeline):
        self.instances = instances
        self.database = instances.database
        self.pipeline = pipeline

    def add(self, instance_name: str, product_id: str, pic_name: str, picture: bytes, *,
            category_id: int | None = None, crop: bool = True, region: str | None = None,
            attributes: Attributes | None = None) -> PicInfo:
        """Store a picture under (product_id, pic_name), replacing any picture stored under that pair."""
        instance = self.instances.current(instance_name)  # a write works with fresh facts
        validation.picture_key(product_id, pic_name)
        values = validation.attributes(attributes or Attributes())
        given = validation.category(instance.service_type, category_id)
        prepared = self.pipeline.prepare(instance, picture, crop=crop, region=region, query=False, keypoints=True)
        pic_info = prepared.pic_info(category(self.instances, instance, prepared, given))
        description = prepared.description
        keypoints = None if prepared.keypoints is None else descriptors.pack_local(prepared.keypoints.result())
        with self.database.transaction() as conn:
            # The locked row, not the cached one: it is the instance that exists now.
            locked = self.instances.locked(conn, instance_name, "share")
            inserted = picture_store.upsert(
                conn,
                locked.id,
                {
                    "product_id": product_id,
                    "pic_name": pic_name,
                    "category_id": pic_info.category_id,
                    "category_given": given is not None,
                    "region": pic_info.region,
                    **values,
                },
                description.embedding,
                None if description.silhouettes is None else description.silhouettes[0],
                keypoints,
            )
            if inserted and not count_added(conn, locked.id, 1, within_capacity=True):
                # raising rolls the insert back: nothing is written
                raise InstanceStatusError(
                    f"instance {instance_name!r} is full (its capacity is reached); delete pictures first, "
                    "or replace existing ones (same ProductId and PicName)"
                )
        return pic_info

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
            validation.picture_key(product_id, pic_name, pic_name_required=False)
        with self.database.transaction() as conn:
            instance = self.instances.locked(conn, instance_name, "share")
            if filter is not None:
                return DeleteResult(picture_store.delete_matching(conn, instance.id, parsed))
            return DeleteResult(picture_store.delete(conn, instance.id, product_id, pic_name))

    def check(self, instance_name: str, product_id: str, pic_name: str) -> Match | None:
        """The stored picture's attributes (as a match without score), or None if it is not stored."""
        validation.picture_key(product_id, pic_name)
        row = self.instances.read(
            instance_name, lambda conn, instance: picture_store.stored(conn, instance.id, product_id, pic_name)
        )
        return None if row is None else Match.from_row(row, None)

