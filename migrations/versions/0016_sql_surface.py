"""The SQL surface (docs/sql.md): the filter language compiled in the database, the search functions, the
views, writing pictures from SQL (a queue the worker embeds, synced tables), near-duplicate pairs and the
roles imagesearch_reader and imagesearch_writer. The search functions replace sql/0001's search_by_vector
and search_by_name, which ignored filters and every option; the downgrade brings those back.

Everything is created in schema imagesearch, except the two roles (cluster-wide, made only if missing and
if this user may). The downgrade removes every object the files made, in the reverse order, and the
triggers that synced tables got; the users' tables themselves stay as they are.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

import re

from alembic import op

from imagesearch_pg.store.schema import run_sql_file, run_sql_functions, schema_dir

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FILES = ("0016_filter.sql", "0016_search.sql", "0016_views.sql", "0016_queue.sql", "0016_duplicates.sql",
         "0016_roles.sql")
_CREATED = re.compile(r"^CREATE (FUNCTION|VIEW|TYPE|TABLE) imagesearch\.(\w+)", re.M)


def upgrade() -> None:
    op.execute("DROP FUNCTION imagesearch.search_by_name(text, text, text, integer)")
    op.execute("DROP FUNCTION imagesearch.search_by_vector(text, vector, integer)")
    for name in FILES:
        run_sql_file(op.get_bind(), name)


def downgrade() -> None:
    op.execute("""
        DO $$
        DECLARE s record;
        BEGIN
            FOR s IN SELECT id, source FROM imagesearch.synced_tables LOOP
                EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'imagesearch_sync_' || s.id, s.source);
            END LOOP;
        END $$
    """)
    op.execute("DROP TRIGGER picture_queue_notify ON imagesearch.picture_queue")
    created = [match for name in FILES for match in _CREATED.findall((schema_dir("sql") / name).read_text())]
    # Functions first (their signatures use the tables' and types' row types), then the rest, newest first.
    for kind, name in [c for c in reversed(created) if c[0] == "FUNCTION"] + \
                      [c for c in reversed(created) if c[0] != "FUNCTION"]:
        op.execute(f"DROP {kind} IF EXISTS imagesearch.{name}")
    op.execute("""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_reader') THEN
                REVOKE USAGE ON SCHEMA imagesearch FROM imagesearch_reader, imagesearch_writer;
                BEGIN
                    DROP ROLE imagesearch_writer;
                    DROP ROLE imagesearch_reader;
                EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
                    RAISE NOTICE 'imagesearch: the roles imagesearch_reader and imagesearch_writer stay (%)', SQLERRM;
                END;
            END IF;
        END $$
    """)
    run_sql_functions(op.get_bind(), "0001_functions.sql", ("search_by_vector", "search_by_name"))
