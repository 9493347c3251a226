"""imagesearch.instances: an instance's row, its partition of the pictures, and its kept picture count."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from imagesearch_pg.store.tables import instances


@dataclass(frozen=True)
class InstanceRef:
    """What the service needs of an instance to work on it; immutable once the instance exists."""

    id: int
    name: str
    service_type: str
    encoder: str
    embedding_dim: int


_REF_COLUMNS = [instances.c[name] for name in ("id", "name", "service_type", "encoder", "embedding_dim")]
_PUBLIC_COLUMNS = [c for c in instances.c if c.name != "last_write_xid"]


def insert(conn: sa.Connection, values: dict, *, silhouettes: bool) -> int | None:
    """A new instance with its partition (and silhouette index); None if the name is taken."""
    created = conn.execute(
        pg_insert(instances).values(values).on_conflict_do_nothing(index_elements=["name"]).returning(instances.c.id)
    ).scalar()
    if created is not None:
        conn.execute(sa.select(sa.func.imagesearch.create_picture_partition(created)))
        if silhouettes:
            conn.execute(sa.select(sa.func.imagesearch.create_silhouette_index(created)))
    return created


def find(conn: sa.Connection, name: str, *, lock: str | None = None) -> InstanceRef | None:
    """The instance named ``name``, or None. ``lock="share"`` (FOR NO KEY UPDATE, which every write takes:
    each updates the instance's counts) keeps the instance and its partition from being dropped under the
    write, and lines up the instance's writers; reads go on. ``lock="exclusive"`` (FOR UPDATE) also keeps
    out the reads that lock the row."""
    query = sa.select(*_REF_COLUMNS).where(instances.c.name == name)
    if lock == "exclusive":
        query = query.with_for_update()
    elif lock == "share":
        query = query.with_for_update(key_share=True)
    row = conn.execute(query).first()
    return None if row is None else InstanceRef(*row)


def public_rows(conn: sa.Connection, name: str | None = None) -> list[dict]:
    """Every column, of one instance (``name``) or of all, by name."""
    query = sa.select(*_PUBLIC_COLUMNS).order_by(instances.c.name)
    if name is not None:
        query = query.where(instances.c.name == name)
    return [dict(row._mapping) for row in conn.execute(query)]


def change_plan(conn: sa.Connection, instance_id: int, capacity: int | None, qps: int | None) -> bool:
    """New capacity and/or QPS; False (nothing changed) when the capacity is below the pictures held."""
    values = {k: v for k, v in (("capacity", capacity), ("qps", qps)) if v is not None}
    condition = [instances.c.id == instance_id]
    if capacity is not None:
        condition.append(instances.c.picture_count <= capacity)
    return conn.execute(sa.update(instances).where(*condition).values(**values)).rowcount > 0


def renew(conn: sa.Connection, instance_id: int, days: int | None) -> None:
    """``days`` more from its expiry (or from now, if that has passed); None: it never expires."""
    expires = None if days is None else sa.func.greatest(
        sa.func.coalesce(instances.c.expires_at, sa.func.now()), sa.func.now()) + sa.func.make_interval(0, 0, 0, days)
    conn.execute(sa.update(instances).where(instances.c.id == instance_id).values(expires_at=expires))


def delete(conn: sa.Connection, instance_id: int) -> None:
    """The instance and its partition (every picture of it, at once)."""
    conn.execute(sa.select(sa.func.imagesearch.drop_picture_partition(instance_id)))
    conn.execute(sa.delete(instances).where(instances.c.id == instance_id))


def record_write(conn: sa.Connection, instance_id: int, added: int) -> None:
    """Every write of pictures calls this, last: the instance's kept count (instances.picture_count) changes
    by ``added``, and this transaction becomes the instance's last write (last_write_xid), which a replica
    must have replayed before it serves the instance's searches (store/replicas.py)."""
    conn.execute(sa.update(instances).where(instances.c.id == instance_id).values(
        picture_count=instances.c.picture_count + added, last_write_xid=sa.func.pg_current_xact_id()))


def admit_new(conn: sa.Connection, instance_id: int, wanted: int) -> int:
    """Count in as many of ``wanted`` new pictures as the capacity has room for; returns how many. The
    instance's row stays locked to the transaction, so the room read is the room taken."""
    if wanted <= 0:
        return 0
    return conn.execute(
        sa.text("""
            WITH before AS (SELECT id, LEAST(:wanted, GREATEST(capacity - picture_count, 0)) AS room
                            FROM imagesearch.instances WHERE id = :id FOR NO KEY UPDATE)
            UPDATE imagesearch.instances i SET picture_count = i.picture_count + before.room
            FROM before WHERE i.id = before.id RETURNING before.room"""),
        {"id": instance_id, "wanted": wanted},
    ).scalar_one()


def reset_count(conn: sa.Connection, instance_id: int) -> None:
    """No pictures any more (a write, as record_write)."""
    conn.execute(sa.update(instances).where(instances.c.id == instance_id).values(
        picture_count=0, last_write_xid=sa.func.pg_current_xact_id()))


_PICTURE_COUNT = sa.select(instances.c.picture_count).where(instances.c.id == sa.bindparam("id"))  # built once


def picture_count_of(instance_id: int) -> sa.ScalarSelect:
    """The instance's kept picture count, as a subquery for other statements."""
    return sa.select(instances.c.picture_count).where(instances.c.id == instance_id).scalar_subquery()


def picture_count(conn: sa.Connection, instance_id: int) -> int:
    return conn.execute(_PICTURE_COUNT, {"id": instance_id}).scalar_one()
