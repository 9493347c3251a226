"""ImageSearch: the one object every door calls (HTTP, CLI, benchmarks, and the coming worker and console).

It opens the process's resources, answers for the process (health, model warm-up), and hands each
operation to the area that owns it (instances, encoders, pictures, searching, access keys), turning
keyword arguments into requests on the way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.config import Settings
from imagesearch_pg.errors import DatabaseUnavailable
from imagesearch_pg.service.access_keys import AccessKeys, secret_box
from imagesearch_pg.service.shards import Shards
from imagesearch_pg.service.console_users import ConsoleUsers
from imagesearch_pg.service.encoders import EncoderCatalog
from imagesearch_pg.service.instances import DEFAULT_CAPACITY, DEFAULT_QPS, Instances
from imagesearch_pg.service.models import DeleteResult, Instance, Match, PicInfo, SearchResult
from imagesearch_pg.service.picture_pipeline import PicturePipeline
from imagesearch_pg.service.pictures import Pictures
from imagesearch_pg.service.searching import SearchRequest, Searches
from imagesearch_pg.service.storage_locations import StorageLocations
from imagesearch_pg.service.tasks import Tasks
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.store.database import Database
from imagesearch_pg.vision.encoder_spec import EncoderSpec
from imagesearch_pg.vision.encoders import EncoderRegistry


@dataclass(frozen=True)
class Health:
    database: str  # "embedded", "external" or "unreachable"
    schema: str | None  # the schema revision, when reachable

    @property
    def ok(self) -> bool:
        return self.database != "unreachable"


class ImageSearch:
    def __init__(self, database: Database, encoders: EncoderRegistry, settings: Settings | None = None):
        # A search runs ONNX Runtime, OpenCV and PostgreSQL side by side on few cores. OpenBLAS's worker
        # threads busy-wait after each matrix product (the re-ranking's) and slowed the next search's
        # network by a third (docs/benchmarks.md); the products here are small enough for one thread.
        threadpool_limits(limits=1, user_api="blas")
        self.database = database
        self.settings = settings or Settings.from_env()
        self.encoders = EncoderCatalog(database, encoders)
        self.instances = Instances(database, self.encoders)
        self.pipeline = PicturePipeline(self.encoders, encoders.cache_dir, encoders.threads,
                                        keep_originals=self.settings.keep_originals)
        self.pictures = Pictures(self.instances, self.pipeline)
        self.searches = Searches(self.instances, self.pipeline)
        self.storage = StorageLocations(database, self.settings)
        self.shards = Shards(database)
        self.console_users = ConsoleUsers(database)
        self.tasks = Tasks(self.instances, self.storage, self.settings)
        self._access_keys: AccessKeys | None = None
        self._lock = threading.Lock()

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
        return cls(database, EncoderRegistry(settings.model_cache, settings.onnx_threads), settings)

    def close(self) -> None:
        self.pipeline.close()
        self.database.close()

    @property
    def access_keys(self) -> AccessKeys:
        """The deployment's AccessKey pairs (their secret key is read or made on first use)."""
        if self._access_keys is None:  # every signed request asks: no lock once it is made
            with self._lock:
                if self._access_keys is None:
                    self._access_keys = AccessKeys(self.database, secret_box(self.settings))
        return self._access_keys

    # ---- the process --------------------------------------------------------------------------------

    def health(self) -> Health:
        try:
            revision = self.database.schema_revision()
        except DatabaseUnavailable:
            return Health("unreachable", None)
        return Health("embedded" if self.database.is_embedded else "external", revision)

    def warm_up(self) -> None:
        """Make the default models' files ready on disk (built once from packaged weights) without loading
        them: a server does this before it forks its workers. Fails clearly if a model's package is missing."""
        self.encoders.warm_up({rules.default_encoder for rules in SERVICE_TYPES.values()})
        self.pipeline.detector.model_path()

    # ---- instances and encoders ---------------------------------------------------------------------

    def create_instance(self, name: str, service_type: str, *, capacity: int = DEFAULT_CAPACITY,
                        qps: int = DEFAULT_QPS, region: str = "local", tags: dict | None = None,
                        encoder: str | None = None, shard: str | None = None) -> Instance:
        return self.instances.create(name, service_type, capacity=capacity, qps=qps, region=region, tags=tags,
                                     encoder=encoder, shard=shard)

    def list_instances(self) -> list[Instance]:
        return self.instances.listing()

    def describe_instance(self, name: str) -> Instance:
        return self.instances.describe(name)

    def delete_instance(self, name: str, *, end_sessions: bool = False) -> None:
        """The instance with its pictures and tasks, and its exports' files. ``end_sessions``: see
        clear_instance."""
        files = self.tasks.export_files(name)
        self.instances.delete(name, end_sessions=end_sessions)
        self.tasks.remove_files(files)

    def change_plan(self, name: str, *, capacity: int | None = None, qps: int | None = None) -> Instance:
        return self.instances.change_plan(name, capacity=capacity, qps=qps)

    def renew_instance(self, name: str, days: int | None) -> Instance:
        return self.instances.renew(name, days)

    def clear_instance(self, name: str, *, end_sessions: bool = False) -> None:
        """``end_sessions``: where open transactions keep the instance busy, end the sessions that hold the
        locks it needs (each logged) rather than answer InstanceBusy."""
        self.instances.clear(name, end_sessions=end_sessions)

    def admit(self, instance_name: str, kind: str) -> None:
        """Count a request (add, delete or search) against the instance's rate; Throttling over it."""
        self.instances.admit(instance_name, kind)

    def register_encoder(self, spec_path: Path) -> EncoderSpec:
        return self.encoders.register(spec_path)

    def list_encoders(self) -> list[dict]:
        return self.encoders.listing()

    # ---- pictures -----------------------------------------------------------------------------------

    def add_image(self, instance_name: str, product_id: str, pic_name: str, picture: bytes, *,
                  category_id: int | None = None, crop: bool = True, region: str | None = None,
                  attributes: Attributes | None = None) -> PicInfo:
        return self.pictures.add(instance_name, product_id, pic_name, picture, category_id=category_id, crop=crop,
                                 region=region, attributes=attributes)

    def update_image(self, instance_name: str, product_id: str, pic_name: str, attributes: Attributes) -> None:
        self.pictures.update(instance_name, product_id, pic_name, attributes)

    def delete_image(self, instance_name: str, product_id: str | None = None, pic_name: str | None = None, *,
                     filter: str | None = None) -> DeleteResult:
        return self.pictures.delete(instance_name, product_id, pic_name, filter=filter)

    def check_image_exists(self, instance_name: str, product_id: str, pic_name: str) -> Match | None:
        return self.pictures.check(instance_name, product_id, pic_name)

    # ---- searching ----------------------------------------------------------------------------------

    def search_by_picture(self, instance_name: str, picture: bytes, *, num: int = 10, start: int = 0,
                          category_id: int | None = None, crop: bool = True, region: str | None = None,
                          filter: str | None = None, score_threshold: float | None = None,
                          distinct_product_id: bool = False) -> SearchResult:
        request = SearchRequest(instance_name, num, start, filter, category_id, score_threshold, distinct_product_id)
        return self.searches.by_picture(request, picture, crop=crop, region=region)

    def search_by_name(self, instance_name: str, product_id: str, pic_name: str, *, num: int = 10, start: int = 0,
                       category_id: int | None = None, filter: str | None = None,
                       score_threshold: float | None = None, distinct_product_id: bool = False) -> SearchResult:
        request = SearchRequest(instance_name, num, start, filter, category_id, score_threshold, distinct_product_id)
        return self.searches.by_name(request, product_id, pic_name)

    def search_by_vector(self, instance_name: str, vector, *, num: int = 10, start: int = 0,
                         category_id: int | None = None, filter: str | None = None,
                         score_threshold: float | None = None, distinct_product_id: bool = False) -> SearchResult:
        request = SearchRequest(instance_name, num, start, filter, category_id, score_threshold, distinct_product_id)
        return self.searches.by_vector(request, vector)

    def search_by_product(self, instance_name: str, product_id: str, *, num: int = 10, start: int = 0,
                          category_id: int | None = None, filter: str | None = None,
                          score_threshold: float | None = None, distinct_product_id: bool = False) -> SearchResult:
        request = SearchRequest(instance_name, num, start, filter, category_id, score_threshold, distinct_product_id)
        return self.searches.by_product(request, product_id)

    def search_by_text(self, instance_name: str, text: str, *, num: int = 10, start: int = 0,
                       filter: str | None = None, score_threshold: float | None = None,
                       distinct_product_id: bool = False) -> SearchResult:
        request = SearchRequest(instance_name, num, start, filter, None, score_threshold, distinct_product_id)
        return self.searches.by_text(request, text)

    def duplicate_pairs(self, instance_name: str, min_score: float, *, neighbours: int = 10) -> list:
        return self.searches.duplicate_pairs(instance_name, min_score, neighbours)

    def search_by_filter(self, instance_name: str, filter: str, *, num: int = 10, start: int = 0) -> SearchResult:
        return self.searches.by_filter(instance_name, filter, num=num, start=start)

    def compare_pictures(self, instance_name: str, primary: bytes, secondary: bytes) -> float:
        return self.searches.compare(instance_name, primary, secondary)
