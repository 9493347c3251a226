"""The operations users know: instances, add, search by picture or by stored picture, delete.

HTTP, CLI, console, batch tasks and benchmarks all call this class; it validates every input before it
touches anything, runs each write in one transaction, and returns plain objects.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import psycopg
import sqlalchemy as sa
from threadpoolctl import threadpool_limits

from imagesearch_pg import categories
from imagesearch_pg.config import Settings
from imagesearch_pg.errors import (
    InstanceStatusError,
    InvalidCategory,
    InvalidInstance,
    InvalidParameter,
    MissingParameter,
    NoSpecifiedSearchPic,
)
from imagesearch_pg.service import reranking, validation
from imagesearch_pg.service.throttling import ADD_PER_SECOND, DELETE_PER_SECOND, Throttle
from imagesearch_pg.service.models import (
    ATTRIBUTE_NAMES,
    Attributes,
    Auction,
    DeleteResult,
    Instance,
    PicInfo,
    SearchResult,
    protocol_name,
)
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.filters import parse_filter
from imagesearch_pg.store.database import Database
from imagesearch_pg.store.tables import INT_ATTRS, STR_ATTRS, encoders, instances
from imagesearch_pg.vision import category_prediction, descriptors, intake
from imagesearch_pg.vision.subject import SubjectDetector
from imagesearch_pg.vision.encoder_spec import EncoderSpec, EncoderSpecError
from imagesearch_pg.vision.encoders import (
    BUILTIN_ENCODERS,
    DEFAULT_ENCODERS,
    Description,
    Encoder,
    EncoderRegistry,
    OnnxEncoder,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CAPACITY = 1_000_000
DEFAULT_QPS = 10
MAX_CAPACITY = 1_000_000_000
MAX_QPS = 100_000


@dataclass(frozen=True)
class _InstanceRow:
    id: int
    name: str
    service_type: str
    encoder: str
    embedding_dim: int
    qps: int


@dataclass(frozen=True)
class _Query:
    """A picture made ready to search with or to store."""

    description: Description
    pic_info: PicInfo
    encoder: Encoder
    keypoints: Future | None  # of Encoder.keypoints(), computed meanwhile on another thread


class ImageSearch:
    def __init__(self, database: Database, encoders: EncoderRegistry):
        # A search runs ONNX Runtime, OpenCV and PostgreSQL side by side on few cores. OpenBLAS's worker
        # threads busy-wait after each matrix product (the re-ranking's) and slowed the next search's
        # network by a third (docs/benchmarks.md); the products here are small enough for one thread.
        threadpool_limits(limits=1, user_api="blas")
        self.database = database
        self.engine = database.engine
        self.encoder_registry = encoders
        self.subject_detector = SubjectDetector(encoders.cache_dir, encoders.threads)
        self._instances: dict[str, _InstanceRow] = {}
        self._encoder_specs: dict[str, EncoderSpec] = {}
        # Keypoints (OpenCV, which releases the GIL) are found while the database searches.
        self._background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keypoints")
        self.throttle = Throttle(self.engine)

    @classmethod
    def open(cls, settings: Settings | None = None) -> "ImageSearch":
        """Connect as configured, with the schema at head (see Database.ensure_schema)."""
        settings = settings or Settings.from_env()
        database = Database.connect(settings)
        try:
            database.ensure_schema()
        except Exception:
            database.close()
            raise
        return cls(database, EncoderRegistry(settings.model_cache, settings.onnx_threads))

    def close(self) -> None:
        self._background.shutdown()
        self.database.close()

    # ---- instances -------------------------------------------------------------------------------

    def create_instance(
        self,
        name: str,
        service_type: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        qps: int = DEFAULT_QPS,
        region: str = "local",
        tags: dict | None = None,
        encoder: str | None = None,
    ) -> Instance:
        """Create an instance; ``encoder`` defaults to the service type's (DEFAULT_ENCODERS)."""
        validation.instance_name(name)
        validation.service_type(service_type)
        encoder = DEFAULT_ENCODERS[service_type] if encoder is None else encoder
        validation.positive("capacity", capacity, MAX_CAPACITY)
        validation.positive("qps", qps, MAX_QPS)
        validation.text("region", region, max_len=64, required=True)
        validation.text("encoder", encoder, min_len=1, max_len=64, required=True)
        with self.engine.begin() as conn:
            dim = conn.execute(sa.select(encoders.c.dim).where(encoders.c.name == encoder)).scalar()
            if dim is None:
                known = conn.execute(sa.select(encoders.c.name).order_by(encoders.c.name)).scalars().all()
                raise InvalidParameter(f"encoder {encoder!r} is not registered; registered: {', '.join(known)}")
            created = conn.execute(
                sa.dialects.postgresql.insert(instances)
                .values(
                    name=name,
                    service_type=service_type,
                    capacity=capacity,
                    qps=qps,
                    region=region,
                    tags=tags or {},
                    status="active",
                    encoder=encoder,
                    embedding_dim=dim,
                )
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(instances.c.id)
            ).scalar()
            if created is None:
                raise InvalidParameter(f"an instance named {name!r} already exists")
            conn.execute(sa.select(sa.func.imagesearch.create_picture_partition(created)))
            if self._encoder(encoder).silhouettes:
                conn.execute(sa.select(sa.func.imagesearch.create_silhouette_index(created)))
        log.info("instance created", extra={"instance": name, "service_type": service_type})
        return self.describe_instance(name)

    def list_instances(self) -> list[Instance]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._instance_query().order_by(instances.c.name)).all()
        return [self._instance(row) for row in rows]

    def describe_instance(self, name: str) -> Instance:
        validation.text("InstanceName", name, min_len=1, max_len=64, required=True)
        with self.engine.connect() as conn:
            row = conn.execute(self._instance_query().where(instances.c.name == name)).first()
        if row is None:
            raise InvalidInstance(f"no instance named {str(name)[:80]!r}")
        return self._instance(row)

    def delete_instance(self, name: str) -> None:
        with self.engine.begin() as conn:
            instance = self._instance_row(conn, name, lock=True)
            conn.execute(sa.select(sa.func.imagesearch.drop_picture_partition(instance.id)))
            conn.execute(sa.delete(instances).where(instances.c.id == instance.id))
        self._instances.pop(name, None)
        log.info("instance deleted", extra={"instance": name})

    def admit(self, instance_name: str, kind: str) -> None:
        """Count a request of ``kind`` (add, delete or search) against the instance's rate; raises Throttling
        over it. Searches get the instance's QPS plan; adds and deletes the hosted service's defaults."""
        instance = self._cached_instance(instance_name)
        limit = {"add": ADD_PER_SECOND, "delete": DELETE_PER_SECOND, "search": instance.qps}[kind]
        self.throttle.admit(instance.id, kind, limit)

    # ---- encoders --------------------------------------------------------------------------------

    def register_encoder(self, spec_path: Path) -> EncoderSpec:
        """Register a user's ONNX encoder from its spec file, after running it once to check the spec."""
        try:
            spec = EncoderSpec.from_file(spec_path)
            OnnxEncoder(spec, self.encoder_registry.cache_dir, 1).check()
        except EncoderSpecError as exc:
            raise InvalidParameter(str(exc)) from None
        with self.engine.begin() as conn:
            added = conn.execute(
                sa.dialects.postgresql.insert(encoders)
                .values(name=spec.name, dim=spec.dim, spec=spec.to_dict())
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(encoders.c.name)
            ).scalar()
        if added is None:
            raise InvalidParameter(f"an encoder named {spec.name!r} is already registered")
        log.info("encoder registered", extra={"encoder": spec.name, "dim": spec.dim})
        return spec

    def list_encoders(self) -> list[dict]:
        """Every encoder an instance can use: name, dim, and the spec (None for built-in ones)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(encoders.c.name, encoders.c.dim, encoders.c.spec).order_by(encoders.c.name))
            return [dict(row._mapping) for row in rows]

    def _encoder(self, name: str) -> Encoder:
        if name in BUILTIN_ENCODERS:
            return self.encoder_registry.get(name)
        spec = self._encoder_specs.get(name)
        if spec is None:  # registered specs never change, so one read per process is enough
            with self.engine.connect() as conn:
                raw = conn.execute(sa.select(encoders.c.spec).where(encoders.c.name == name)).scalar_one()
            spec = self._encoder_specs.setdefault(name, EncoderSpec.from_dict(raw))
        return self.encoder_registry.get(name, spec)

    @staticmethod
    def _instance_query() -> sa.Select:
        return sa.select(*[c for c in instances.c if c.name != "id"])

    @staticmethod
    def _instance(row: sa.Row) -> Instance:
        return Instance(**row._mapping)

    @staticmethod
    def _instance_row(conn: sa.Connection, name: str, *, lock: bool = False, exclusive: bool = False) -> _InstanceRow:
        validation.text("InstanceName", name, min_len=1, max_len=64, required=True)
        query = sa.select(
            instances.c.id, instances.c.name, instances.c.service_type, instances.c.encoder, instances.c.embedding_dim,
            instances.c.qps,
        ).where(instances.c.name == name)
        # A key-share lock keeps the instance (and its partition) from being dropped under a write; an
        # ``exclusive`` one also waits for, and keeps out, every other write of the instance.
        if exclusive:
            query = query.with_for_update()
        elif lock:
            query = query.with_for_update(key_share=True)
        row = conn.execute(query).first()
        if row is None:
            raise InvalidInstance(f"no instance named {str(name)[:80]!r}")
        return _InstanceRow(*row)

    def _instance_by_name(self, name: str) -> _InstanceRow:
        with self.engine.connect() as conn:
            return self._instance_row(conn, name)

    # ---- pictures --------------------------------------------------------------------------------

    def add_image(
        self,
        instance_name: str,
        product_id: str,
        pic_name: str,
        picture: bytes | str,
        *,
        category_id: int | None = None,
        crop: bool = True,
        region: str | None = None,
        attributes: Attributes | None = None,
    ) -> PicInfo:
        """Store a picture under (product_id, pic_name), replacing any picture stored under that pair.

        ``picture`` is the file's bytes, or base64 text of them.
        """
        instance = self._instance_by_name(instance_name)
        validation.text("ProductId", product_id, min_len=1, max_len=512, required=True)
        validation.text("PicName", pic_name, min_len=1, max_len=512, required=True)
        values = _checked_attributes(attributes or Attributes())
        category = _checked_category(instance.service_type, category_id)
        query = self._prepare(
            instance, picture, crop=crop, region=region, category_id=category, for_query=False, keypoints=True
        )
        description = query.description
        keypoints = None if query.keypoints is None else query.keypoints.result()
        with self.engine.begin() as conn:
            # The locked row, not the one read before decoding: it is the instance that exists now.
            locked = self._instance_row(conn, instance_name, lock=True)
            inserted = picture_store.upsert(
                conn,
                locked.id,
                {
                    "product_id": product_id,
                    "pic_name": pic_name,
                    "category_id": query.pic_info.category_id,
                    "category_given": category is not None and instance.service_type == "product",
                    "region": query.pic_info.region,
                    **values,
                },
                description.embedding,
                None if description.silhouettes is None else description.silhouettes[0],
                None if keypoints is None else descriptors.pack_local(keypoints),
            )
            if inserted and not picture_store.count_added(conn, locked.id, 1, within_capacity=True):
                # raising rolls the insert back: nothing is written
                raise InstanceStatusError(
                    f"instance {instance_name!r} is full (its capacity is reached); delete pictures first, "
                    "or replace existing ones (same ProductId and PicName)"
                )
        return query.pic_info

    def delete_image(
        self,
        instance_name: str,
        product_id: str | None = None,
        pic_name: str | None = None,
        *,
        filter: str | None = None,
    ) -> DeleteResult:
        """Delete every picture of ``product_id``, or only ``pic_name`` of it, or every picture matching
        ``filter`` (IsDeleteByFilter); returns the deleted PicNames."""
        if filter is not None:
            if product_id is not None or pic_name is not None:
                raise InvalidParameter("a delete by Filter takes no ProductId or PicName")
            parsed = parse_filter(filter)
        else:
            validation.text("ProductId", product_id, min_len=1, max_len=512, required=True)
            validation.text("PicName", pic_name, min_len=1, max_len=512)
        with self.engine.begin() as conn:
            instance = self._instance_row(conn, instance_name, lock=True)
            if filter is not None:
                deleted = picture_store.delete_matching(conn, instance.id, parsed)
            else:
                deleted = picture_store.delete(conn, instance.id, product_id, pic_name)
            return DeleteResult(deleted)

    def clear_instance(self, instance_name: str) -> None:
        """Delete every picture of the instance at once (the instance stays)."""
        with self.engine.begin() as conn:
            # No add or delete of this instance runs meanwhile (they take a key-share lock).
            instance = self._instance_row(conn, instance_name, exclusive=True)
            picture_store.delete_all(conn, instance.id)
        log.info("instance cleared", extra={"instance": instance_name})

    def update_image(self, instance_name: str, product_id: str, pic_name: str, attributes: Attributes) -> None:
        """Change a stored picture's attributes (those given, not None); its vectors stay as they are."""
        validation.text("ProductId", product_id, min_len=1, max_len=512, required=True)
        validation.text("PicName", pic_name, min_len=1, max_len=512, required=True)
        values = {name: value for name, value in _checked_attributes(attributes).items() if value is not None}
        if not values:
            raise MissingParameter(
                "nothing to update: give CustomContent, IntAttr..IntAttr4 or StrAttr..StrAttr4"
            )
        with self.engine.begin() as conn:
            instance = self._instance_row(conn, instance_name, lock=True)
            if not picture_store.update_attributes(conn, instance.id, product_id, pic_name, values):
                raise NoSpecifiedSearchPic(f"no picture with ProductId {product_id!r} and PicName {pic_name!r}")

    def check_image_exists(self, instance_name: str, product_id: str, pic_name: str) -> Auction | None:
        """The stored picture's attributes (as a result without score), or None if it is not stored."""
        validation.text("ProductId", product_id, min_len=1, max_len=512, required=True)
        validation.text("PicName", pic_name, min_len=1, max_len=512, required=True)
        row = self._read(instance_name, lambda conn, instance: picture_store.stored(conn, instance.id, product_id, pic_name))
        return None if row is None else _auction(row, None)

    def search_by_filter(self, instance_name: str, filter: str, *, num: int = 10, start: int = 0) -> SearchResult:
        """Pictures whose attributes match ``filter``, ordered by ProductId then PicName, without scores."""
        began = time.perf_counter()
        if filter is None or filter == "":
            raise MissingParameter("Filter is required")
        validation.window(num, start)
        parsed = parse_filter(filter)

        def listing(conn, instance):
            rows = picture_store.listing(conn, instance.id, parsed, num, start)
            found = picture_store.count(conn, instance.id, parsed, None, False, validation.MAX_WINDOW)
            return rows, found

        rows, found = self._read(instance_name, listing)
        return SearchResult(
            docs_found=found,
            search_time_ms=round((time.perf_counter() - began) * 1000),
            auctions=[_auction(row, None) for row in rows],
        )

    def compare_pictures(self, instance_name: str, primary: bytes | str, secondary: bytes | str) -> float:
        """The Score two pictures would have if one were stored and the other searched with (0..1).

        Each is cut to its subject as AddImage and SearchImageByPic would; on trademark instances the best
        of the picture score and the silhouette score less the encoder's margin counts (without the geometric
        re-ranking)."""
        instance = self._cached_instance(instance_name)
        query = self._prepare(instance, primary, crop=True, region=None, category_id=categories.OTHER, for_query=True)
        stored = self._prepare(instance, secondary, crop=True, region=None, category_id=categories.OTHER, for_query=False)
        score = float(query.description.embedding @ stored.description.embedding)
        if query.description.silhouettes is not None and stored.description.silhouettes is not None:
            shapes = float((query.description.silhouettes @ stored.description.silhouettes.T).max())
            score = max(score, shapes - query.encoder.silhouette_margin)
        return min(1.0, max(0.0, score))

    # ---- search ----------------------------------------------------------------------------------

    def search_by_picture(
        self,
        instance_name: str,
        picture: bytes | str,
        *,
        num: int = 10,
        start: int = 0,
        category_id: int | None = None,
        crop: bool = True,
        region: str | None = None,
        filter: str | None = None,
        score_threshold: float | None = None,
        distinct_product_id: bool = False,
    ) -> SearchResult:
        """Search with a picture. A CategoryId (product instances) searches within that category; without
        one the category is predicted and reported in PicInfo, and every category is searched."""
        began = time.perf_counter()
        validation.window(num, start)
        threshold = validation.score_threshold(score_threshold)
        parsed = None if filter is None else parse_filter(filter)
        instance = self._cached_instance(instance_name)
        within = _search_category(instance.service_type, category_id)
        query = self._prepare(
            instance, picture, crop=crop, region=region, category_id=within, for_query=True, keypoints=True
        )
        description = query.description
        verified: dict = {}  # inliers by picture, kept over the passes of a long window (see _ranked)

        def fetch(conn, instance, limit, expected):
            if query.keypoints is None:
                return picture_store.nearest(
                    conn, instance.id, instance.embedding_dim, description.embedding, limit, parsed, within,
                    expected=expected,
                )
            rows = picture_store.nearest(
                conn, instance.id, instance.embedding_dim, description.embedding,
                max(limit, reranking.CANDIDATES), parsed, within, list(description.silhouettes),
                keypoints_for=reranking.CANDIDATES,
                silhouette_margin=query.encoder.silhouette_margin,
            )
            return reranking.rerank(rows, query.keypoints.result(), verified)[:limit]

        def search(conn, instance):
            return _ranked(conn, instance, fetch, start, num, threshold, distinct_product_id, parsed, within)

        return _result(self._read(instance_name, search), start, began, query.pic_info)

    def search_by_name(
        self,
        instance_name: str,
        product_id: str,
        pic_name: str,
        *,
        num: int = 10,
        start: int = 0,
        category_id: int | None = None,
        filter: str | None = None,
        score_threshold: float | None = None,
        distinct_product_id: bool = False,
    ) -> SearchResult:
        """Search with the vector of a stored picture (which finds itself first, unless filtered out)."""
        began = time.perf_counter()
        cached = self._cached_instance(instance_name)
        within = _search_category(cached.service_type, category_id)
        encoder = self._encoder(cached.encoder)
        validation.text("ProductId", product_id, min_len=1, max_len=512, required=True)
        validation.text("PicName", pic_name, min_len=1, max_len=512, required=True)
        validation.window(num, start)
        threshold = validation.score_threshold(score_threshold)
        parsed = None if filter is None else parse_filter(filter)

        def fetch(conn, instance, limit, expected):
            dim = instance.embedding_dim
            stored = picture_store.stored_embedding(instance.id, dim, product_id, pic_name)
            # The stored picture's own silhouette searches the others' (no re-ranking: its keypoints are
            # kept in one polarity only, and its own vectors already find copies of it).
            stored_silhouettes = (
                [picture_store.stored_silhouette(instance.id, dim, product_id, pic_name)]
                if encoder.silhouettes
                else None
            )
            rows = picture_store.nearest(
                conn, instance.id, dim, stored, limit, parsed, within, stored_silhouettes, expected=expected,
                silhouette_margin=encoder.silhouette_margin,
            )
            # A missing picture gives no query vector, hence rows without a score (or none at all).
            if (rows and rows[0].score is None) or (
                not rows and not picture_store.exists(conn, instance.id, product_id, pic_name)
            ):
                raise NoSpecifiedSearchPic(f"no picture with ProductId {product_id!r} and PicName {pic_name!r}")
            return rows

        def search(conn, instance):
            return _ranked(conn, instance, fetch, start, num, threshold, distinct_product_id, parsed, within)

        return _result(self._read(instance_name, search), start, began)

    def search_by_text(
        self,
        instance_name: str,
        text: str,
        *,
        num: int = 10,
        start: int = 0,
        filter: str | None = None,
        score_threshold: float | None = None,
        distinct_product_id: bool = False,
    ) -> SearchResult:
        """Search with a phrase, on an instance whose encoder has a text model (its spec's [text] table)."""
        began = time.perf_counter()
        validation.text("Text", text, min_len=1, max_len=512, required=True)
        validation.window(num, start)
        threshold = validation.score_threshold(score_threshold)
        parsed = None if filter is None else parse_filter(filter)
        instance = self._cached_instance(instance_name)
        encoder = self._encoder(instance.encoder)
        text_encoder = encoder.text_encoder()
        if text_encoder is None:
            raise InvalidParameter(
                f"instance {instance_name!r} uses encoder {instance.encoder!r}, which has no text model: "
                "SearchImageByText needs an instance whose encoder spec has a [text] table"
            )
        embedding = text_encoder.encode(text)

        def fetch(conn, instance, limit, expected):
            return picture_store.nearest(
                conn, instance.id, instance.embedding_dim, embedding, limit, parsed, expected=expected
            )

        def search(conn, instance):
            return _ranked(conn, instance, fetch, start, num, threshold, distinct_product_id, parsed, None)

        return _result(self._read(instance_name, search), start, began)

    def _cached_instance(self, name: str) -> _InstanceRow:
        """The instance's immutable facts (id, type, encoder, dimension), cached for reads.

        A cached entry can only be stale if the instance was deleted (and perhaps re-created under a new
        id, ids are never reused); reads then find its partition gone and come back through _read.
        """
        cached = self._instances.get(name)
        if cached is None:
            with self.engine.connect() as conn:
                cached = self._instance_row(conn, name)
            self._instances[name] = cached
        return cached

    def _read(self, instance_name: str, work: Callable[[sa.Connection, _InstanceRow], T]) -> T:
        """Run a read on its own autocommit connection: no BEGIN/COMMIT round trips, no locks."""
        for attempt in (1, 2):
            instance = self._cached_instance(instance_name)
            try:
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    return work(conn, instance)
            except sa.exc.ProgrammingError as exc:
                if not isinstance(exc.orig, psycopg.errors.UndefinedTable) or attempt == 2:
                    raise
                self._instances.pop(instance_name, None)  # deleted meanwhile: look it up again
        raise AssertionError("unreachable")

    # ---- the picture path shared by add and search -----------------------------------------------

    def _prepare(
        self,
        instance: _InstanceRow,
        picture: bytes | str,
        *,
        crop: bool,
        region: str | None,
        category_id: int | None,
        for_query: bool,
        keypoints: bool = False,
    ) -> _Query:
        """The picture decoded, cut to its subject and described; with ``keypoints`` (and an encoder that
        has them) its local features are found meanwhile on another thread."""
        if picture is None or len(picture) == 0:
            raise MissingParameter("PicContent is required")
        data = intake.decode_base64(picture) if isinstance(picture, str) else bytes(picture)
        image = intake.read_picture(data, instance.service_type)
        height, width = image.shape[:2]
        if region:  # a given Region wins
            boxes = [intake.parse_region(region, width, height)]
        elif crop and instance.service_type != "fabric":  # fabric is texture: always the whole picture
            # On trademark instances the query's colour layers find a mark on a busy picture; salient-object
            # detection, which finds the photo's subject rather than the mark, would only add its cost.
            boxes = self.subject_detector.detect(image, saliency=instance.service_type != "trademark")
        else:
            boxes = [intake.whole_picture(image)]
        box = boxes[0]
        encoder = self._encoder(instance.encoder)
        description = encoder.describe(image, box, query=for_query)
        # Started after the network (which keeps both cores busy), so it overlaps the database's work.
        found = (
            self._background.submit(encoder.keypoints, image, box, query=for_query)
            if keypoints and encoder.silhouettes
            else None
        )
        if category_id is None and instance.service_type == "product":
            category_id = self._predict_category(instance.name, description.embedding, description.logits)
        category = categories.OTHER if category_id is None else category_id
        return _Query(
            description,
            PicInfo(category_id=category, region=box.to_region(), multi_region=[b.to_region() for b in boxes]),
            encoder,
            found,
        )

    def _predict_category(self, instance_name: str, embedding: np.ndarray, logits: np.ndarray | None) -> int:
        """The encoder's ImageNet logits fused with a vote of the instance's nearest user-labelled pictures."""
        neighbours = self._read(
            instance_name,
            lambda conn, instance: picture_store.labelled_neighbours(
                conn, instance.id, instance.embedding_dim, embedding, category_prediction.NEIGHBOURS
            ),
        )
        return category_prediction.predict_category(logits, neighbours)


def _checked_attributes(attributes: Attributes) -> dict:
    values = attributes.as_dict()
    validation.text("CustomContent", values["custom_content"], max_len=4096)
    for name in INT_ATTRS:
        validation.int32(protocol_name(name), values[name])
    for name in STR_ATTRS:
        validation.text(protocol_name(name), values[name], max_len=128)
    return values


def _checked_category(service_type: str, category_id: int | None) -> int | None:
    if service_type != "product":
        return categories.OTHER
    if category_id is None:
        return None
    if isinstance(category_id, bool) or not isinstance(category_id, int) or category_id not in categories.CATEGORIES:
        raise InvalidCategory(
            f"CategoryId {category_id!r} is not a category; allowed: {', '.join(map(str, categories.CATEGORIES))}"
        )
    return category_id


def _search_category(service_type: str, category_id: int | None) -> int | None:
    """The category a search is restricted to: a product instance's given CategoryId, else none (every
    picture of the other service types is in Other)."""
    checked = _checked_category(service_type, category_id)
    return checked if service_type == "product" else None


# A DistinctProductId search fetches more and more pictures until it has enough products; it gives up past
# this many (a product with thousands of near-identical pictures would otherwise cost a scan of them all).
MAX_DISTINCT_FETCH = 20_000


def _ranked(conn, instance, fetch, start: int, num: int, threshold: float | None, distinct: bool,
            filter, category_id: int | None) -> tuple[list, int]:
    """The first ``start + num`` results of ``fetch(conn, instance, limit, expected)`` (rows best first) after
    the score threshold and DistinctProductId, and DocsFound: how many results there are, up to the 500 window.
    ``expected``, the planner's estimate of the matches, is asked once and serves the plan and the count."""
    expected = picture_store.estimate(conn, instance.id, filter, category_id)
    wanted = start + num
    # With a threshold every result above it must be seen to count them; scores descend, so the first
    # one below it ends the list.
    target = validation.MAX_WINDOW if threshold is not None else wanted
    limit = target
    while True:
        rows = fetch(conn, instance, limit, expected)
        kept = [row for row in rows if threshold is None or row.score >= threshold]
        ended = len(rows) < limit or len(kept) < len(rows)
        if distinct:
            seen: set[str] = set()
            kept = [row for row in kept if not (row.product_id in seen or seen.add(row.product_id))]
        if ended or len(kept) >= target or limit >= MAX_DISTINCT_FETCH:
            break
        limit = min(limit * 4, MAX_DISTINCT_FETCH)
    if threshold is not None or ended:
        docs_found = min(len(kept), validation.MAX_WINDOW)
    else:
        docs_found = picture_store.count(
            conn, instance.id, filter, category_id, distinct, validation.MAX_WINDOW, expected
        )
    return kept[:wanted], docs_found


def _auction(row, score: float | None) -> Auction:
    return Auction(
        product_id=row.product_id,
        pic_name=row.pic_name,
        category_id=row.category_id,
        score=score,
        attributes=Attributes(**{name: getattr(row, name) for name in ATTRIBUTE_NAMES}),
    )


def _result(ranked: tuple[list, int], start: int, began: float, pic_info: PicInfo | None = None) -> SearchResult:
    rows, docs_found = ranked
    auctions = [_auction(row, float(row.score)) for row in rows[start:]]
    return SearchResult(
        docs_found=docs_found,
        search_time_ms=round((time.perf_counter() - began) * 1000),
        auctions=auctions,
        pic_info=pic_info,
    )
