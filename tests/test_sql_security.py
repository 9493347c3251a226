"""The hostile corpus's SQL section: the SQL surface against its own users, as real LOGIN roles
(tests/sql_logins.py) granted only imagesearch_reader or only imagesearch_writer, with and without CREATE in
pgvector's schema. They try temporary types with casts of their own, functions and operators planted where a
search_path might find them, direct calls of every internal function, queue items forged past the synced
tables' policy, and syncs of tables that are not theirs. docs/sql.md, "Security model", says what holds.

First the mechanism, read from the catalog (who owns what, with which search_path, granted to whom), then
the attacks, each of which must find that mechanism in its way.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import sqlalchemy as sa

from imagesearch_pg.store import schema
from tests.pictures import encode, noise

DEFINER = "imagesearch_definer"
READER_CALLS = {"search_by_picture", "search_by_vector", "search_by_product", "duplicate_pairs"}
# The SECURITY DEFINER functions: the reader's, the writer's queueing ones, and the sync trigger's.
DEFINER_CALLS = READER_CALLS | {"add_image", "add_image_from_storage", "delete_image", "retry_failed",
                                "sync_instance_id", "queue_synced_row", "synced_row_changed"}
# The writer's besides: sync_table and unsync_table, which run as their caller, and their pure helpers.
WRITER_CALLS = DEFINER_CALLS | {"sync_table", "unsync_table", "raise_error", "py_repr", "sync_label",
                                "synced_values_sql", "unsyncable_column", "syncable_types", "key_types", "sync_settings",
                                "trigger_argument"}
# What the definer may touch: relation -> privileges (pictures_<id>: every instance's pictures, SELECT).
DEFINER_TABLES = {"instances": {"SELECT"}, "category_list": {"SELECT"},
                  "picture_queue": {"SELECT", "INSERT", "UPDATE"}}
DEFINER_COLUMNS = {"storage_locations": {"name", "instances"}}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def sql(engine, statement: str, **values):
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), values)
        return result.all() if result.returns_rows else None


@pytest.fixture(scope="module")
def stocked(service):
    name = "sql-security"
    service.create_instance(name, "generic")
    for n in range(4):
        service.add_image(name, f"p{n}", "a.jpg", encode(noise(150, 150, seed=40 + n)), attributes=None)
    yield name
    service.delete_instance(name)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "create-in-vector-schema"])
def hostile(request, logins):
    """A reader and a writer, both with CREATE in pgvector's schema or both without."""
    return (logins.make("reader", "imagesearch_reader", create_in_vector_schema=request.param),
            logins.make("writer", "imagesearch_writer", create_in_vector_schema=request.param))


@pytest.fixture
def reader(hostile):
    return hostile[0]


@pytest.fixture
def writer(hostile):
    return hostile[1]


def run(conn, statement: str):
    """A statement of the test's own on an open connection (text(): its % signs stay literal)."""
    return conn.execute(sa.text(statement))


def error_of(caught) -> str:
    return str(getattr(caught, "orig", caught))


# ---- the mechanism ---------------------------------------------------------------------------------------

def test_the_definer_role_has_no_power_of_its_own(engine):
    attributes = sql(engine, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, rolcanlogin"
                             " FROM pg_roles WHERE rolname = :r", r=DEFINER)
    assert attributes == [(False,) * 6]
    assert sql(engine, "SELECT count(*) FROM pg_auth_members WHERE member = CAST(:r AS regrole)", r=DEFINER) == [(0,)]


def test_every_definer_function_runs_as_the_definer_with_pg_catalog_alone(engine):
    rows = sql(engine, """
        SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig,
               (SELECT count(*) FROM unnest(p.proargtypes) t JOIN pg_type ty ON ty.oid = t WHERE ty.typtype = 'p')
        FROM pg_proc p WHERE p.pronamespace = 'imagesearch'::regnamespace AND p.prosecdef""")
    assert {row[0] for row in rows} == DEFINER_CALLS
    for name, owner, config, pseudo_arguments in rows:
        assert owner == DEFINER, name
        assert "search_path=pg_catalog, pg_temp" in config, (name, config)
        assert pseudo_arguments == 0, name  # no anyelement, record ...: the caller never picks a type
    # and the definer owns nothing else anywhere in this database
    assert sql(engine, "SELECT count(*) FROM pg_proc WHERE proowner = CAST(:r AS regrole) AND NOT prosecdef", r=DEFINER) == [(0,)]
    assert sql(engine, "SELECT count(*) FROM pg_class WHERE relowner = CAST(:r AS regrole)", r=DEFINER) == [(0,)]


def test_the_definer_alters_nothing_and_grant_roles_puts_back_what_was_altered(engine):
    """Code that ever ran as the definer could alter the functions it owns and turn them against their callers:
    an event trigger refuses every DDL command run as that role, and grant_roles() resets their settings."""
    signature = "imagesearch.duplicate_pairs(text, double precision, integer)"
    with engine.connect() as conn:
        # (a name = name of a caller's, first on the session's path, does not let it through)
        conn.exec_driver_sql("CREATE FUNCTION pg_temp.never(name, name) RETURNS boolean LANGUAGE sql AS 'SELECT false'")
        conn.exec_driver_sql("CREATE SCHEMA guard_test")
        conn.exec_driver_sql("CREATE OPERATOR guard_test.= (LEFTARG = name, RIGHTARG = name, FUNCTION = pg_temp.never)")
        conn.exec_driver_sql("SET search_path = guard_test, pg_catalog")
        conn.exec_driver_sql(f"SET ROLE {DEFINER}")
        for statement in (f"ALTER FUNCTION {signature} SECURITY INVOKER",
                          f"ALTER FUNCTION {signature} SET search_path = public, pg_catalog",
                          f"GRANT EXECUTE ON FUNCTION {signature} TO PUBLIC",
                          "CREATE TEMP TABLE planted (x int)"):
            conn.exec_driver_sql("SAVEPOINT s")
            with pytest.raises(sa.exc.ProgrammingError, match="the role imagesearch_definer changes no object"):
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT s")
        conn.rollback()
    config = f"SELECT prosecdef, proconfig FROM pg_proc WHERE oid = '{signature}'::regprocedure"
    before = sql(engine, config)
    with engine.begin() as conn:  # as the superuser: altered as code escaped from the definer would have
        conn.exec_driver_sql(f"ALTER FUNCTION {signature} SECURITY INVOKER SET search_path = public SET work_mem = '64kB'")
        conn.exec_driver_sql("SELECT imagesearch.grant_roles()")
    assert sql(engine, config) == before and before[0][0] is True


def test_a_sync_reads_only_built_in_base_types(engine):
    """The types a synced column may have are base types of pg_catalog: no role can give them casts or output
    functions of its own (an enum, a domain or a composite type of a role's is refused)."""
    assert sql(engine, "SELECT count(*), bool_and(t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b')"
                       " FROM unnest(imagesearch.syncable_types()) o JOIN pg_type t ON t.oid = o") \
        == [(26, True)]


def test_the_definer_reads_and_writes_only_what_the_surface_needs(engine, stocked):
    relations = sql(engine, "SELECT c.relname, c.relkind FROM pg_class c"
                            " WHERE c.relnamespace = 'imagesearch'::regnamespace AND c.relkind IN ('r','p','v','f','m','S')")
    assert len(relations) > 20
    for relation, kind in relations:
        if kind == "S":
            granted = {p for p in ("USAGE", "SELECT", "UPDATE") if sql(
                engine, "SELECT has_sequence_privilege(:r, :t, :p)", r=DEFINER, t=f"imagesearch.{relation}", p=p)[0][0]}
            assert granted == ({"USAGE"} if relation == "picture_queue_id_seq" else set()), relation
            continue
        table_wide = {p for p in PRIVILEGES if sql(engine, "SELECT has_table_privilege(:r, :t, :p)",
                                                   r=DEFINER, t=f"imagesearch.{relation}", p=p)[0][0]}
        columns = {c for (c,) in sql(engine, "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
                                             " AND attnum > 0 AND NOT attisdropped"
                                             " AND has_column_privilege(:r, attrelid, attnum, 'SELECT, INSERT, UPDATE')",
                                     r=DEFINER, t=f"imagesearch.{relation}")}
        expected = {"SELECT"} if re.fullmatch(r"pictures_\d+", relation) else DEFINER_TABLES.get(relation, set())
        assert table_wide == expected, relation
        if not expected:
            assert columns == DEFINER_COLUMNS.get(relation, set()), relation
    for secret in ("access_keys", "console_secret", "console_users", "shards", "tasks", "storage_locations"):
        assert not sql(engine, "SELECT has_table_privilege(:r, :t, 'SELECT')", r=DEFINER, t=f"imagesearch.{secret}")[0][0]


def test_each_role_may_call_what_docs_sql_md_lists_and_nothing_else(engine, logins):
    roles = {"reader": (logins.make("reader", "imagesearch_reader"), READER_CALLS),
             "writer": (logins.make("writer", "imagesearch_writer"), WRITER_CALLS),
             "stranger": (logins.make("stranger"), set())}
    for kind, (login, expected) in roles.items():
        callable_ = {name for (name,) in sql(engine, "SELECT proname FROM pg_proc WHERE pronamespace = 'imagesearch'::regnamespace"
                                                     " AND has_function_privilege(:r, oid, 'EXECUTE')", r=login.name)}
        assert callable_ == expected, kind
    # and PUBLIC may use nothing in the schema: not a function, not a table, not the schema itself
    assert sql(engine, "SELECT has_schema_privilege('public', 'imagesearch', 'USAGE')") == [(False,)]
    assert sql(engine, "SELECT count(*) FROM pg_class WHERE relnamespace = 'imagesearch'::regnamespace"
                       " AND has_any_column_privilege('public', oid, 'SELECT, INSERT, UPDATE')"
                       " AND relkind IN ('r', 'p', 'v', 'f')") == [(0,)]


def test_every_internal_function_refuses_a_direct_call(engine, logins):
    # Arguments from subqueries: a constant NULL would let the planner fold a STRICT function away uncalled.
    calls = sql(engine, """
        SELECT p.proname, format('SELECT imagesearch.%I(%s)', p.proname,
                                 (SELECT string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ') FROM unnest(p.proargtypes) t))
        FROM pg_proc p WHERE p.pronamespace = 'imagesearch'::regnamespace AND p.prorettype <> 'trigger'::regtype""")
    assert len(calls) > 40
    answered = []
    for login, allowed in ((logins.make("reader", "imagesearch_reader"), READER_CALLS),
                           (logins.make("writer", "imagesearch_writer"), WRITER_CALLS)):
        for name, call in calls:
            if name in allowed:
                continue
            with login.engine.connect() as conn:
                try:
                    run(conn, call)
                    answered.append((login.name, call, "answered"))
                except sa.exc.DBAPIError as exc:
                    if "permission denied for function" not in error_of(exc):
                        answered.append((login.name, call, error_of(exc)))
    assert answered == []
    for gone in ("register_sync", "unregister_sync", "enqueue_synced_add", "synced_values"):
        assert sql(engine, "SELECT count(*) FROM pg_proc WHERE proname = :n", n=gone) == [(0,)]


# ---- a caller's own types, casts, functions and operators ------------------------------------------------

def guarded(login: str, name: str, signature: str, result: str) -> str:
    """A function of a caller's that counts its calls and refuses to run as anybody but ``login``."""
    return (f"CREATE FUNCTION {name}({signature}) RETURNS {result} LANGUAGE plpgsql AS $$ BEGIN"
            f" IF current_user <> '{login}' THEN RAISE EXCEPTION 'ran as %', current_user; END IF;"
            f" PERFORM nextval('pg_temp.calls'); RETURN {{value}}; END $$")


def callers_type(conn, login: str) -> None:
    """Finding 1's makings: a temporary enum with casts to text and json of the caller's, which count their calls
    and refuse to run as anyone else; and a temporary table to sync."""
    for statement in [
        "CREATE TEMP SEQUENCE calls",
        "CREATE TYPE pg_temp.k AS ENUM ('k1', 'k2')",
        guarded(login, "pg_temp.kt", "pg_temp.k", "text").format(value="format('%s', $1)"),
        guarded(login, "pg_temp.kj", "pg_temp.k", "json").format(value="to_json(format('%s', $1))"),
        "CREATE CAST (pg_temp.k AS text) WITH FUNCTION pg_temp.kt(pg_temp.k)",
        "CREATE CAST (pg_temp.k AS json) WITH FUNCTION pg_temp.kj(pg_temp.k)",
        "CREATE TEMP TABLE t (k pg_temp.k, a pg_temp.k, sku text, colour text, photo bytea)",
        "INSERT INTO t VALUES ('k1', 'k2', 's1', 'red', '\\x00')",
    ]:
        run(conn, statement)


def test_no_column_of_a_callers_type_is_synced_and_none_becomes_one_later(writer, stocked):
    """Finding 1: a sync refuses a column whose type the caller made (its casts would run in the trigger), and a
    column altered to such a type after the sync stops its table's writes with a clear error before any of the
    caller's casts runs."""
    with writer.engine.connect() as conn:
        callers_type(conn, writer.name)
        for columns in ("ARRAY['k'], 'photo'", "ARRAY['sku'], 'photo', '{\"StrAttr\": \"a\"}'"):
            run(conn, "SAVEPOINT s")
            with pytest.raises(sa.exc.DBAPIError, match="which a sync does not read"):
                conn.execute(sa.text(f"SELECT imagesearch.sync_table(:i, 'pg_temp.t'::regclass, {columns})"),
                             {"i": stocked})
            run(conn, "ROLLBACK TO SAVEPOINT s")
        assert run(conn, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pg_temp.t'::regclass").scalar() == 0
        queued = conn.execute(sa.text("SELECT imagesearch.sync_table(:i, 'pg_temp.t'::regclass, ARRAY['sku'], 'photo',"
                                      " '{\"StrAttr\": \"colour\"}')"), {"i": stocked}).scalar()
        assert queued == 1
        run(conn, "ALTER TABLE t ALTER COLUMN colour TYPE pg_temp.k USING 'k1'")
        for change in ("INSERT INTO t VALUES ('k1', 'k2', 's2', 'k2', '\\x01')", "UPDATE t SET photo = '\\x02'",
                       "DELETE FROM t"):
            run(conn, "SAVEPOINT s")
            with pytest.raises(sa.exc.DBAPIError, match="which a sync does not read") as caught:
                run(conn, change)
            assert "ran as" not in error_of(caught.value)
            run(conn, "ROLLBACK TO SAVEPOINT s")
        assert run(conn, "SELECT is_called FROM pg_temp.calls").scalar() is False  # no cast of the caller's ran
        conn.rollback()


def test_a_name_that_is_no_column_is_never_read_as_a_function_of_the_row(engine, writer, stocked):
    """Second red team: a synced "column" named to_jsonb that is not there would read as to_jsonb(the whole row),
    casting the caller's own types as the definer. Neither a trigger made by hand nor a sync whose column was
    dropped afterwards gets that far."""
    instance_id = sql(engine, "SELECT id FROM imagesearch.instances WHERE name = :n", n=stocked)[0][0]
    hand_made = {"instance_id": instance_id, "key_columns": ["sku"], "picture_column": "photo",
                 "attribute_columns": {"CustomContent": "to_jsonb"}}
    with writer.engine.connect() as conn:
        callers_type(conn, writer.name)
        run(conn, f"CREATE TRIGGER imagesearch_sync_{instance_id} AFTER INSERT ON t FOR EACH ROW"
                  f" EXECUTE FUNCTION imagesearch.synced_row_changed('{json.dumps(hand_made)}')")
        run(conn, "SAVEPOINT s")
        with pytest.raises(sa.exc.DBAPIError, match="to_jsonb: no such column"):
            run(conn, "INSERT INTO t VALUES ('k1', 'k2', 's2', 'blue', '\\x01')")
        run(conn, "ROLLBACK TO SAVEPOINT s")
        run(conn, f"DROP TRIGGER imagesearch_sync_{instance_id} ON t")
        run(conn, "CREATE TEMP TABLE t2 (sku text, photo bytea, to_jsonb integer)")
        conn.execute(sa.text("SELECT imagesearch.sync_table(:i, 'pg_temp.t2'::regclass, ARRAY['sku'], 'photo',"
                             " '{\"IntAttr\": \"to_jsonb\"}')"), {"i": stocked})
        run(conn, "ALTER TABLE t2 DROP COLUMN to_jsonb, ADD COLUMN m pg_temp.k")
        run(conn, "SAVEPOINT s")
        with pytest.raises(sa.exc.DBAPIError, match="to_jsonb: no such column"):
            run(conn, "INSERT INTO t2 VALUES ('s1', '\\x01', 'k1')")
        run(conn, "ROLLBACK TO SAVEPOINT s")
        assert run(conn, "SELECT is_called FROM pg_temp.calls").scalar() is False  # no cast of the caller's ran
        conn.rollback()


def test_a_sync_reads_no_column_it_cannot_trust_and_no_trigger_but_its_own(engine, writer, stocked):
    """Third red team: key columns whose text depends on session settings, virtual generated columns (a trigger
    sees them as NULL), and a trigger named for another instance than its settings name are refused."""
    instance_id = sql(engine, "SELECT id FROM imagesearch.instances WHERE name = :n", n=stocked)[0][0]
    with writer.engine.connect() as conn:
        run(conn, "CREATE TEMP TABLE t (at timestamptz, sku text, v integer GENERATED ALWAYS AS (1) VIRTUAL,"
                  " photo bytea)")
        for columns, reason in (("ARRAY['at'], 'photo'", "which a key may not be"),
                                ("ARRAY['sku'], 'photo', '{\"IntAttr\": \"v\"}'", "virtual generated column")):
            run(conn, "SAVEPOINT s")
            with pytest.raises(sa.exc.DBAPIError, match=reason):
                conn.execute(sa.text(f"SELECT imagesearch.sync_table(:i, 'pg_temp.t'::regclass, {columns})"),
                             {"i": stocked})
            run(conn, "ROLLBACK TO SAVEPOINT s")
        settings = {"instance_id": instance_id, "key_columns": ["sku"], "picture_column": "photo",
                    "attribute_columns": {}}
        run(conn, "CREATE TRIGGER imagesearch_sync_999999 AFTER INSERT ON t FOR EACH ROW"
                  f" EXECUTE FUNCTION imagesearch.synced_row_changed('{json.dumps(settings)}')")
        with pytest.raises(sa.exc.DBAPIError, match="is no sync of instance"):
            run(conn, "INSERT INTO t (sku, photo) VALUES ('k', '\\x00')")
        conn.rollback()


def test_nothing_another_role_makes_keeps_an_instance_from_being_deleted(service, engine, logins):
    """Third red team: a column default naming the instance's table (a regclass constant) held it: DROP
    refused for the dependency. The table goes, and the dependent default with it."""
    made = service.create_instance(f"pinned-{os.getpid()}", "generic")
    stranger = logins.make("stranger")
    oid = sql(engine, "SELECT to_regclass(:p)::oid", p=f"imagesearch.pictures_{made.id}")[0][0]
    with stranger.engine.connect() as conn:  # an OID needs no right on the schema
        run(conn, f"CREATE TEMP TABLE pin (c regclass DEFAULT '{oid}'::regclass)")
        conn.commit()
        service.delete_instance(made.name)
        assert made.name not in {i.name for i in service.list_instances()}
        assert run(conn, "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'pg_temp.pin'::regclass"
                   ).first() is None


def test_the_console_key_leaks_through_no_cast(writer, stocked):
    """Finding 1 as reported: a cast that reads the console's session key never runs; had it run as the
    writer, the writer may not read the key either."""
    with writer.engine.connect() as conn:
        run(conn, "CREATE TYPE pg_temp.k AS ENUM ('k1')")
        run(conn, "CREATE FUNCTION pg_temp.kt(pg_temp.k) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION '% %',"
                  " current_user, (SELECT encode(secret, 'hex') FROM imagesearch.console_secret); END$$")
        run(conn, "CREATE CAST (pg_temp.k AS text) WITH FUNCTION pg_temp.kt(pg_temp.k)")
        run(conn, "CREATE TEMP TABLE t (k pg_temp.k, photo bytea)")
        run(conn, "INSERT INTO t VALUES ('k1', '\\x00')")
        with pytest.raises(sa.exc.DBAPIError, match="which a sync does not read"):
            conn.execute(sa.text("SELECT imagesearch.sync_table(:i, 'pg_temp.t'::regclass, ARRAY['k'], 'photo')"),
                         {"i": stocked})
        conn.rollback()
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table console_secret"):
            run(conn, "SELECT encode(secret, 'hex') FROM imagesearch.console_secret")


def test_a_synced_table_is_followed_for_every_role_that_changes_it_and_only_as_it_changes(engine, logins, stocked):
    """A role granted nothing of ours that may write a synced table has its changes queued; a role may change
    the instance only by changing the table (finding 3: it cannot write the queue itself)."""
    owner = logins.make("owner", "imagesearch_writer", create_in_vector_schema=True)
    clerk, remover = logins.make("clerk"), logins.make("remover")
    table = f"public.synced_{owner.name}"
    owner.run(f"CREATE TABLE {table} (sku text PRIMARY KEY, colour text, photo bytea)")
    owner.run(f"INSERT INTO {table} VALUES ('c0', 'red', '\\x00')")
    owner.run(f"GRANT SELECT, INSERT ON {table} TO {clerk.name}")
    owner.run(f"GRANT SELECT, DELETE ON {table} TO {remover.name}")
    owner.run(f"SELECT imagesearch.sync_table(:i, '{table}', ARRAY['sku'], 'photo', '{{\"StrAttr\": \"colour\"}}')",
              i=stocked)
    clerk.run(f"INSERT INTO {table} VALUES ('c1', 'blue', '\\x00')")
    remover.run(f"DELETE FROM {table} WHERE sku = 'c0'")
    for login in (clerk, remover):
        assert "permission denied" in error_of(login.refused(
            "INSERT INTO imagesearch.picture_queue (instance_id, operation, product_id, source)"
            " SELECT 1, 'delete', 'p0', 'forged'"))
    try:
        assert sql(engine, "SELECT operation, product_id, attributes FROM imagesearch.picture_queue"
                           " WHERE source = :s ORDER BY id", s=table) == [
            ("add", "c0", {"StrAttr": "red"}), ("add", "c1", {"StrAttr": "blue"}), ("delete", "c0", {})]
    finally:
        sql(engine, "DELETE FROM imagesearch.picture_queue WHERE source = :s", s=table)


# ---- planted functions and operators (finding 2) ----------------------------------------------------------

def builtin_names(engine) -> set[str]:
    """Every name our functions call without a schema: built-ins, found in pg_catalog, the first of a definer's
    search_path; a caller's function of the same name must never be picked instead."""
    bodies = sql(engine, "SELECT prosrc FROM pg_proc WHERE pronamespace = 'imagesearch'::regnamespace")
    names = set()
    for (body,) in bodies:
        names |= set(re.findall(r"(?<![\w.$\"])([a-z_][a-z0-9_]*)\s*\(", body))
    return names - {"select", "in", "exists", "array", "row", "values", "coalesce", "greatest", "least", "nullif",
                    "case", "and", "or", "not", "with", "over", "filter", "cast", "as", "on", "using", "is", "when",
                    "then", "else", "from", "where", "like", "any", "all", "to", "set", "for", "into", "returning"}


PLANTED_SIGNATURES = ["text", "text, text", "text, text, text", "text, text, text, text", "text, text, text, text, text",
                      "integer", "bigint", "double precision", "jsonb", "text[]", "bytea", "integer, integer",
                      "text, integer", "anyelement", "unknown"]


def plant(conn, schema_name: str, names: set[str]) -> int:
    """Functions and operators of the caller's, named like the built-ins, that fail loudly when called."""
    planted = 0
    for name in sorted(names):
        for signature in PLANTED_SIGNATURES:
            run(conn, "SAVEPOINT p")
            try:
                run(conn, 
                    f'CREATE FUNCTION {schema_name}."{name}"({signature}) RETURNS text LANGUAGE plpgsql AS'
                    f" $$ BEGIN RAISE EXCEPTION 'planted {name} ran as %', current_user; END $$")
                run(conn, "RELEASE SAVEPOINT p")
                planted += 1
            except sa.exc.DBAPIError:
                run(conn, "ROLLBACK TO SAVEPOINT p")
    run(conn, f"CREATE FUNCTION {schema_name}.planted_op(text, text) RETURNS boolean LANGUAGE plpgsql AS"
                         " $$ BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$")
    for operator in ("=", "<>", "~", "||", "<=>", "->>", "#>>", "<", ">="):
        run(conn, f"CREATE OPERATOR {schema_name}.{operator} (LEFTARG = text, RIGHTARG = text,"
                             f" FUNCTION = {schema_name}.planted_op)")
    return planted


STAND_INS = [  # objects a search_path could find in pg_temp, named as ours and pgvector's
    "CREATE TYPE pg_temp.vector AS (x int)", "CREATE TYPE pg_temp.halfvec AS (x int)",
    "CREATE TYPE pg_temp.search_plan AS (x int)", "CREATE TYPE pg_temp.search_result AS (x int)",
    "CREATE TEMP TABLE instances (id int, name text)", "CREATE TEMP TABLE picture_queue (id int)",
    "CREATE TEMP TABLE category_list (category_id int)", "CREATE TEMP TABLE storage_locations (name text)",
]


def surface_answers(conn, instance: str, writer: bool) -> list:
    """Every public function's answer (the writer's calls queue, in a transaction that is rolled back)."""
    vector = "[" + ",".join(["0.5"] * 1280) + "]"
    answers = [
        conn.execute(sa.text("SELECT product_id, round(score::numeric, 6) FROM imagesearch.search_by_picture("
                             ":i, 'p1', 'a.jpg', 3, filter => 'int_attr != 3')"), {"i": instance}).all(),
        conn.execute(sa.text("SELECT product_id, round(score::numeric, 6) FROM imagesearch.search_by_vector("
                             f":i, CAST(:v AS {schema.vector_schema(conn)}.vector), 3, distinct_product_id => true)"),
                     {"i": instance, "v": vector}).all(),
        conn.execute(sa.text("SELECT product_id, round(score::numeric, 6) FROM imagesearch.search_by_product("
                             ":i, 'p2', 2, score_threshold => 0)"), {"i": instance}).all(),
        conn.execute(sa.text("SELECT count(*) FROM imagesearch.duplicate_pairs(:i, 0.0)"), {"i": instance}).all(),
    ]
    if writer:
        answers.append(conn.execute(sa.text(
            "SELECT imagesearch.add_image(:i, 'x', 'y', '\\x00'::bytea, '{\"IntAttr\": 1, \"StrAttr\": \"s\"}') > 0,"
            " imagesearch.add_image_from_storage(:i, 'x', 'z', 'nowhere', 'a/b.jpg') > 0,"
            " imagesearch.delete_image(:i, 'x') > 0, imagesearch.retry_failed(:i) >= 0"), {"i": instance}).all())
        run(conn, "CREATE TEMP TABLE mine (id text, photo bytea)")
        run(conn, "INSERT INTO mine VALUES ('m', '\\x01')")
        answers.append(conn.execute(sa.text("SELECT imagesearch.sync_table(:i, 'pg_temp.mine'::regclass, ARRAY['id'],"
                                            " 'photo')"), {"i": instance}).all())
        run(conn, "UPDATE mine SET photo = '\\x02'")
        conn.execute(sa.text("SELECT imagesearch.unsync_table(:i, 'pg_temp.mine'::regclass)"), {"i": instance})
    return answers


def test_nothing_a_caller_plants_stands_in_for_what_the_surface_calls(engine, reader, writer, stocked):
    """Finding 2: with CREATE in pgvector's schema (and every role's pg_temp), functions and operators named
    like the built-ins the surface calls, and types and tables named like ours, change no answer and run
    nowhere; the answers are the ones a session without them gets."""
    names = builtin_names(engine)
    assert {"format", "jsonb_typeof", "array_to_string", "set_config"} <= names
    for login, is_writer in ((reader, False), (writer, True)):
        with login.engine.connect() as conn:
            expected = surface_answers(conn, stocked, is_writer)
            conn.rollback()
        creates = sql(engine, "SELECT has_schema_privilege(:r, n.nspname, 'CREATE') FROM pg_namespace n"
                              " JOIN pg_extension e ON e.extnamespace = n.oid WHERE e.extname = 'vector'", r=login.name)[0][0]
        with login.engine.connect() as conn:
            if creates:  # in pgvector's schema, which a search_path that finds pgvector's objects holds
                vector_schema = schema.vector_schema(conn)
                assert plant(conn, vector_schema, names) > len(names)
            for statement in STAND_INS:
                run(conn, statement)
            run(conn, f"SET search_path = pg_temp, {schema.vector_schema(conn)}, imagesearch")
            assert surface_answers(conn, stocked, is_writer) == expected
            conn.rollback()


# ---- forged queue items and syncs of others' tables -------------------------------------------------------

@pytest.fixture
def app_table(engine, stocked):
    """A table of an application's, synced by its owner (here the superuser) to the instance."""
    sql(engine, "CREATE SCHEMA IF NOT EXISTS app_security")
    sql(engine, "CREATE TABLE app_security.products (sku text PRIMARY KEY, photo bytea)")
    sql(engine, "GRANT USAGE ON SCHEMA app_security TO PUBLIC")
    sql(engine, "SELECT imagesearch.sync_table(:i, 'app_security.products', ARRAY['sku'], 'photo')", i=stocked)
    yield "app_security.products"
    sql(engine, "DROP SCHEMA app_security CASCADE")
    sql(engine, "DELETE FROM imagesearch.picture_queue WHERE source = 'app_security.products'")


def test_a_queue_item_cannot_be_forged(engine, logins, reader, writer, stocked, app_table):
    """Nobody writes the queue but the definer functions: not a reader, not a writer, not a role that may
    write a synced table (it changes the table, and the trigger queues what changed)."""
    stranger = logins.make("stranger")
    sql(engine, f"GRANT INSERT, UPDATE, DELETE ON {app_table} TO {stranger.name}")
    for login in (reader, writer, stranger):
        for statement in ("INSERT INTO imagesearch.picture_queue (instance_id, operation, product_id, source)"
                          " VALUES (1, 'delete', 'p0', :t)",
                          "UPDATE imagesearch.picture_queue SET state = 'pending'"):
            assert "permission denied" in error_of(login.refused(statement, t=app_table)), (login.name, statement)
        if login is not writer:  # a writer may: it adds as add_image does, to the instance the table is synced to
            refusal = login.refused("SELECT imagesearch.queue_synced_row(1, :t, 'p', 'x', '\\x00', NULL, '{}')",
                                    t=app_table)
            assert "permission denied for" in error_of(refusal)
    assert sql(engine, "SELECT count(*) FROM imagesearch.picture_queue WHERE product_id = 'p0' AND source = :t",
               t=app_table) == [(0,)]


def test_a_writer_syncs_only_tables_it_may_and_unsyncs_only_its_own(engine, writer, stocked, app_table):
    sql(engine, "CREATE TABLE app_security.private (sku text PRIMARY KEY, photo bytea)")
    sql(engine, "INSERT INTO app_security.private VALUES ('secret', '\\x00')")
    refusal = writer.refused("SELECT imagesearch.sync_table(:i, 'app_security.private', ARRAY['sku'], 'photo')",
                             i=stocked)
    assert "permission denied" in error_of(refusal) or "must be readable and writable" in error_of(refusal)
    sql(engine, f"GRANT SELECT, TRIGGER ON app_security.private TO {writer.name}")  # may read, not write
    refusal = writer.refused("SELECT imagesearch.sync_table(:i, 'app_security.private', ARRAY['sku'], 'photo')",
                             i=stocked)
    assert refusal.orig.diag.message_detail == "NoPermission"
    assert sql(engine, "SELECT count(*) FROM imagesearch.picture_queue WHERE product_id = 'secret'") == [(0,)]
    assert sql(engine, "SELECT count(*) FROM imagesearch.synced_tables WHERE source = 'app_security.private'::regclass") \
        == [(0,)]
    # another application's sync stays, and its changes still come through
    assert "must be owner" in error_of(writer.refused("SELECT imagesearch.unsync_table(:i, :t)", i=stocked, t=app_table))
    sql(engine, f"INSERT INTO {app_table} VALUES ('after', '\\x00')")
    assert sql(engine, "SELECT operation FROM imagesearch.picture_queue WHERE source = :t AND product_id = 'after'",
               t=app_table) == [("add",)]


def test_a_trigger_made_by_hand_syncs_nothing(engine, writer, stocked):
    """A writer's own trigger of the sync function, with an argument that is not a sync's settings, or of
    another kind than a sync's, neither breaks the synced_tables view nor queues anything."""
    with writer.engine.connect() as conn:
        run(conn, "CREATE TEMP TABLE t (sku text, photo bytea)")
        run(conn, "CREATE TRIGGER by_hand AFTER INSERT ON t FOR EACH ROW"
                  " EXECUTE FUNCTION imagesearch.synced_row_changed('not json')")
        assert run(conn, "SELECT count(*) FROM imagesearch.synced_tables WHERE source = 'pg_temp.t'::regclass"
                   ).scalar() == 0
        run(conn, "SAVEPOINT s")
        with pytest.raises(sa.exc.DataError):
            run(conn, "INSERT INTO t VALUES ('k', '\\x00')")  # its own statement fails, nobody else's
        run(conn, "ROLLBACK TO SAVEPOINT s")
        run(conn, "DROP TRIGGER by_hand ON t")
        settings = '{"instance_id": 1, "key_columns": ["sku"], "picture_column": "photo", "attribute_columns": {}}'
        for kind in ("BEFORE INSERT ON t FOR EACH ROW", "AFTER INSERT ON t FOR EACH STATEMENT"):
            run(conn, f"CREATE TRIGGER by_hand {kind} EXECUTE FUNCTION imagesearch.synced_row_changed('{settings}')")
            run(conn, "SAVEPOINT s")
            with pytest.raises(sa.exc.DBAPIError, match="AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW"):
                run(conn, "INSERT INTO t VALUES ('k', '\\x00')")
            run(conn, "ROLLBACK TO SAVEPOINT s")
            run(conn, "DROP TRIGGER by_hand ON t")
        conn.rollback()


# Built-ins the service's own SQL calls with arguments of its drivers' choosing (psycopg sends a small int as
# smallint): a role that may create in public could give any of them an overload that matches better.
SERVICE_BUILTINS = {"pg_try_advisory_lock", "pg_advisory_unlock", "pg_advisory_xact_lock", "pg_notify", "now",
                    "make_interval", "to_regclass", "format", "count", "sha256", "convert_to", "length", "lower",
                    "jsonb_build_object", "array_agg", "string_agg", "pg_current_xact_id", "greatest", "least",
                    "set_config", "current_setting", "pg_backend_pid", "to_json", "encode", "decode", "substr"}


def test_nothing_planted_in_public_runs_as_the_service(service, engine, logins, stocked):
    """Red team's finding: with CREATE in public, a role planted pg_try_advisory_lock(smallint, smallint) and the
    worker ran it as the service. The service's own connections search pg_catalog alone: nothing planted runs,
    whatever the service does."""
    from tests.pictures import sample_photos
    from imagesearch_pg.tasks.picture_queue import process_pending

    planter = logins.make("planter", "imagesearch_writer", create_in_vector_schema=True)
    photos = {key: encode(image) for key, image in sample_photos().items()}
    with planter.engine.connect() as conn:
        vector_schema = schema.vector_schema(conn)
        assert plant(conn, vector_schema, SERVICE_BUILTINS | builtin_names(engine)) > len(SERVICE_BUILTINS)
        for signature in ("smallint, smallint", "integer, smallint", "smallint, integer", "smallint"):
            run(conn, f"CREATE FUNCTION {vector_schema}.pg_try_advisory_lock({signature}) RETURNS boolean"
                      " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted ran as %', current_user; END $$")
        conn.commit()
    try:
        made = service.create_instance(f"planted-{planter.name}", "product")
        service.add_image(made.name, "p", "a.png", photos["rocket"])
        assert service.search_by_name(made.name, "p", "a.png", filter="int_attr != 3").matches[0].product_id == "p"
        assert service.search_by_picture(made.name, photos["rocket"]).matches[0].product_id == "p"
        planter.run("SELECT imagesearch.add_image(:i, 'q', 'b.png', :p)", i=made.name, p=photos["coffee"])
        assert process_pending(service) == 1
        assert service.describe_instance(made.name).picture_count == 2
        service.clear_instance(made.name)
        service.delete_instance(made.name)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {planter.name} CASCADE")
