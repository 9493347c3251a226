"""The pictures' embeddings as halfvec (16-bit floats) in the rows and in the HNSW indexes.

A million 1280-d pictures took 16 GB as vector (a row and an index entry each fill an 8 kB page) and take
about 7 GB as halfvec, with the same recall@10 (docs/scaling.md). Every instance's rows are rewritten and
its picture index rebuilt, so on a large database this migration takes as long as building those indexes.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_functions

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

NEW = "0018_halfvec_embeddings.sql"
# Where each function of NEW was defined before it.
BEFORE = {
    "0001_functions.sql": ("create_picture_partition", "create_vector_index"),
    "0016_search.sql": ("scan", "nearest_fused"),
    "0016_duplicates.sql": ("duplicate_pairs",),
}


def _convert(kind: str, storage_of_dim: str) -> None:
    """Every partition's embedding to ``kind``, its HNSW index rebuilt by the create_vector_index now
    defined. The index goes first: ALTER TYPE would rebuild it on the old expression."""
    op.execute("""
        DO $$
        DECLARE i record;
        BEGIN
            FOR i IN SELECT id FROM imagesearch.instances LOOP
                PERFORM imagesearch.drop_vector_index(i.id, 'embedding');
            END LOOP;
        END $$
    """)
    op.execute(f"ALTER TABLE imagesearch.pictures ALTER COLUMN embedding TYPE {kind} USING embedding::{kind}")
    op.execute(f"""
        DO $$
        DECLARE i record;
        BEGIN
            FOR i IN SELECT id, embedding_dim FROM imagesearch.instances LOOP
                -- A new type takes its own default storage; the rows keep their vectors in line.
                EXECUTE format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE %s',
                               imagesearch.partition_name(i.id), {storage_of_dim});
                PERFORM imagesearch.create_vector_index(i.id, 'embedding');
            END LOOP;
        END $$
    """)


# A function defined again loses SECURITY DEFINER and gets PUBLIC's EXECUTE back: grant_roles (sql/0016_roles.sql)
# puts both as they were.
GRANT_ROLES = "SELECT imagesearch.grant_roles()"


def upgrade() -> None:
    run_sql_functions(op.get_bind(), NEW, sum(BEFORE.values(), ()))
    op.execute(GRANT_ROLES)
    _convert("halfvec", "'PLAIN'")


def downgrade() -> None:
    for filename, names in BEFORE.items():
        run_sql_functions(op.get_bind(), filename, names)
    op.execute(GRANT_ROLES)
    _convert("vector", "CASE WHEN i.embedding_dim <= 1800 THEN 'PLAIN' ELSE 'MAIN' END")
