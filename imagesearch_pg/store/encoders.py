"""imagesearch.encoders: the encoders instances can use (built-in ones have no spec)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from imagesearch_pg.store.tables import encoders


def dim_of(conn: sa.Connection, name: str) -> int | None:
    return conn.execute(sa.select(encoders.c.dim).where(encoders.c.name == name)).scalar()


def names(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(encoders.c.name).order_by(encoders.c.name)).scalars())


def spec_of(conn: sa.Connection, name: str) -> dict | None:
    return conn.execute(sa.select(encoders.c.spec).where(encoders.c.name == name)).scalar_one()


def insert(conn: sa.Connection, name: str, dim: int, spec: dict) -> bool:
    """Register an encoder; False if the name is taken."""
    added = conn.execute(
        pg_insert(encoders)
        .values(name=name, dim=dim, spec=spec)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(encoders.c.name)
    ).scalar()
    return added is not None


def listing(conn: sa.Connection) -> list[dict]:
    """name, dim and spec of every encoder, by name."""
    rows = conn.execute(sa.select(encoders.c.name, encoders.c.dim, encoders.c.spec).order_by(encoders.c.name))
    return [dict(row._mapping) for row in rows]
