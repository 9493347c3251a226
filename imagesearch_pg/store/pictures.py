"""Queries over imagesearch.pictures. Each instance's rows live in its own partition with its own HNSW index."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import insert

from imagesearch_pg.store.filters import Node, to_sql
from imagesearch_pg.store.tables import partition, pictures

# Every connection starts with these (database.create_engine). ef_search 100 measured recall@10 0.998 on
# 100k vectors; strict_order iterative scans let one HNSW scan go past ef_search rows, still in exact
# distance order, so a window of up to 500 results needs no per-query setting.
HNSW_SETTINGS = {"hnsw.ef_search": "100", "hnsw.iterative_scan": "strict_order"}

RESULT_COLUMNS = [
    c for c in pictures.c if c.name not in ("instance_id", "embedding", "category_given", "created_at", "updated_at")
]


def upsert(conn: sa.Connection, instance_id: int, values: dict, embedding: np.ndarray) -> None:
    """Insert or replace the picture (instance, product_id, pic_name): the last write wins whole."""
    row = {**values, "instance_id": instance_id, "embedding": embedding}
    statement = insert(pictures).values(row)
    replaced = {k: statement.excluded[k] for k in row if k not in ("instance_id", "product_id", "pic_name")}
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["instance_id", "product_id", "pic_name"],
            set_={**replaced, "updated_at": sa.func.now()},
        )
    )


def exists(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str) -> bool:
    return (
        conn.execute(
            sa.select(sa.literal(1)).where(
                pictures.c.instance_id == instance_id,
                pictures.c.product_id == product_id,
                pictures.c.pic_name == pic_name,
            )
        ).first()
        is not None
    )


def stored_embedding(instance_id: int, dim: int, product_id: str, pic_name: str) -> sa.ScalarSelect:
    """The stored vector of one picture as a scalar subquery, so a search by name is one round trip."""
    part = partition(instance_id)
    return (
        sa.select(sa.cast(part.c.embedding, Vector(dim)))
        .where(part.c.product_id == product_id, part.c.pic_name == pic_name)
        .scalar_subquery()
    )


def nearest(
    conn: sa.Connection,
    instance_id: int,
    dim: int,
    query: np.ndarray | sa.ScalarSelect,
    limit: int,
    filter: Node | None = None,
    category_id: int | None = None,
) -> list[sa.Row]:
    """The ``limit`` nearest pictures by cosine distance, best first, each with a ``score`` column."""
    return list(conn.execute(nearest_statement(instance_id, dim, query, limit, filter, category_id)))


def nearest_statement(
    instance_id: int,
    dim: int,
    query: np.ndarray | sa.ScalarSelect,
    limit: int,
    filter: Node | None = None,
    category_id: int | None = None,
) -> sa.Select:
    """Unfiltered, the instance's HNSW index answers. With a ``filter`` (a parsed filter) or a category, the
    matching rows are scanned exactly: HNSW post-filtering would silently return too few rows."""
    part = partition(instance_id)
    if not isinstance(query, sa.ScalarSelect):
        query = sa.cast(sa.bindparam("q", query, Vector(dim)), Vector(dim))
    statement = sa.select(*(part.c[c.name] for c in RESULT_COLUMNS))
    conditions = ([] if filter is None else [to_sql(filter, part)]) + (
        [] if category_id is None else [part.c.category_id == category_id]
    )
    if not conditions:
        # The cast matches the partition's expression index; without it the index is not used.
        distance = sa.cast(part.c.embedding, Vector(dim)).cosine_distance(query)
    else:
        distance = part.c.embedding.cosine_distance(query)
        statement = statement.where(*conditions)
    statement = statement.add_columns(sa.func.imagesearch.cosine_score(distance).label("score"))
    return statement.order_by(distance).limit(limit)


def labelled_neighbours(
    conn: sa.Connection, instance_id: int, dim: int, query: np.ndarray, k: int
) -> list[tuple[int, float]]:
    """(category, score) of the ``k`` nearest pictures whose category a user gave.

    Approximate on purpose (it feeds a vote): the HNSW index with the connection's iterative scan keeps
    looking past unlabelled pictures until it has ``k`` labelled ones or hits hnsw.max_scan_tuples.
    """
    part = partition(instance_id)
    distance = sa.cast(part.c.embedding, Vector(dim)).cosine_distance(
        sa.cast(sa.bindparam("q", query, Vector(dim)), Vector(dim))
    )
    rows = conn.execute(
        sa.select(part.c.category_id, sa.func.imagesearch.cosine_score(distance))
        .where(part.c.category_given)
        .order_by(distance)
        .limit(k)
    )
    return [(int(category), float(score)) for category, score in rows]


def delete(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str | None) -> list[str]:
    """Delete a product's pictures (or one of them); returns the deleted PicNames."""
    condition = [pictures.c.instance_id == instance_id, pictures.c.product_id == product_id]
    if pic_name is not None:
        condition.append(pictures.c.pic_name == pic_name)
    return list(conn.execute(sa.delete(pictures).where(*condition).returning(pictures.c.pic_name)).scalars())


BULK_COLUMNS = ("instance_id", "product_id", "pic_name", "category_id", "embedding")


def bulk_load(conn: sa.Connection, instance_id: int, rows, progress=None) -> int:
    """Load many new pictures at once: ``rows`` yields (product_id, pic_name, category_id, embedding).

    The instance's HNSW index is dropped, the rows are streamed with binary COPY, and the index is
    built once afterwards (parallel). Runs in the caller's transaction; existing keys make it fail whole.
    """
    from pgvector.psycopg import register_vector

    raw = conn.connection.driver_connection
    register_vector(raw)
    conn.execute(sa.select(sa.func.imagesearch.drop_picture_index(instance_id)))
    loaded = 0
    with raw.cursor().copy(
        f"COPY imagesearch.pictures ({', '.join(BULK_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "text", "text", "int4", "vector"])
        for product_id, pic_name, category_id, embedding in rows:
            copy.write_row((instance_id, product_id, pic_name, category_id, embedding))
            loaded += 1
            if progress is not None:
                progress(loaded)
    conn.execute(sa.select(sa.func.imagesearch.create_picture_index(instance_id)))
    # Fresh statistics, so the planner sees the loaded rows at once rather than after autovacuum.
    conn.execute(sa.text(f"ANALYZE imagesearch.pictures_{int(instance_id)}"))
    return loaded
