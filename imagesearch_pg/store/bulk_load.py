"""Bulk loading of new pictures: binary COPY with the HNSW indexes built once afterwards."""

from __future__ import annotations

import sqlalchemy as sa
from pgvector import HalfVector

from imagesearch_pg.store.instances import record_write
from imagesearch_pg.store.pictures import COLUMN_TYPES, create_vector_indexes, drop_vector_indexes
from imagesearch_pg.store.query_vectors import send_halfvec
from imagesearch_pg.store.tables import key_digest, partition_name

BULK_COLUMNS = ("product_id", "pic_name", "category_id", "embedding")


def bulk_load(conn: sa.Connection, instance_id: int, rows, progress=None, columns: tuple = BULK_COLUMNS) -> int:
    """Load many new pictures at once: ``rows`` yields tuples of ``columns`` (product_id and pic_name first,
    by default then category_id and embedding; silhouette and keypoints may follow).

    The instance's HNSW indexes are dropped, the rows are streamed with binary COPY, and the indexes are
    built once afterwards (parallel). Runs in the caller's transaction; existing keys make it fail whole.
    """
    raw = conn.connection.driver_connection
    send_halfvec(raw)
    silhouettes = "silhouette" in columns
    halves = [at for at, c in enumerate(columns) if COLUMN_TYPES[c] == "halfvec"]
    drop_vector_indexes(conn, instance_id, silhouettes)
    loaded = 0
    with raw.cursor().copy(
        f"COPY {partition_name(instance_id, qualified=True)} (instance_id, key_digest, {', '.join(columns)})"
        " FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types([COLUMN_TYPES[c] for c in ("instance_id", "key_digest", *columns)])
        for row in rows:
            row = list(row)
            for at in halves:  # numpy arrays go out as vector unless told they are halfvec
                if row[at] is not None:
                    row[at] = HalfVector(row[at])
            copy.write_row((instance_id, key_digest(row[0], row[1]), *row))
            loaded += 1
            if progress is not None:
                progress(loaded)
    record_write(conn, instance_id, loaded)
    create_vector_indexes(conn, instance_id, silhouettes)
    return loaded
