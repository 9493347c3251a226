"""Migrations: upgrade to head and downgrade to base on a fresh database; tables.py matches the schema."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from imagesearch_pg.store import schema
from imagesearch_pg.store.database import create_engine
from imagesearch_pg.store.tables import metadata


@pytest.fixture
def scratch_engine(engine):
    """A new, empty database on the same server."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    scratch = create_engine(engine.url.set(database=name).render_as_string(hide_password=False), search_path=None)
    yield scratch
    scratch.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def tables_in(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names(schema="imagesearch"))


def test_upgrade_downgrade_upgrade(scratch_engine):
    assert schema.current_revision(scratch_engine) is None
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()
    assert {"instances", "pictures", "tasks"} <= tables_in(scratch_engine)
    schema.downgrade(scratch_engine, "base")
    assert schema.current_revision(scratch_engine) is None
    assert not sa.inspect(scratch_engine).has_schema("imagesearch")
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()


def test_upgrade_twice_is_a_no_op(scratch_engine):
    schema.upgrade(scratch_engine)
    schema.upgrade(scratch_engine)
    assert schema.current_revision(scratch_engine) == schema.head_revision()


def test_table_descriptions_match_the_migrated_schema(engine):
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        reflected = {c["name"]: c for c in inspector.get_columns(table.name, schema="imagesearch")}
        assert set(reflected) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert reflected[column.name]["nullable"] == column.nullable, f"{table.name}.{column.name}"


def test_each_instance_gets_its_own_partition_and_index(service, make_instance, engine):
    a, b = make_instance(), make_instance()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, i.indexrelid::regclass::text FROM pg_inherits h"
                " JOIN pg_class c ON c.oid = h.inhrelid"
                " JOIN pg_index i ON i.indrelid = c.oid AND i.indexrelid::regclass::text LIKE '%hnsw'"
                " WHERE h.inhparent = 'imagesearch.pictures'::regclass"
            )
        ).all()
        ids = dict(conn.execute(sa.text("SELECT name, id FROM imagesearch.instances")).all())
    partitions = {r[0] for r in rows}
    assert {f"pictures_{ids[a.name]}", f"pictures_{ids[b.name]}"} <= partitions
    service.delete_instance(a.name)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"imagesearch.pictures_{ids[a.name]}"}).scalar() is None
    service.create_instance(a.name, "generic")  # recreated so the fixture's cleanup finds it


def test_partition_refuses_a_vector_of_another_dimension(make_instance, engine):
    made = make_instance()
    with engine.connect() as conn:
        iid = conn.execute(sa.text("SELECT id FROM imagesearch.instances WHERE name = :n"), {"n": made.name}).scalar()
        with pytest.raises(sa.exc.IntegrityError, match="_dim"):
            conn.execute(
                sa.text(
                    "INSERT INTO imagesearch.pictures (instance_id, key_digest, product_id, pic_name, category_id,"
                    " embedding) VALUES (:i, '\\x00', 'p', 'n', 0, '[1,2,3]')"
                ),
                {"i": iid},
            )


def test_sql_surface_searches_from_sql(service, instance, engine):
    from tests.pictures import encode, sample_photos

    photos = sample_photos()
    for key in ("coffee", "rocket", "chelsea"):
        service.add_image(instance.name, key, f"{key}.png", encode(photos[key]))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT product_id, score FROM imagesearch.search_by_picture(:i, 'rocket', 'rocket.png', 3)"),
            {"i": instance.name},
        ).all()
    assert rows[0][0] == "rocket" and rows[0][1] > 0.999 and len(rows) == 3
    assert rows[0][1] >= rows[1][1] >= rows[2][1]


def test_plain_alembic_command_upgrades_and_downgrades(scratch_engine):
    """`alembic upgrade head` / `alembic downgrade base` from a source checkout, on IMAGESEARCH_DATABASE_URL."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, IMAGESEARCH_DATABASE_URL=scratch_engine.url.render_as_string(hide_password=False))
    for step, expected in (("upgrade head", schema.head_revision()), ("downgrade base", None)):
        done = subprocess.run([sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), *step.split()],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert schema.current_revision(scratch_engine) == expected


def test_a_given_database_is_not_upgraded_behind_its_owners_back(scratch_engine, settings):
    from imagesearch_pg.errors import SchemaOutOfDate
    from imagesearch_pg.config import Settings
    from imagesearch_pg.service import ImageSearch

    given = Settings.from_env({
        "IMAGESEARCH_HOME": str(settings.home),
        "IMAGESEARCH_DATABASE_URL": scratch_engine.url.render_as_string(hide_password=False),
    })
    with pytest.raises(SchemaOutOfDate, match="imagesearch db upgrade"):
        ImageSearch.open(given)
    assert schema.current_revision(scratch_engine) is None
    schema.upgrade(scratch_engine)
    ImageSearch.open(given).close()


def test_pictures_stored_before_0012_get_their_key_digest(scratch_engine):
    from imagesearch_pg.store.tables import key_digest

    schema.upgrade(scratch_engine, "0011")
    with scratch_engine.begin() as conn:
        iid = conn.execute(sa.text(
            "INSERT INTO imagesearch.instances (name, service_type, capacity, qps, region, encoder, embedding_dim)"
            " VALUES ('old', 'generic', 10, 1, 'local', 'efficientnet-lite0-gem', 3) RETURNING id")).scalar()
        conn.execute(sa.text("SELECT imagesearch.create_picture_partition(:i)"), {"i": iid})
        conn.execute(sa.text(
            "INSERT INTO imagesearch.pictures (instance_id, product_id, pic_name, category_id, embedding)"
            " VALUES (:i, '日本', 'é.jpg', 0, '[1,2,3]')"), {"i": iid})
    schema.upgrade(scratch_engine)
    with scratch_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_digest FROM imagesearch.pictures WHERE instance_id = :i"), {"i": iid}).scalar()
    assert bytes(stored) == key_digest("日本", "é.jpg")
    schema.downgrade(scratch_engine, "0011")  # and back: the key is (instance_id, product_id, pic_name) again
    with scratch_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM imagesearch.pictures")).scalar() == 1


def test_0018_stores_embeddings_as_halfvec_and_back(scratch_engine):
    """Pictures stored as vector before 0018 keep their numbers (to float16's precision), their partition's
    dimension check and an HNSW index on the new type; the downgrade brings vector back."""
    schema.upgrade(scratch_engine, "0017")
    with scratch_engine.begin() as conn:
        iid = conn.execute(sa.text(
            "INSERT INTO imagesearch.instances (name, service_type, capacity, qps, region, encoder, embedding_dim)"
            " VALUES ('old', 'generic', 10, 1, 'local', 'efficientnet-lite0-gem', 3) RETURNING id")).scalar()
        conn.execute(sa.text("SELECT imagesearch.create_picture_partition(:i)"), {"i": iid})
        for n, vector in enumerate(("[1,0.5,0.25]", "[0,1,0.1]", "[0.3,0.3,0.9]")):
            conn.execute(sa.text(
                "INSERT INTO imagesearch.pictures (instance_id, key_digest, product_id, pic_name, category_id, embedding)"
                " VALUES (:i, :k, :p, 'a.jpg', 0, :v)"), {"i": iid, "k": bytes([n]), "p": f"p{n}", "v": vector})

    def layout(kind):
        with scratch_engine.connect() as conn:
            part = f"pictures_{iid}"
            column = conn.execute(sa.text(
                "SELECT format_type(atttypid, atttypmod), attstorage FROM pg_attribute"
                " WHERE attrelid = ('imagesearch.' || :t)::regclass AND attname = 'embedding'"), {"t": part}).one()
            index = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexname LIKE"
                                         " '%embedding_hnsw'"), {"t": part}).scalar_one()
            nearest = conn.execute(sa.text(
                f"SELECT product_id FROM imagesearch.{part} ORDER BY embedding::{kind}(3) <=> '[0,1,0]'::{kind}(3)"
            )).scalars().all()
            text = conn.execute(sa.text(f"SELECT embedding::text FROM imagesearch.{part} WHERE product_id = 'p0'")).scalar()
        with pytest.raises(sa.exc.IntegrityError, match="_dim"), scratch_engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO imagesearch.pictures (instance_id, key_digest, product_id, pic_name, category_id,"
                " embedding) VALUES (:i, 'x', 'x', 'x', 0, '[1,2]')"), {"i": iid})
        return column, index, nearest, text

    schema.upgrade(scratch_engine)
    column, index, nearest, text = layout("halfvec")
    assert column == ("halfvec", "p") and f"(embedding)::halfvec(3)) halfvec_cosine_ops" in index
    assert nearest == ["p1", "p0", "p2"] and text == "[1,0.5,0.25]"
    schema.downgrade(scratch_engine, "0017")
    column, index, nearest, text = layout("vector")
    assert column == ("vector", "p") and f"(embedding)::vector(3)) vector_cosine_ops" in index
    assert nearest == ["p1", "p0", "p2"] and text == "[1,0.5,0.25]"


# ---- the upgrade lock: an advisory key, which any role may take ------------------------------------------

UPGRADE_KEY = 0x1A6E5EA2C4


def test_a_role_holding_the_upgrade_key_holds_up_no_start(database, logins, monkeypatch):
    """A start at head takes no lock: a LOGIN role granted nothing that holds the key changes nothing."""
    import threading

    monkeypatch.setattr(schema, "UPGRADE_LOCK_WAIT", "1s")  # were it waited for, the start would fail
    stranger = logins.make("stranger")
    with stranger.engine.connect() as holding:
        holding.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": UPGRADE_KEY})
        outcome = []
        start = threading.Thread(target=lambda: outcome.append(database.ensure_schema()), daemon=True)
        start.start()  # what every start of the embedded service does
        start.join(60)
        assert outcome == [None]
    assert schema.current_revision(database.engine) == schema.head_revision()


def test_an_upgrade_held_up_names_who_holds_the_lock_and_changes_nothing(scratch_engine, logins, monkeypatch):
    from imagesearch_pg.errors import SchemaOutOfDate

    monkeypatch.setattr(schema, "UPGRADE_LOCK_WAIT", "200ms")
    stranger = logins.make("stranger")
    there = create_engine(stranger.engine.url.set(database=scratch_engine.url.database), search_path=None)
    try:
        with there.connect() as holding:
            pid = holding.execute(sa.text("SELECT pg_backend_pid() FROM (SELECT pg_advisory_xact_lock(:k)) AS held"),
                                  {"k": UPGRADE_KEY}).scalar_one()
            with pytest.raises(SchemaOutOfDate) as caught:
                schema.upgrade(scratch_engine)
            assert f"pid {pid}, user {stranger.name}, in a transaction open" in caught.value.message
            assert "pg_terminate_backend" in caught.value.message and caught.value.code == "ServiceUnavailable"
            assert schema.current_revision(scratch_engine) is None and not tables_in(scratch_engine)
        schema.upgrade(scratch_engine)  # it has let go
        assert schema.current_revision(scratch_engine) == schema.head_revision()
    finally:
        there.dispose()


class _Seen(Exception):
    """Stops the upgrade once the test has seen what it looks at (nothing is committed)."""


def test_the_upgrade_lock_is_waited_for_at_most_2_minutes(scratch_engine):
    """docs/reliability.md: the upgrade's advisory key is waited for at most 2 minutes. Read in PostgreSQL,
    in the upgrading session, as the key is asked for (lock_timeout applies to pg_advisory_xact_lock), and
    after it is held (the migrations themselves run without that limit)."""
    timeouts = {}

    def look(conn, cursor, statement, parameters, context, executemany):
        if "pg_advisory_xact_lock" in statement or statement.lstrip().startswith("WITH searched AS"):
            timeouts["asking" if "pg_advisory_xact_lock" in statement else "held"] = cursor.connection.execute(
                "SELECT current_setting('lock_timeout'), setting FROM pg_settings WHERE name = 'lock_timeout'").fetchone()
        if "held" in timeouts:
            raise _Seen()

    with scratch_engine.connect() as fresh:
        default = fresh.execute(sa.text("SELECT current_setting('lock_timeout'), setting FROM pg_settings "
                                        "WHERE name = 'lock_timeout'")).one()
    sa.event.listen(scratch_engine, "before_cursor_execute", look)
    try:
        with pytest.raises(_Seen):
            schema.upgrade(scratch_engine)
    finally:
        sa.event.remove(scratch_engine, "before_cursor_execute", look)
    assert timeouts == {"asking": ("2min", "120000"), "held": tuple(default)}
    assert default != ("2min", "120000") and schema.current_revision(scratch_engine) is None
