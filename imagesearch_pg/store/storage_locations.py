"""imagesearch.storage_locations: where the operator's storage locations are (never their credentials)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from imagesearch_pg.store.tables import storage_locations

_COLUMNS = [storage_locations.c[name] for name in ("name", "url", "endpoint", "region", "profile", "instances")]


def insert(conn: sa.Connection, name: str, url: str, endpoint: str | None, region: str | None,
           profile: str | None, instances: list[str] | None) -> bool:
    """False if the name is taken."""
    added = conn.execute(
        pg_insert(storage_locations)
        .values(name=name, url=url, endpoint=endpoint, region=region, profile=profile, instances=instances)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(storage_locations.c.name)
    ).first()
    return added is not None


def listing(conn: sa.Connection) -> list[sa.Row]:
    """name, url, endpoint, region, profile, instances of every location, by name."""
    return list(conn.execute(sa.select(*_COLUMNS).order_by(storage_locations.c.name)))


def find(conn: sa.Connection, name: str) -> sa.Row | None:
    return conn.execute(sa.select(*_COLUMNS).where(storage_locations.c.name == name)).first()


def delete(conn: sa.Connection, name: str) -> bool:
    """False if there is no location ``name``."""
    deleted = conn.execute(
        sa.delete(storage_locations).where(storage_locations.c.name == name).returning(storage_locations.c.name)
    ).first()
    return deleted is not None
