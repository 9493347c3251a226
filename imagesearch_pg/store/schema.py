"""Bring a database's schema to a revision with alembic, the only way the schema changes."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from imagesearch_pg.errors import SchemaOutOfDate, UntrustedNames

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


def migration_schema(connection: sa.Connection) -> str:
    """The one schema besides pg_catalog that migrations look names up in, quoted: pgvector's, or public
    before the first migration makes the extension there."""
    installed = connection.execute(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar()
    return vector_schema(connection) if installed else "public"


# The schema of the vector extension, quoted as an identifier (no row: the extension is not there yet).
VECTOR_SCHEMA_QUERY = ("SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
                       " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'")


def vector_schema(connection: sa.Connection) -> str:
    """The schema of the vector extension, quoted as an identifier."""
    quoted = connection.execute(sa.text(VECTOR_SCHEMA_QUERY)).scalar_one()
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


# Serialises concurrent upgrades (several service processes starting at once). Any role may take an advisory
# key, so it is taken only when an upgrade is needed, and waited for at most UPGRADE_LOCK_WAIT.
_UPGRADE_LOCK_KEY = 0x1A6E5EA2C4
UPGRADE_LOCK_WAIT = "2min"  # as long as another process's upgrade may take; then the error names who holds it


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    if current_revision(engine) == (head_revision() if revision == "head" else revision):
        return  # nothing to do: no lock taken, so no other session can hold up a start
    with engine.begin() as connection:
        _lock_for_upgrade(connection)
        refuse_untrusted_names(connection)
        command.upgrade(alembic_config(connection), revision)


def refuse_untrusted_names(connection: sa.Connection) -> None:
    """Migrations look names up in pg_catalog and pgvector's schema (migration_schema): a function or operator
    another role made there could stand in for a built-in a migration calls (by matching its arguments
    better), and run with the migrating user's rights. So none runs while a role that is not trusted may make
    one there (it has CREATE on it, or owns it and may grant itself CREATE), or has made one named like a
    built-in or an extension's; trusted are superusers and the roles that may act as this user anyway."""
    found = connection.execute(_UNTRUSTED_NAMES, {"schema": migration_schema(connection)}).scalars().all()
    if found:
        raise UntrustedNames(
            f"the schema is not changed while other roles may plant functions where migrations look names up: "
            f"{'; '.join(found)}. One could stand in for a built-in the upgrade calls, with this user's rights. "
            "Revoke CREATE for the upgrade (REVOKE CREATE ON SCHEMA ... FROM ...; for every role: FROM PUBLIC), "
            "drop what was planted, and run it as the schema's owner or a superuser (docs/sql.md, Security model)")


_UNTRUSTED_NAMES = sa.text("""
    WITH searched AS (
        SELECT n.oid, n.nspname, CASE WHEN n.nspowner = 'pg_database_owner'::regrole
                                      THEN (SELECT datdba FROM pg_database WHERE datname = current_database())
                                      ELSE n.nspowner END AS owner
        FROM pg_namespace n WHERE n.oid = to_regnamespace(:schema)
    ), untrusted AS (
        SELECT r.oid, r.rolname FROM pg_roles r
        WHERE NOT r.rolsuper AND NOT pg_has_role(r.oid, current_user, 'MEMBER')
    ), shadowed AS (  -- names that migrations may call unqualified: built-ins' and extensions'
        SELECT p.proname AS name FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
           OR EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
        UNION
        SELECT o.oprname FROM pg_operator o
        WHERE o.oprnamespace = 'pg_catalog'::regnamespace
           OR EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_operator'::regclass AND d.objid = o.oid AND d.deptype = 'e')
    )
    SELECT format('%s may create in schema %s', CASE WHEN has_schema_privilege('public', s.oid, 'CREATE') THEN 'PUBLIC'
                                                   ELSE u.rolname END, s.nspname)
    FROM searched s JOIN untrusted u ON has_schema_privilege(u.oid, s.oid, 'CREATE') AND u.rolname NOT LIKE 'pg\\_%'
    GROUP BY 1
    UNION ALL
    SELECT format('%s owns schema %s (and may grant itself CREATE on it)', u.rolname, s.nspname)
    FROM searched s JOIN untrusted u ON u.oid = s.owner
    UNION ALL
    SELECT format('%s made %s.%s', u.rolname, s.nspname, x.name)
    FROM (SELECT p.oid, p.pronamespace AS ns, p.proname AS name, p.proowner AS owner, 'pg_proc'::regclass AS cls FROM pg_proc p
          UNION ALL
          SELECT o.oid, o.oprnamespace, o.oprname, o.oprowner, 'pg_operator'::regclass FROM pg_operator o) x
    JOIN searched s ON s.oid = x.ns JOIN untrusted u ON u.oid = x.owner
    WHERE x.name IN (SELECT name FROM shadowed)
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = x.cls AND d.objid = x.oid AND d.deptype = 'e')
    ORDER BY 1""")


def _lock_for_upgrade(connection: sa.Connection) -> None:
    """The upgrade lock, for the rest of the transaction; SchemaOutOfDate naming its holders if another
    session keeps it past UPGRADE_LOCK_WAIT (an upgrade under way elsewhere, or a session holding the key)."""
    previous = connection.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar_one()
    try:
        with connection.begin_nested():
            connection.execute(sa.text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": UPGRADE_LOCK_WAIT})
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
    except sa.exc.OperationalError as exc:
        if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            raise
        holders = connection.execute(_UPGRADE_LOCK_HOLDERS, {"high": _UPGRADE_LOCK_KEY >> 32,
                                                             "low": _UPGRADE_LOCK_KEY & 0xFFFFFFFF}).all()
        named = "; ".join(f"pid {pid}, user {user}" + ("" if seconds is None else f", in a transaction open {seconds} s")
                          for pid, user, seconds in holders)
        raise SchemaOutOfDate(
            f"the database schema needs an upgrade, and another session has held the upgrade lock for over "
            f"{UPGRADE_LOCK_WAIT} ({named or 'it has just let it go'}): if that is no upgrade under way, end it "
            "(SELECT pg_terminate_backend(pid)) and start again") from None
    connection.execute(sa.text("SELECT set_config('lock_timeout', :previous, true)"), {"previous": previous})


_UPGRADE_LOCK_HOLDERS = sa.text("""
    SELECT l.pid, a.usename, extract(epoch FROM now() - a.xact_start)::integer
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = :high AND l.objid::bigint = :low
    ORDER BY l.pid""")


def downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        refuse_untrusted_names(connection)
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
