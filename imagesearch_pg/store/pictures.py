"""Writes and plain reads of imagesearch.pictures (the nearest-picture queries are in picture_search).

Each instance's rows live in its own partition (tables.partition) with its own HNSW index.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from pgvector import HalfVector
from pgvector.sqlalchemy import HALFVEC

from imagesearch_pg.attributes import ATTRIBUTE_NAMES
from imagesearch_pg.store.filters import Node, to_sql
from imagesearch_pg.store.instances import record_write, reset_count
from imagesearch_pg.store.locks import waiting_briefly
from imagesearch_pg.store.query_vectors import send_halfvec, vector_type
from imagesearch_pg.store.tables import key_digest, partition, partition_name, pictures

# What a search or a listing returns of a picture: no vectors, keypoints or bookkeeping.
RESULT_COLUMNS = [
    c
    for c in pictures.c
    if c.name
    not in ("instance_id", "key_digest", "embedding", "silhouette", "keypoints", "category_given", "created_at",
            "updated_at", "thumbnail")
]


def result_columns(part: sa.TableClause) -> list:
    return [part.c[c.name] for c in RESULT_COLUMNS]


def is_picture(table, product_id: str, pic_name: str):
    """The condition for one picture: its key digest (the primary key's index)."""
    return table.c.key_digest == key_digest(product_id, pic_name)


def upsert_many(conn: sa.Connection, instance_id: int, rows: list[dict]) -> set[bytes]:
    """Insert or replace pictures (instance, product_id, pic_name), many in one statement: the last write of
    each wins whole. The rows have the same keys: product_id, pic_name and any WRITTEN_COLUMNS (the ones
    left out take their defaults); no two rows may share a key. Returns the key digests of the pictures
    that are new (inserted rather than replaced)."""
    if not rows:
        return set()
    digests = [key_digest(row["product_id"], row["pic_name"]) for row in rows]
    if on_shard(conn, instance_id):
        return _replace_on_shard(conn, instance_id, rows, digests)
    return {bytes(digest) for digest, inserted in _insert(conn, instance_id, rows, digests, upsert=True) if inserted}


# The columns a write may give (with the key's instance_id and key_digest; the times are the server's).
WRITTEN_COLUMNS = tuple(c.name for c in pictures.c if c.name not in ("instance_id", "key_digest", "created_at",
                                                                      "updated_at"))
_SQL_TYPES = {sa.Integer: "int4", sa.Text: "text", sa.Boolean: "bool", sa.LargeBinary: "bytea",
              sa.DateTime: "timestamptz", HALFVEC: "halfvec"}
# Each column's SQL type, as a write's arrays and bulk_load's COPY name it.
COLUMN_TYPES = {c.name: next(sql for kind, sql in _SQL_TYPES.items() if isinstance(c.type, kind)) for c in pictures.c}


def _sql_type(column: str) -> str:
    """A column's type as SQL text names it (pgvector's with its schema)."""
    kind = COLUMN_TYPES[column]
    return vector_type(kind) if kind == "halfvec" else kind


def _insert(conn: sa.Connection, instance_id: int, rows: list[dict], digests: list[bytes], *, upsert: bool = False,
            created: list | None = None) -> list[tuple]:
    """Rows into the instance's partition as one INSERT ... SELECT FROM unnest(), a binary array per column:
    the statement is the same for any number of rows (64 pictures: 31 -> 4 ms of Python against a VALUES
    list with a parameter per value). ``upsert``: a stored key is replaced, and (key_digest, inserted) is
    returned per row. ``created``: a created_at per row (else now)."""
    raw = conn.connection.driver_connection
    send_halfvec(raw)
    given = [name for name in WRITTEN_COLUMNS if name in rows[0]]
    names = ["instance_id", "key_digest", *given]
    arrays = [[instance_id] * len(rows), digests]
    for name in given:
        if COLUMN_TYPES[name] == "halfvec":  # numpy arrays would go out as float8[]
            arrays.append([None if row[name] is None else HalfVector(row[name]) for row in rows])
        else:
            arrays.append([row[name] for row in rows])
    if created is not None:
        names.append("created_at")
        arrays.append(created)
    sql = (f"INSERT INTO {partition_name(instance_id, qualified=True)} ({', '.join(names)})"
           f" SELECT * FROM unnest({', '.join(f'%b::{_sql_type(name)}[]' for name in names)})")
    if upsert:
        replaced = ", ".join(f"{name} = EXCLUDED.{name}" for name in given if name not in ("product_id", "pic_name"))
        # Into the partition itself: only there does RETURNING see the system column xmax, which a row made
        # by this insert does not have.
        sql += (f" ON CONFLICT (instance_id, key_digest) DO UPDATE SET {replaced}, updated_at = now()"
                " RETURNING key_digest, xmax = 0")
    with raw.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.fetchall() if upsert else []


def on_shard(conn: sa.Connection, instance_id: int) -> bool:
    """Whether the instance's pictures are on a shard (its table here is a foreign table, migration 0020)."""
    key = (conn.engine.url.render_as_string(hide_password=True), instance_id)
    if key not in _ON_SHARD:
        foreign = conn.execute(sa.text("SELECT relkind = 'f' FROM pg_class WHERE oid = to_regclass(:t)"),
                               {"t": partition_name(instance_id, qualified=True)}).scalar()
        if foreign is None:  # no such table (yet, or any more): nothing to remember
            return False
        _ON_SHARD[key] = foreign
    return _ON_SHARD[key]


# An instance's placement never changes and ids are never reused, within one database.
_ON_SHARD: dict[tuple[str, int], bool] = {}


def _replace_on_shard(conn: sa.Connection, instance_id: int, rows: list[dict], digests: list[bytes]) -> set[bytes]:
    """upsert_many for a foreign table, which takes no ON CONFLICT: the stored ones deleted, all inserted
    (in the one transaction, which postgres_fdw mirrors on the shard). Two writers never insert one key
    at once: each holds its instance's row (instances.find's lock="share")."""
    part = partition(instance_id)
    replaced = {bytes(d): made for d, made in conn.execute(
        sa.delete(part).where(part.c.key_digest.in_(digests)).returning(part.c.key_digest, part.c.created_at))}
    # A replaced picture keeps when it was first made, as the local upsert's does.
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    _insert(conn, instance_id, rows, digests, created=[replaced.get(bytes(d), now) for d in digests])
    return {bytes(d) for d in digests} - set(replaced)


def drop_vector_indexes(conn: sa.Connection, instance_id: int, silhouettes: bool) -> None:
    """The instance's HNSW indexes (with ``silhouettes``, that one too), gone until create_vector_indexes:
    many rows load several times faster without them, and one parallel build afterwards is faster than
    inserting each row into the graph. Searches meanwhile scan every row (exact, slower).

    On a shard the indexes stay (rows go into the graph one by one): DDL there goes through dblink, which
    would wait for this very transaction's postgres_fdw session once the load has written through it."""
    if on_shard(conn, instance_id):
        return

    def drop() -> None:
        conn.execute(sa.select(sa.func.imagesearch.drop_picture_index(instance_id)))
        if silhouettes:
            conn.execute(sa.select(sa.func.imagesearch.drop_silhouette_index(instance_id)))

    waiting_briefly(conn, drop, f"dropping the vector indexes of instance {instance_id}")


def create_vector_indexes(conn: sa.Connection, instance_id: int, silhouettes: bool) -> None:
    """Build the instance's HNSW indexes if they are missing (a no-op when they exist), and fresh statistics
    so that the planner sees the loaded rows at once rather than after autovacuum (on a shard, the
    statistics only: its indexes were kept, see drop_vector_indexes)."""

    def build() -> None:
        if not on_shard(conn, instance_id):
            conn.execute(sa.select(sa.func.imagesearch.create_picture_index(instance_id)))
            if silhouettes:
                conn.execute(sa.select(sa.func.imagesearch.create_silhouette_index(instance_id)))
        conn.execute(sa.text(f"ANALYZE {partition_name(instance_id, qualified=True)}"))

    # A build waits for the instance's open writes, and writes that come later wait for it (store/locks.py).
    waiting_briefly(conn, build, f"building the vector indexes of instance {instance_id}")


def stored_digests(conn: sa.Connection, instance_id: int, digests: list[bytes]) -> set[bytes]:
    """Which of these key digests are stored."""
    part = partition(instance_id)
    return set(conn.execute(sa.select(part.c.key_digest).where(part.c.key_digest.in_(digests))).scalars())


def stored(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str) -> sa.Row | None:
    """The stored picture's result columns (no vectors), or None."""
    part = partition(instance_id)
    return conn.execute(sa.select(*result_columns(part)).where(is_picture(part, product_id, pic_name))).first()


def update_attributes(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str, values: dict) -> bool:
    """Set the given attribute columns of one picture (its vectors untouched); False if it is not stored."""
    part = partition(instance_id)
    changed = conn.execute(
        sa.update(part)
        .where(is_picture(part, product_id, pic_name))
        .values(**values, updated_at=sa.func.now())
        .returning(part.c.pic_name)
    ).first()
    if changed is not None:
        record_write(conn, instance_id, 0)
    return changed is not None


def listing(conn: sa.Connection, instance_id: int, filter: Node, limit: int, offset: int) -> list[sa.Row]:
    """Pictures matching ``filter`` in a stable order (ProductId, then PicName), without scores."""
    part = partition(instance_id)
    return list(
        conn.execute(
            sa.select(*result_columns(part))
            .where(to_sql(filter, part))
            .order_by(part.c.product_id, part.c.pic_name)
            .limit(limit)
            .offset(offset)
        )
    )


def product_embeddings(conn: sa.Connection, instance_id: int, product_id: str, limit: int) -> list[np.ndarray]:
    """The embeddings of a product's first ``limit`` pictures in code-point order of PicName (as
    imagesearch.search_by_product takes them)."""
    part = partition(instance_id)
    stored = conn.execute(
        sa.select(part.c.embedding).where(part.c.product_id == product_id)
        .order_by(part.c.pic_name.collate("C")).limit(limit)
    ).scalars()
    return [np.asarray(numbers, np.float32) for numbers in stored]


def thumbnail(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str) -> bytes | None:
    part = partition(instance_id)
    return conn.execute(sa.select(part.c.thumbnail).where(part.c.key_digest == key_digest(product_id, pic_name))).scalar()


def delete(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str | None) -> list[str]:
    """Delete a product's pictures (or one of them); returns the deleted PicNames."""
    part = partition(instance_id)
    condition = part.c.product_id == product_id if pic_name is None else is_picture(part, product_id, pic_name)
    deleted = list(conn.execute(sa.delete(part).where(condition).returning(part.c.pic_name)).scalars())
    record_write(conn, instance_id, -len(deleted))
    return deleted


def delete_matching(conn: sa.Connection, instance_id: int, filter: Node) -> list[str]:
    """Delete every picture matching ``filter``; returns the deleted PicNames."""
    part = partition(instance_id)
    deleted = list(conn.execute(sa.delete(part).where(to_sql(filter, part)).returning(part.c.pic_name)).scalars())
    record_write(conn, instance_id, -len(deleted))
    return deleted


def delete_all(conn: sa.Connection, instance_id: int) -> None:
    """Every picture of the instance, at once (the caller holds the instance's exclusive lock, and waits for
    the partition's as store/locks.py does)."""
    conn.execute(sa.text(f"TRUNCATE {partition_name(instance_id, qualified=True)}"))
    reset_count(conn, instance_id)




METADATA_COLUMNS = ("product_id", "pic_name", "category_id", *ATTRIBUTE_NAMES)  # an export's, in this order


def metadata(conn: sa.Connection, instance_id: int, batch: int = 5000):
    """Every picture's key, category and attributes, streamed from a server-side cursor in ``batch`` rows
    at a time (memory stays flat at any size). Run in a transaction: its snapshot is the export's."""
    part = partition(instance_id)
    columns = [part.c[name] for name in METADATA_COLUMNS]
    result = conn.execution_options(stream_results=True, max_row_buffer=batch).execute(
        sa.select(*columns).order_by(part.c.product_id, part.c.pic_name))
    yield from result
