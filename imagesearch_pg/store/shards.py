"""Shards: other PostgreSQL servers that hold instances' pictures, as postgres_fdw foreign servers
(sql/0020_shards.sql makes the servers, the tables there and the foreign tables here)."""

from __future__ import annotations

import sqlalchemy as sa

from imagesearch_pg.store.tables import instances, shards


def add(conn: sa.Connection, name: str, host: str, port: int, dbname: str, user: str, password: str | None) -> None:
    conn.execute(sa.select(sa.func.imagesearch.add_shard(name, host, port, dbname, user, password)))


def drop(conn: sa.Connection, name: str) -> None:
    conn.execute(sa.select(sa.func.imagesearch.drop_shard(name)))


def names(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(shards.c.name).order_by(shards.c.name)).scalars())


def listing(conn: sa.Connection) -> list[dict]:
    """Each shard with its server's address (no login) and how many instances it holds."""
    options = sa.text("""
        SELECT s.name, s.created_at, count(i.id) AS instances,
               (SELECT string_agg(o, ' ' ORDER BY o) FROM unnest(f.srvoptions) o
                WHERE o LIKE 'host=%' OR o LIKE 'port=%' OR o LIKE 'dbname=%') AS address
        FROM imagesearch.shards s JOIN pg_foreign_server f ON f.srvname = s.server
        LEFT JOIN imagesearch.instances i ON i.shard = s.name
        GROUP BY s.name, s.created_at, f.srvoptions ORDER BY s.name""")
    return [dict(row._mapping) for row in conn.execute(options)]


def instances_on(conn: sa.Connection, name: str) -> list[str]:
    return list(conn.execute(sa.select(instances.c.name).where(instances.c.shard == name)).scalars())
