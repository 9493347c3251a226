"""Queries over imagesearch.pictures. Each instance's rows live in its own partition with its own HNSW index."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import insert

from imagesearch_pg.store.tables import pictures

# ef_search bounds how many rows one HNSW scan can return; 100 measured recall@10 0.998 on 100k vectors.
MIN_EF_SEARCH = 100

RESULT_COLUMNS = [c for c in pictures.c if c.name not in ("instance_id", "embedding", "created_at", "updated_at")]


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


def count(conn: sa.Connection, instance_id: int) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(pictures).where(pictures.c.instance_id == instance_id)
    ).scalar_one()


def stored_embedding(instance_id: int, dim: int, product_id: str, pic_name: str) -> sa.ScalarSelect:
    """The stored vector of one picture as a scalar subquery, so a search by name is one round trip."""
    return (
        sa.select(sa.cast(pictures.c.embedding, Vector(dim)))
        .where(
            pictures.c.instance_id == instance_id,
            pictures.c.product_id == product_id,
            pictures.c.pic_name == pic_name,
        )
        .scalar_subquery()
    )


def nearest(
    conn: sa.Connection,
    instance_id: int,
    dim: int,
    query: np.ndarray | sa.ScalarSelect,
    limit: int,
    where: sa.ColumnElement[bool] | None = None,
) -> list[sa.Row]:
    """The ``limit`` nearest pictures by cosine distance, best first, each with a ``score`` column.

    Unfiltered, the instance's HNSW index answers. With ``where``, the matching rows are scanned
    exactly: HNSW post-filtering would silently return too few rows.
    """
    if not isinstance(query, sa.ScalarSelect):
        query = sa.cast(sa.bindparam("q", query, Vector(dim)), Vector(dim))
    if where is None:
        # The cast matches the partition's expression index; without it the index is not used.
        distance = sa.cast(pictures.c.embedding, Vector(dim)).cosine_distance(query)
        conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {max(MIN_EF_SEARCH, int(limit))}"))
        condition = pictures.c.instance_id == instance_id
    else:
        distance = pictures.c.embedding.cosine_distance(query)
        condition = sa.and_(pictures.c.instance_id == instance_id, where)
    statement = (
        sa.select(*RESULT_COLUMNS, sa.func.imagesearch.cosine_score(distance).label("score"))
        .where(condition)
        .order_by(distance)
        .limit(limit)
    )
    return list(conn.execute(statement))


def delete(conn: sa.Connection, instance_id: int, product_id: str, pic_name: str | None) -> list[str]:
    """Delete a product's pictures (or one of them); returns the deleted PicNames."""
    condition = [pictures.c.instance_id == instance_id, pictures.c.product_id == product_id]
    if pic_name is not None:
        condition.append(pictures.c.pic_name == pic_name)
    return list(conn.execute(sa.delete(pictures).where(*condition).returning(pictures.c.pic_name)).scalars())
