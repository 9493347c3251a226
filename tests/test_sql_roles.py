"""The SQL surface's roles, and its installation into a database that already holds the user's own things."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from imagesearch_pg.store import schema
from tests.pictures import encode, sample_photos
from tests.test_schema import scratch_engine  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def stocked(service):
    name = f"sql-roles-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    photos = sample_photos()
    for key in ("coffee", "rocket"):
        service.add_image(name, key, "a.png", encode(photos[key]))
    yield name
    service.delete_instance(name)


@pytest.fixture(scope="module")
def reader(logins):
    return logins.make("reader", "imagesearch_reader")


@pytest.fixture(scope="module")
def writer(logins):
    return logins.make("writer", "imagesearch_writer")


def refusal(login, statement: str, **values) -> str:
    return str(login.refused(statement, **values).orig)


WRITES = [
    "INSERT INTO imagesearch.instances (name, service_type, capacity, qps, region, encoder, embedding_dim)"
    " VALUES ('x', 'generic', 1, 1, 'r', 'efficientnet-lite0-gem', 1280)",
    "UPDATE imagesearch.instances SET capacity = 1",
    "DELETE FROM imagesearch.pictures",
    "TRUNCATE imagesearch.pictures",
    "UPDATE imagesearch.picture_queue SET state = 'pending'",
    "DELETE FROM imagesearch.picture_queue",
    "SELECT * FROM imagesearch.picture_queue",
    "SELECT * FROM imagesearch.access_keys",
    "SELECT * FROM imagesearch.console_secret",
    "SELECT * FROM imagesearch.console_users",
    "SELECT * FROM imagesearch.pictures",
    "SELECT * FROM imagesearch.tasks",
    "SELECT name FROM imagesearch.instances",
    "SELECT imagesearch.drop_picture_partition(1)",
    "SELECT imagesearch.create_picture_partition(1)",
    "SELECT imagesearch.drop_vector_index(1, 'embedding')",
    "SELECT * FROM imagesearch.compile_filter('int_attr = 1')",
    "SELECT imagesearch.enqueue(:i, 'delete', 'p', NULL, NULL, NULL, NULL, NULL, 'x')",
    "SELECT imagesearch.grant_roles()",
    "DROP SCHEMA imagesearch CASCADE",
    "CREATE TABLE imagesearch.mine (x int)",
]
WRITER_ONLY = [
    "SELECT imagesearch.add_image(:i, 'p', 'a', '\\x00'::bytea)",
    "SELECT imagesearch.delete_image(:i, 'coffee')",
    "SELECT imagesearch.retry_failed(:i)",
    "SELECT * FROM imagesearch.queue_status",
    "SELECT * FROM imagesearch.synced_tables",
    "SELECT imagesearch.sync_table(:i, 'pg_catalog.pg_class', ARRAY['oid'], 'relname')",
    "SELECT imagesearch.sync_instance_id(:i, '{}', NULL)",
]


@pytest.mark.parametrize("statement", WRITES + WRITER_ONLY)
def test_the_reader_cannot_write_or_read_past_the_surface(reader, stocked, statement):
    message = refusal(reader, statement, i=stocked)
    assert "permission denied" in message or "must be owner" in message, message


@pytest.mark.parametrize("statement", WRITES)
def test_the_writer_cannot_write_past_the_surface_either(writer, stocked, statement):
    message = refusal(writer, statement, i=stocked)
    assert "permission denied" in message or "must be owner" in message, message


def test_the_reader_searches_and_reads_the_views(reader, stocked):
    rows = reader.run("SELECT product_id FROM imagesearch.search_by_picture(:i, 'rocket', 'a.png', 2,"
                      " filter => 'int_attr != 3')", i=stocked)
    assert rows[0] == ("rocket",) and len(rows) == 2
    assert reader.run("SELECT count(*) FROM imagesearch.picture_list WHERE instance = :i", i=stocked) == [(2,)]
    assert reader.run("SELECT picture_count FROM imagesearch.instance_list WHERE name = :i", i=stocked) == [(2,)]
    assert reader.run("SELECT count(*) FROM imagesearch.search_by_product(:i, 'coffee')", i=stocked) == [(1,)]
    assert reader.run("SELECT count(*) FROM imagesearch.duplicate_pairs(:i, 0.0)", i=stocked) == [(1,)]


def test_the_writer_queues_and_reads_its_status(writer, stocked):
    [(queued,)] = writer.run("SELECT imagesearch.delete_image(:i, 'nobody', 'a.png')", i=stocked)
    assert writer.run("SELECT instance, operation, product_id, state FROM imagesearch.queue_status WHERE id = :q",
                      q=queued) == [(stocked, "delete", "nobody", "pending")]
    assert writer.run("SELECT count(*) FROM imagesearch.queue_errors WHERE id = :q", q=queued) == [(0,)]


def test_a_stranger_can_use_nothing(logins, stocked):
    """A role granted neither calls no function and reads no table or view of the schema."""
    stranger = logins.make("stranger")
    for statement in ["SELECT * FROM imagesearch.search_by_picture(:i, 'rocket', 'a.png')",
                      "SELECT * FROM imagesearch.instance_list", "SELECT * FROM imagesearch.picture_list",
                      "SELECT imagesearch.add_image(:i, 'p', 'a', '\\x00'::bytea)", *WRITES]:
        message = refusal(stranger, statement, i=stocked)
        assert "permission denied" in message or "must be owner" in message, (statement, message)


# ---- inside an existing database ------------------------------------------------------------------------

USER_SETUP = [
    "CREATE SCHEMA shop",
    "CREATE TABLE shop.products (id integer PRIMARY KEY, title text, photo bytea)",
    "INSERT INTO shop.products VALUES (1, 'cup', '\\x0102'), (2, 'pen', NULL)",
    "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)",  # the user's own alembic
    "INSERT INTO public.alembic_version VALUES ('ae1027a6acf')",
    "CREATE FUNCTION public.user_function() RETURNS int LANGUAGE sql AS 'SELECT 1'",
]
CATALOG = """
    SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema'
    UNION ALL SELECT 'relation ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('imagesearch', 'pg_catalog', 'information_schema', 'pg_toast')
    UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('imagesearch', 'pg_catalog', 'information_schema')
    UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop'
    UNION ALL SELECT 'extension ' || extname FROM pg_extension
"""


def catalog(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(CATALOG)).scalars())


def test_installed_into_a_users_database_it_adds_only_its_schema_and_leaves_cleanly(scratch_engine):  # noqa: F811
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")  # as a DBA would, where the migrating user may not
        for statement in USER_SETUP:
            conn.exec_driver_sql(statement)
    before = catalog(scratch_engine)
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()
    assert catalog(scratch_engine) - before == {"schema imagesearch"}
    with scratch_engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar() == "ae1027a6acf"
        conn.exec_driver_sql("INSERT INTO imagesearch.instances (name, service_type, capacity, qps, region, encoder,"
                             " embedding_dim) VALUES ('shop', 'generic', 10, 1, 'local', 'efficientnet-lite0-gem', 1280)")
        conn.exec_driver_sql("SELECT imagesearch.create_picture_partition(id) FROM imagesearch.instances")
        queued = conn.exec_driver_sql(
            "SELECT imagesearch.sync_table('shop', 'shop.products', ARRAY['id'], 'photo')").scalar()
        assert queued == 1
        conn.exec_driver_sql("INSERT INTO shop.products VALUES (3, 'mug', '\\x03')")
    assert "trigger imagesearch_sync_1" in catalog(scratch_engine)
    schema.downgrade(scratch_engine, "0015")  # the SQL surface goes, and the synced table's trigger with it
    assert catalog(scratch_engine) == before | {"schema imagesearch"}
    with scratch_engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT id, title, photo FROM shop.products ORDER BY id").all() == [
            (1, "cup", b"\x01\x02"), (2, "pen", None), (3, "mug", b"\x03")]
        conn.exec_driver_sql("SELECT imagesearch.drop_picture_partition(id) FROM imagesearch.instances")
        conn.exec_driver_sql("DELETE FROM imagesearch.instances")  # older downgrades refuse to orphan instances
    schema.downgrade(scratch_engine, "base")
    assert schema.current_revision(scratch_engine) is None
    assert catalog(scratch_engine) == before  # nothing of the user's changed
    with scratch_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM shop.products").scalar() == 3
        assert conn.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar() == "ae1027a6acf"
    schema.upgrade(scratch_engine)  # and it comes back
    assert schema.current_revision(scratch_engine) == schema.head_revision()


def test_a_database_migrated_before_keeps_its_revision_when_the_version_table_moves(scratch_engine):  # noqa: F811
    schema.upgrade(scratch_engine, "0015")
    with scratch_engine.begin() as conn:  # as versions before 0016 kept it
        conn.exec_driver_sql("ALTER TABLE imagesearch.alembic_version SET SCHEMA public")
    assert schema.current_revision(scratch_engine) == "0015"
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()
    with scratch_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT to_regclass('public.alembic_version')").scalar() is None


def test_a_user_that_may_not_make_roles_installs_it_and_the_surface_waits_for_a_dba(scratch_engine, logins):  # noqa: F811
    """The migrating user has no superuser and no CREATEROLE: the upgrade goes through, grants nobody the
    surface, and says what a DBA runs; once the DBA has, grant_roles() hands the functions to the definer."""
    migrator = logins.make("migrator")
    database = scratch_engine.url.database
    with scratch_engine.begin() as conn:  # the DBA: pgvector, and a database the user may make a schema in
        conn.exec_driver_sql("CREATE EXTENSION vector")
        conn.exec_driver_sql(f'GRANT CREATE ON DATABASE "{database}" TO {migrator.name}')
    own = sa.create_engine(migrator.engine.url.set(database=database))
    try:
        schema.upgrade(own)
        assert schema.current_revision(own) == schema.head_revision()
        with own.begin() as conn:
            conn.exec_driver_sql("INSERT INTO imagesearch.instances (name, service_type, capacity, qps, region, encoder,"
                                 " embedding_dim) VALUES ('shop', 'generic', 10, 1, 'local', 'efficientnet-lite0-gem', 3)")
            conn.exec_driver_sql("SELECT imagesearch.create_picture_partition(id) FROM imagesearch.instances")
            conn.exec_driver_sql("INSERT INTO imagesearch.pictures (instance_id, key_digest, product_id, pic_name,"
                                 " category_id, embedding) SELECT id, '\\x01', 'p', 'a', 0, '[1,0,0]' FROM imagesearch.instances")
        owners = "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE prosecdef AND pronamespace = 'imagesearch'::regnamespace"
        reader = logins.make("reader", "imagesearch_reader")
        search = sa.create_engine(reader.engine.url.set(database=database))
        statement = sa.text("SELECT product_id FROM imagesearch.search_by_vector('shop', '[1,0.1,0]')")
        with own.connect() as conn:
            assert conn.execute(sa.text(owners)).scalars().all() == [migrator.name]
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied for function search_by_vector"), \
                search.connect() as conn:
            conn.execute(statement)
        with scratch_engine.begin() as conn:  # what the upgrade's notice asks of the DBA
            conn.exec_driver_sql(f"GRANT imagesearch_definer TO {migrator.name}")
        with own.begin() as conn:
            conn.exec_driver_sql("SELECT imagesearch.grant_roles()")
            assert conn.execute(sa.text(owners)).scalars().all() == ["imagesearch_definer"]
        with search.connect() as conn:
            assert conn.execute(statement).scalars().all() == ["p"]
        search.dispose()
    finally:
        own.dispose()


def test_no_upgrade_runs_while_a_role_may_plant_names_for_it_or_has(scratch_engine, logins):  # noqa: F811
    """Migrations look names up in public and pgvector's schema: while another role may create there, or has
    made a function named like a built-in there (red team: planted, then its CREATE revoked), the upgrade
    changes nothing and names it."""
    from imagesearch_pg.errors import UntrustedNames

    planter = logins.make("planter")
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
        conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {planter.name}")
    with sa.create_engine(planter.engine.url.set(database=scratch_engine.url.database)).begin() as conn:
        conn.exec_driver_sql("CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1'")
        conn.exec_driver_sql("CREATE FUNCTION public.my_own(text) RETURNS text LANGUAGE sql AS 'SELECT $1'")
    with pytest.raises(UntrustedNames, match=f"{planter.name} may create in schema public"):
        schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) is None
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA public FROM {planter.name}")
        conn.exec_driver_sql("GRANT CREATE ON SCHEMA public TO PUBLIC")  # as databases made before PostgreSQL 15
    with pytest.raises(UntrustedNames, match="PUBLIC may create in schema public") as caught:
        schema.upgrade(scratch_engine)
    assert f"{planter.name} made public.format" in caught.value.message and "my_own" not in caught.value.message
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    with pytest.raises(UntrustedNames, match=f"{planter.name} made public.format"):
        schema.upgrade(scratch_engine)
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("DROP FUNCTION public.format(text, text)")
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("DROP FUNCTION public.my_own(text)")


def test_migrations_look_names_up_in_pg_catalog_and_pgvectors_schema_alone(scratch_engine, logins):  # noqa: F811
    """Third red team: a role that may create in the database made the schema named as the migrating user,
    which "$user" put on the migrations' path, in the middle of an upgrade. The path holds pg_catalog and
    pgvector's schema alone: a function planted in that schema is never called."""
    planter = logins.make("planter")
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
        me = conn.exec_driver_sql("SELECT current_user").scalar()
        conn.exec_driver_sql(f'GRANT CREATE ON DATABASE "{scratch_engine.url.database}" TO {planter.name}')
    with sa.create_engine(planter.engine.url.set(database=scratch_engine.url.database)).begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{me}"')
        conn.execute(sa.text(f'CREATE FUNCTION "{me}".format(text, text) RETURNS text LANGUAGE plpgsql AS'
                             " $$ BEGIN RAISE EXCEPTION 'planted ran as %', current_user; END $$"))
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()
    with scratch_engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{me}" CASCADE')
