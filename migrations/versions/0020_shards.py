"""Shards: instances whose pictures live on other PostgreSQL servers, reached through postgres_fdw
(sql/0020_shards.sql, docs/scaling.md). The extensions postgres_fdw and dblink are created when the first
shard is added (imagesearch shard add), not here, so that databases without shards need neither.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_functions

GRANT_ROLES = "SELECT imagesearch.grant_roles()"  # see 0018

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

NEW = ("add_shard", "drop_shard", "shard_server")
REDEFINED = ("create_picture_partition", "drop_picture_partition", "create_vector_index", "drop_vector_index")
BEFORE = {"0018_halfvec_embeddings.sql": ("create_picture_partition", "create_vector_index"),
          "0001_functions.sql": ("drop_picture_partition", "drop_vector_index")}


def upgrade() -> None:
    op.execute("""
        CREATE TABLE imagesearch.shards (
            name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
            server name NOT NULL UNIQUE,  -- the foreign server, imagesearch_shard_<name>
            created_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("ALTER TABLE imagesearch.instances ADD COLUMN shard text REFERENCES imagesearch.shards (name)")
    run_sql_functions(op.get_bind(), "0020_shards.sql", NEW + REDEFINED)
    op.execute(GRANT_ROLES)  # and none of the new ones is PUBLIC's to call


def downgrade() -> None:
    # Instances on shards would lose their pictures' table here: the downgrade waits until none is left.
    op.execute("""
        DO $$
        DECLARE s record;
        BEGIN
            IF EXISTS (SELECT FROM imagesearch.instances WHERE shard IS NOT NULL) THEN
                RAISE EXCEPTION 'instances are on shards (%); delete them before downgrading below 0020',
                    (SELECT string_agg(name, ', ') FROM imagesearch.instances WHERE shard IS NOT NULL);
            END IF;
            FOR s IN SELECT name FROM imagesearch.shards LOOP
                PERFORM imagesearch.drop_shard(s.name);
            END LOOP;
        END $$""")
    for filename, names in BEFORE.items():
        run_sql_functions(op.get_bind(), filename, names)
    op.execute(GRANT_ROLES)
    for name in NEW:
        op.execute(f"DROP FUNCTION imagesearch.{name}")
    op.execute("ALTER TABLE imagesearch.instances DROP COLUMN shard")
    op.execute("DROP TABLE imagesearch.shards")
