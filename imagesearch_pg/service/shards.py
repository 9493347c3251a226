"""Shards: other PostgreSQL servers that hold some instances' pictures (docs/scaling.md). An instance is
placed on a shard when it is created (create_instance(..., shard=NAME)); its table and indexes are made
there, and this database reaches them through postgres_fdw, searches included."""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service import validation
from imagesearch_pg.store import shards as shard_store
from imagesearch_pg.store.database import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class Shards:
    def __init__(self, database: Database):
        self.database = database

    def add(self, name: str, url: str) -> None:
        """Register the server at ``url`` (postgresql://user:password@host:port/dbname; a Unix socket folder as
        ?host=/path) as shard ``name``: a postgres_fdw server with its login, pgvector and the service's HNSW
        settings there. Needs a user of this database who may create extensions and foreign servers."""
        _check_name(name)
        validation.text("url", url, min_len=1, max_len=2000, required=True)
        try:
            parsed = make_url(url)
            port = parsed.port or 5432
        except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
            parsed = None
        if parsed is None or parsed.get_backend_name() != "postgresql":
            raise InvalidParameter("the shard's URL must look like postgresql://user:password@host:5432/dbname")
        if not 1 <= port <= 65535:
            raise InvalidParameter(f"the shard's port must be 1-65535, got {port}")
        host = parsed.query.get("host") or parsed.host
        if isinstance(host, tuple) or not host:
            raise InvalidParameter("the shard's URL must name one host (or ?host=/socket/folder)")
        try:
            with self.database.transaction() as conn:
                if name in shard_store.names(conn):
                    raise InvalidParameter(f"a shard named {name!r} already exists")
                shard_store.add(conn, name, host, port, parsed.database or "postgres",
                                parsed.username or "postgres", parsed.password)
        except sa.exc.DBAPIError as exc:  # unreachable, refused the login, no rights here: nothing kept
            # Only the server's first line, never the statement or its parameters (the password is one).
            reason = str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
            if getattr(exc.orig, "sqlstate", None) == "22023":
                raise InvalidParameter(reason) from None
            raise InvalidParameter(f"the shard {name} could not be added: {reason}") from None
        log.info("shard added", extra={"shard": name, "host": host})

    def drop(self, name: str) -> None:
        """Forget a shard that holds no instance (its server keeps whatever tables it has)."""
        _check_name(name)
        with self.database.transaction() as conn:
            if name not in shard_store.names(conn):
                raise InvalidParameter(f"no shard named {name!r}")
            held = shard_store.instances_on(conn, name)
            if held:
                raise InvalidParameter(f"shard {name!r} holds instances ({', '.join(held[:5])}); delete them first")
            shard_store.drop(conn, name)

    def listing(self) -> list[dict]:
        with self.database.reading() as conn:
            return shard_store.listing(conn)


def _check_name(name: str) -> None:
    validation.text("shard", name, min_len=1, max_len=40, required=True)
    if not _NAME.fullmatch(name):
        raise InvalidParameter("a shard's name is 1-40 of a-z, 0-9 and _, starting with a letter; got "
                               f"{name[:60]!r}")
