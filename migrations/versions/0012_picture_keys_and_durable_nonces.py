"""Pictures keyed by a digest of (ProductId, PicName); request nonces kept through a crash; one HNSW index
definition.

ProductId and PicName may each be 512 characters of any script: up to 2 kB of UTF-8 apiece, past the
2.7 kB a b-tree entry may hold, so the primary key (instance_id, product_id, pic_name) refused valid
pictures. The key is now ``key_digest`` = SHA-256 of UTF-8 ``product_id || NUL || pic_name`` (NUL cannot
occur in text, so the pair is unambiguous), computed by the store on every write; a hash index on
product_id serves deletes and lookups by product, whatever its length.

Nonces: crash recovery empties an UNLOGGED table, and a signed request refused as a replay before a crash
was accepted again after it. The table is logged again (its seen_at index, from 0010, forgets old ones).

The HNSW index DDL was written twice (sql/0001 for embeddings, sql/0006 for silhouettes); both files now
define it once, in imagesearch.create_vector_index / drop_vector_index, which the four index functions
call. Databases made before get those definitions here; the functions do what they did before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_functions

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_functions(op.get_bind(), "0001_functions.sql",
                      ("create_vector_index", "drop_vector_index", "create_picture_index", "drop_picture_index"))
    run_sql_functions(op.get_bind(), "0006_silhouettes.sql", ("create_silhouette_index", "drop_silhouette_index"))
    op.execute("ALTER TABLE imagesearch.pictures ADD COLUMN key_digest bytea")
    op.execute(
        "UPDATE imagesearch.pictures SET key_digest ="
        " sha256(convert_to(product_id, 'UTF8') || '\\x00'::bytea || convert_to(pic_name, 'UTF8'))"
    )
    op.execute("ALTER TABLE imagesearch.pictures ALTER COLUMN key_digest SET NOT NULL")
    op.execute("ALTER TABLE imagesearch.pictures DROP CONSTRAINT pictures_pkey")
    op.execute("ALTER TABLE imagesearch.pictures ADD PRIMARY KEY (instance_id, key_digest)")
    op.execute("CREATE INDEX pictures_product_id_idx ON imagesearch.pictures USING hash (product_id)")
    op.execute("ALTER TABLE imagesearch.request_nonces SET LOGGED")


def downgrade() -> None:
    # The index functions stay as sql/0001 and sql/0006 define them (what a database made now has at 0011).
    op.execute("ALTER TABLE imagesearch.request_nonces SET UNLOGGED")
    op.execute("DROP INDEX imagesearch.pictures_product_id_idx")
    op.execute("ALTER TABLE imagesearch.pictures DROP CONSTRAINT pictures_pkey")
    # Fails, as it should, if a stored key no longer fits a b-tree entry.
    op.execute("ALTER TABLE imagesearch.pictures ADD PRIMARY KEY (instance_id, product_id, pic_name)")
    op.execute("ALTER TABLE imagesearch.pictures DROP COLUMN key_digest")
