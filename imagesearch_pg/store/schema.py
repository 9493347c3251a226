"""Bring a database's schema to a revision with alembic, the only way the schema changes."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from imagesearch_pg.errors import SchemaOutOfDate

SCHEMA = "imagesearch"  # every object of ours is in it, the version table too (migrations/env.py)
VERSION_TABLE = "alembic_version"


def schema_dir(name: str) -> Path:
    """``migrations`` or ``sql``: inside an installed wheel, or at the top of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_schema" / name
    return packaged if packaged.is_dir() else package.parent / name


VECTOR_SCHEMA = "@vector_schema@"  # in sql/ files: pgvector's schema, as the database has it


def _sql_text(connection: sa.Connection, filename: str) -> str:
    """A file of sql/ with pgvector's schema put in where it names it (functions that run with a search_path
    of pg_catalog alone name every other object with its schema)."""
    sql = (schema_dir("sql") / filename).read_text(encoding="utf-8")
    if VECTOR_SCHEMA in sql:
        sql = sql.replace(VECTOR_SCHEMA, vector_schema(connection))
    return sql


def vector_schema(connection: sa.Connection) -> str:
    """The schema of the vector extension, quoted as an identifier."""
    quoted = connection.execute(sa.text(
        "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'vector'")).scalar_one()
    if "'" in quoted or "$" in quoted:  # it is written inside SQL string literals and dollar quotes too
        raise ValueError(f"the vector extension's schema {quoted} has a quote or $ in its name; move it elsewhere")
    return quoted


def run_sql_file(connection: sa.Connection, filename: str) -> None:
    """Run a file of sql/ as it is: through the driver with no parameters, so its % signs stay literal."""
    connection.connection.driver_connection.execute(_sql_text(connection, filename))


def run_sql_functions(connection: sa.Connection, filename: str, names: tuple[str, ...]) -> None:
    """(Re)define the named functions of a file of sql/ as the file defines them now (CREATE OR REPLACE):
    for a migration that brings databases made before a change of those definitions up to them."""
    sql = _sql_text(connection, filename)
    for name in names:
        found = re.search(rf"CREATE FUNCTION imagesearch\.{name}\(.*?\$\$;", sql, re.S)
        if found is None:
            raise ValueError(f"sql/{filename} defines no function imagesearch.{name}")
        statement = found.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        connection.connection.driver_connection.execute(statement)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(schema_dir("migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# Serialises concurrent upgrades (several service processes starting at once).
_UPGRADE_LOCK_KEY = 0x1A6E5EA2C4


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table_schema": SCHEMA,
                                                               "version_table": VERSION_TABLE})
        revision = context.get_current_revision()
        if revision is None and connection.execute(sa.text(
                f"SELECT to_regclass('public.{VERSION_TABLE}') IS NOT NULL AND to_regclass('{SCHEMA}.instances') IS NOT NULL"
        )).scalar():
            # Migrated before the version table moved into our schema (the next upgrade moves it).
            revision = connection.execute(sa.text(f"SELECT max(version_num) FROM public.{VERSION_TABLE}")).scalar()
        return revision


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def require_head(engine: sa.Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing (empty database)'}, this version needs {head}: "
            "run `imagesearch db upgrade`"
        )
