"""Alembic environment: runs migrations on a connection we are handed, or on the configured database.

The version table lives in schema imagesearch, like everything else of ours, so that a database that also
holds the user's own schemas (and perhaps their own alembic_version) gets nothing outside it. Databases
migrated before this kept it in public; it moves on the next run. A downgrade to base leaves nothing.
"""

import sqlalchemy as sa
from alembic import context

from imagesearch_pg.config import Settings
from imagesearch_pg.store.database import Database
from imagesearch_pg.store.schema import SCHEMA, VERSION_TABLE, migration_schema, refuse_untrusted_names, vector_schema


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    # Invoked as the plain `alembic` command: use the same database the service would.
    database = Database.connect(Settings.from_env())
    try:
        with database.engine.begin() as connection:
            refuse_untrusted_names(connection)
            _migrate(connection)
    finally:
        database.close()


def _migrate(connection) -> None:
    # The migrations' SQL names pgvector's types without a schema: they look names up in pg_catalog, then
    # pgvector's schema (public before the first migration makes the extension there), and nowhere else; the
    # service's own connections search pg_catalog alone (store/database.py). For this transaction only.
    connection.execute(sa.text(f"SET LOCAL search_path TO pg_catalog, {migration_schema(connection)}, pg_temp"))
    connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    _adopt_public_version_table(connection)
    _load_pgvector(connection)
    context.configure(connection=connection, transaction_per_migration=True, version_table_schema=SCHEMA,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
    # At base, the schema holds only the (empty) version table: it goes too.
    left = connection.execute(sa.text(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :s AND c.relname <> :t"), {"s": SCHEMA, "t": VERSION_TABLE}).scalar()
    functions = connection.execute(sa.text(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s"),
        {"s": SCHEMA}).scalar()
    versions = connection.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.{VERSION_TABLE}")).scalar()
    if left == 1 and functions == 0 and versions == 0:  # the version table's own index (its primary key)
        connection.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))


def _load_pgvector(connection) -> None:
    """pgvector's settings (hnsw.ef_search ...) exist in a session once its library is loaded; until then
    only a superuser may name them in a function's SET clause. A value of its type loads it. (Where the
    extension is not there yet, the first migration makes it, which loads it too.)"""
    if connection.execute(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar():
        connection.execute(sa.text(f"SELECT '[1]'::{vector_schema(connection)}.vector"))


def _adopt_public_version_table(connection) -> None:
    """A public.alembic_version of ours (our schema exists, and the revision it holds is one of ours) moves
    into our schema; one of the user's own alembic project stays where it is, untouched."""
    ours = connection.execute(sa.text(
        f"SELECT to_regclass('public.{VERSION_TABLE}') IS NOT NULL AND to_regclass('{SCHEMA}.{VERSION_TABLE}') IS NULL"
        f" AND to_regclass('{SCHEMA}.instances') IS NOT NULL")).scalar()
    if not ours:
        return
    revisions = {script.revision for script in context.script.walk_revisions()}
    held = connection.execute(sa.text(f"SELECT version_num FROM public.{VERSION_TABLE}")).scalars().all()
    if held and set(held) <= revisions:
        connection.execute(sa.text(f"ALTER TABLE public.{VERSION_TABLE} SET SCHEMA {SCHEMA}"))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: they run dynamic SQL files")
run()
