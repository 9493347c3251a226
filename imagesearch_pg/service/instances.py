"""Instances: create, list, describe, delete, clear; their request plans; the per-process cache of their
immutable facts that every read uses."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

import sqlalchemy as sa

from imagesearch_pg.errors import MissingParameter, InvalidInstance, InvalidParameter
from imagesearch_pg.service import validation
from imagesearch_pg.service.encoders import EncoderCatalog
from imagesearch_pg.service.models import Instance
from imagesearch_pg.service.throttling import ADD_PER_SECOND, DELETE_PER_SECOND, Throttle
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.store import encoders as encoder_store
from imagesearch_pg.store import instances as instance_store
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store import shards as shard_store
from imagesearch_pg.store.database import Database, PartitionMissing
from imagesearch_pg.store.instances import InstanceRef
from imagesearch_pg.store.locks import waiting_briefly

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CAPACITY = 1_000_000
DEFAULT_QPS = 10
MAX_CAPACITY = 1_000_000_000
MAX_QPS = 100_000


class Instances:
    def __init__(self, database: Database, encoders: EncoderCatalog):
        self.database = database
        self.encoders = encoders
        self.throttle = Throttle(database)
        self._cache: dict[str, InstanceRef] = {}

    def create(
        self,
        name: str,
        service_type: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        qps: int = DEFAULT_QPS,
        region: str = "local",
        tags: dict | None = None,
        encoder: str | None = None,
        shard: str | None = None,
    ) -> Instance:
        """Create an instance; ``encoder`` defaults to the service type's. ``shard``: keep its pictures on
        that shard (imagesearch shard add) rather than in this database."""
        validation.instance_name(name)
        validation.service_type(service_type)
        encoder = SERVICE_TYPES[service_type].default_encoder if encoder is None else encoder
        validation.positive("capacity", capacity, MAX_CAPACITY)
        validation.positive("qps", qps, MAX_QPS)
        validation.text("region", region, max_len=64, required=True)
        validation.text("encoder", encoder, min_len=1, max_len=64, required=True)
        validation.text("shard", shard, min_len=1, max_len=40)
        with self.database.transaction() as conn:
            if shard is not None and shard not in shard_store.names(conn):
                known = ", ".join(shard_store.names(conn)) or "none (imagesearch shard add NAME URL)"
                raise InvalidParameter(f"no shard named {shard!r}; shards: {known}")
            dim = encoder_store.dim_of(conn, encoder)
            if dim is None:
                known = ", ".join(encoder_store.names(conn))
                raise InvalidParameter(f"encoder {encoder!r} is not registered; registered: {known}")
            values = dict(name=name, service_type=service_type, capacity=capacity, qps=qps, region=region,
                          tags=tags or {}, status="active", encoder=encoder, embedding_dim=dim, shard=shard)
            silhouettes = self.encoders.get(encoder).silhouettes
            # Its partition is attached to imagesearch.pictures, which any open read of the pictures may hold.
            created = waiting_briefly(conn, lambda: instance_store.insert(conn, values, silhouettes=silhouettes),
                                      f"creating instance {name!r}")
            if created is None:
                raise InvalidParameter(f"an instance named {name!r} already exists")
        log.info("instance created", extra={"instance": name, "service_type": service_type})
        return self.describe(name)

    def listing(self) -> list[Instance]:
        with self.database.reading() as conn:
            return [Instance(**row) for row in instance_store.public_rows(conn)]

    def describe(self, name: str) -> Instance:
        _check_name(name)
        with self.database.reading() as conn:
            rows = instance_store.public_rows(conn, name)
        if not rows:
            raise _missing(name)
        return Instance(**rows[0])

    def delete(self, name: str, *, end_sessions: bool = False) -> None:
        """``end_sessions``: if open transactions keep it busy, end their sessions (see clear)."""
        self._change(name, "deleting", lambda conn: instance_store.delete(conn, self.locked(conn, name, "share").id),
                     end_sessions=end_sessions, remedy=f"imagesearch instance delete {name} --end-sessions")
        self._cache.pop(name, None)
        log.info("instance deleted", extra={"instance": name})

    def change_plan(self, name: str, *, capacity: int | None = None, qps: int | None = None) -> Instance:
        """A new capacity (never below the pictures it holds) and/or QPS."""
        if capacity is None and qps is None:
            raise MissingParameter("give a new capacity, a new QPS, or both")
        if capacity is not None:
            validation.positive("capacity", capacity, MAX_CAPACITY)
        if qps is not None:
            validation.positive("qps", qps, MAX_QPS)

        def change(conn: sa.Connection) -> None:
            instance = self.locked(conn, name, "exclusive")  # no add runs meanwhile
            if not instance_store.change_plan(conn, instance.id, capacity, qps):
                held = instance_store.picture_count(conn, instance.id)
                raise InvalidParameter(f"capacity {capacity} is below the {held} pictures instance {name!r} holds; "
                                       "delete pictures first")

        self._change(name, "changing the plan of", change)
        log.info("instance plan changed", extra={"instance": name})
        return self.describe(name)

    def renew(self, name: str, days: int | None) -> Instance:
        """``days`` (1-3650) more from the instance's expiry, or from now if it has expired; None: never."""
        if days is not None:
            validation.positive("days", days, 3650)
        self._change(name, "renewing",
                     lambda conn: instance_store.renew(conn, self.locked(conn, name, "share").id, days))
        return self.describe(name)

    def clear(self, name: str, *, end_sessions: bool = False) -> None:
        """Delete every picture of the instance at once (the instance stays). ``end_sessions``: if open
        transactions keep it busy (a client that searched it and stays in its transaction), end the sessions
        that hold the locks it needs, each logged (store/locks.py), and clear it."""
        # No add or delete of this instance runs meanwhile (they take a key-share lock).
        self._change(name, "clearing",
                     lambda conn: picture_store.delete_all(conn, self.locked(conn, name, "exclusive").id),
                     end_sessions=end_sessions, remedy=f"imagesearch instance clear {name} --end-sessions")
        log.info("instance cleared", extra={"instance": name})

    def _change(self, name: str, doing: str, change: Callable[[sa.Connection], None], *,
                end_sessions: bool = False, remedy: str | None = None) -> None:
        """``change(conn)`` in a transaction of its own, waiting only briefly for each lock it takes (the
        instance's row, its partition, and for a delete imagesearch.pictures itself): a transaction left open
        elsewhere makes it InstanceBusy rather than a queue that every later search joins, or with
        ``end_sessions`` is ended (store/locks.py)."""
        with self.database.transaction() as conn:
            waiting_briefly(conn, lambda: change(conn), f"{doing} instance {name!r}", remedy=remedy,
                            end_sessions=end_sessions)

    def admit(self, name: str, kind: str) -> None:
        """Count a request of ``kind`` (add, delete or search) against the instance's rate; raises Throttling
        over it. Searches get the instance's QPS plan; adds and deletes the hosted service's defaults."""
        instance = self.cached(name)
        limit = {"add": ADD_PER_SECOND, "delete": DELETE_PER_SECOND, "search": None}[kind]  # None: the plan now
        self.throttle.admit(instance.id, kind, limit)

    def locked(self, conn: sa.Connection, name: str, lock: str) -> InstanceRef:
        """The instance as it is now, locked for a write in ``conn`` (see store.instances.find)."""
        _check_name(name)
        instance = instance_store.find(conn, name, lock=lock)
        if instance is None:
            raise _missing(name)
        return instance

    def cached(self, name: str) -> InstanceRef:
        """The instance's immutable facts (id, type, encoder, dimension), cached for reads.

        A cached entry can only be stale if the instance was deleted (and perhaps re-created under a new
        id, ids are never reused); reads then find its partition gone and come back through read().
        """
        cached = self._cache.get(name)
        if cached is None:
            cached = self._cache[name] = self.current(name)
        return cached

    def current(self, name: str) -> InstanceRef:
        """The instance as it is now (not cached)."""
        _check_name(name)
        with self.database.reading() as conn:
            instance = instance_store.find(conn, name)
        if instance is None:
            raise _missing(name)
        return instance

    def read(self, name: str, work: Callable[[sa.Connection, InstanceRef], T]) -> T:
        """Run a read of the instance's pictures on an autocommit connection (no locks), of a replica that
        has the instance's last write if there is one (store/replicas.py)."""
        for attempt in (1, 2):
            instance = self.cached(name)
            try:
                return self.database.read_pictures(instance.id, lambda conn: work(conn, instance))
            except PartitionMissing:
                self._cache.pop(name, None)  # deleted meanwhile: look it up again
                if attempt == 2:
                    raise _missing(name) from None
        raise AssertionError("unreachable")


def _check_name(name: str) -> None:
    validation.text("InstanceName", name, min_len=1, max_len=64, required=True)


def _missing(name: str) -> InvalidInstance:
    return InvalidInstance(f"no instance named {str(name)[:80]!r}")
