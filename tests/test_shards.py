"""Instances on a shard: a second real PostgreSQL server (embedded, its own data directory) holds their
tables and HNSW indexes; the service reaches them through postgres_fdw, nearest-neighbour query pushed
down."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlparse

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.cli import cli
from imagesearch_pg.errors import InvalidParameter, MissingParameter
from imagesearch_pg.store import bulk_load, picture_search
from imagesearch_pg.store.filters import parse_filter
from imagesearch_pg.store.tables import partition
from imagesearch_pg.store.embedded import start_embedded_server
from tests.pictures import encode, noise

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("IMAGESEARCH_DATABASE_URL")) or os.environ.get("IMAGESEARCH_TEST_POSTGRES") == "container",
    reason="the test database must be the embedded superuser's, on this machine's sockets, to reach a shard")

PICTURES = {f"p{i}": encode(noise(256, 256, seed=40 + i)) for i in range(6)}


@pytest.fixture(scope="module")
def shard_server(tmp_path_factory):
    server = start_embedded_server(tmp_path_factory.mktemp("shard") / "pgdata")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="module")
def shard(service, shard_server):
    name = f"s{os.getpid()}"
    service.shards.add(name, shard_server)
    yield name
    for instance in service.list_instances():
        if instance.shard == name:
            service.delete_instance(instance.name)
    service.shards.drop(name)


def remote(shard_server, statement: str, params=()):
    with psycopg.connect(shard_server, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def test_an_instance_on_a_shard_keeps_its_pictures_there(service, shard, shard_server, engine):
    made = service.create_instance(f"on-{shard}", "generic", shard=shard)  # deleted at the end, as a test step
    assert made.shard == shard and service.describe_instance(made.name).shard == shard
    part = f"pictures_{made.id}"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"),
                            {"t": f"imagesearch.{part}"}).scalar() == "f"
    indexes = {name for (name,) in remote(shard_server, "SELECT indexname FROM pg_indexes WHERE tablename = %s", (part,))}
    assert f"{part}_embedding_hnsw" in indexes and f"{part}_int_attr_idx" in indexes and f"{part}_pkey" in indexes

    for product_id, picture in PICTURES.items():
        service.add_image(made.name, product_id, "0.png", picture, attributes=Attributes(int_attr=int(product_id[1:])))
    assert remote(shard_server, f"SELECT count(*) FROM imagesearch.{part}") == [(6,)]
    assert service.describe_instance(made.name).picture_count == 6
    for product_id in PICTURES:
        assert service.search_by_name(made.name, product_id, "0.png", num=3).matches[0].product_id == product_id
    found = service.search_by_picture(made.name, PICTURES["p2"], num=3)
    assert found.matches[0].product_id == "p2" and found.docs_found == 6
    filtered = service.search_by_name(made.name, "p1", "0.png", filter="int_attr>=3", num=10)
    assert sorted(m.product_id for m in filtered.matches) == ["p3", "p4", "p5"]

    service.add_image(made.name, "p1", "0.png", PICTURES["p4"])  # replaced whole, on the shard
    assert service.describe_instance(made.name).picture_count == 6
    twins = service.search_by_name(made.name, "p4", "0.png", num=2).matches  # the same picture: a tie
    assert {m.product_id for m in twins} == {"p1", "p4"} and min(m.score for m in twins) > 0.999
    service.update_image(made.name, "p0", "0.png", Attributes(str_attr="moved"))
    assert remote(shard_server, f"SELECT str_attr FROM imagesearch.{part} WHERE product_id = 'p0'") == [("moved",)]
    assert service.delete_image(made.name, "p5").pic_names == ["0.png"]
    assert remote(shard_server, f"SELECT count(*) FROM imagesearch.{part}") == [(5,)]
    assert service.describe_instance(made.name).picture_count == 5

    service.delete_instance(made.name)
    assert remote(shard_server, "SELECT to_regclass(%s)::text", (f"imagesearch.{part}",)) == [(None,)]


def test_the_nearest_neighbour_query_runs_on_the_shard(service, shard, make_instance, engine):
    made = make_instance("generic", shard=shard)
    for product_id, picture in list(PICTURES.items())[:3]:
        service.add_image(made.name, product_id, "0.png", picture)
    vector = np.ones(made.embedding_dim, np.float32) / np.sqrt(made.embedding_dim)
    walk = picture_search.walk_statement(partition(made.id), made.embedding_dim,
                                         picture_search.vector(partition(made.id), vector,
                                                               made.embedding_dim), 10, [])
    compiled = walk.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN (VERBOSE) {compiled}").scalars())
    remote_sql = next(line for line in plan.splitlines() if "Remote SQL:" in line)
    assert "Foreign Scan" in plan and "ORDER BY" in remote_sql and "<=>" in remote_sql and "LIMIT 10" in remote_sql


def test_bulk_load_into_a_shard_builds_the_index_there(service, shard, shard_server, make_instance):
    made = make_instance("generic", shard=shard)
    rng = np.random.default_rng(3)
    vectors = rng.random((300, made.embedding_dim), dtype=np.float32)
    with service.database.transaction() as conn:
        bulk_load.bulk_load(conn, made.id, ((f"b{i}", "0", 0, vectors[i], i % 10) for i in range(300)),
                            columns=bulk_load.BULK_COLUMNS + ("int_attr",))
    part = f"pictures_{made.id}"
    assert remote(shard_server, f"SELECT count(*) FROM imagesearch.{part}") == [(300,)]
    assert remote(shard_server, "SELECT count(*) FROM pg_indexes WHERE indexname = %s", (f"{part}_embedding_hnsw",)) == [(1,)]
    assert service.search_by_name(made.name, "b17", "0", num=1).matches[0].product_id == "b17"
    # A filter on a shard is planned from a count there (the local planner cannot estimate it): 30 match,
    # so they are scored exactly, and the answer is numpy's.
    with service.database.reading() as conn:
        assert picture_search.estimate(conn, made.id, parse_filter("int_attr=3"), None).matching == 30
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    matching = np.arange(3, 300, 10)
    exact = matching[np.argsort(-(unit[matching] @ unit[17]))][:10]
    found = service.search_by_name(made.name, "b17", "0", num=10, filter="int_attr=3").matches
    assert [m.product_id for m in found] == [f"b{i}" for i in exact]


@pytest.mark.parametrize("name, url, message", [
    ("", "postgresql://h/db", "shard is required"),  # MissingParameter
    ("Bad-Name", "postgresql://h/db", "a-z, 0-9 and _"),
    ("x" * 41, "postgresql://h/db", "1-40 characters"),
    ("ok", "mysql://h/db", "postgresql://user:password@host"),
    ("ok", "not a url", "postgresql://user:password@host"),
    ("ok", "postgresql:///db", "one host"),
    ("ok", "", "url is required"),
    ("ok", "postgresql://h:abc/db", "postgresql://user:password@host"),
    ("ok", "postgresql://h:70000/db", "port must be 1-65535"),
])
def test_a_bad_shard_is_refused(service, name, url, message):
    with pytest.raises((InvalidParameter, MissingParameter), match=message):
        service.shards.add(name, url)
    assert "ok" not in [s["name"] for s in service.shards.listing()]


def test_a_shard_that_cannot_be_reached_is_refused_and_nothing_kept(service, engine):
    with pytest.raises(InvalidParameter, match="the shard gone cannot be used: could not establish connection"):
        service.shards.add("gone", "postgresql://postgres:secret@127.0.0.1:1/db")
    assert "gone" not in [s["name"] for s in service.shards.listing()]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'imagesearch_shard_gone'")).scalar() == 0


def test_dblink_is_not_every_roles_to_call(shard, engine):
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT has_function_privilege('imagesearch_reader', 'dblink_exec(text,text)', 'EXECUTE')")).scalar() is False


def test_shards_refuse_what_would_break_them(service, shard, make_instance):
    with pytest.raises(InvalidParameter, match="already exists"):
        service.shards.add(shard, "postgresql://elsewhere/db")
    with pytest.raises(InvalidParameter, match="no shard named 'nowhere'"):
        service.create_instance(f"nowhere-{shard}", "generic", shard="nowhere")
    assert f"nowhere-{shard}" not in [i.name for i in service.list_instances()]
    held = make_instance("generic", shard=shard)
    with pytest.raises(InvalidParameter, match=f"holds instances \\({held.name}"):
        service.shards.drop(shard)
    with pytest.raises(InvalidParameter, match="no shard named"):
        service.shards.drop("nowhere")


def test_the_shard_commands(service, shard, settings, engine):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    listed = CliRunner().invoke(cli, ["shard", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = [r for r in json.loads(listed.stdout) if r["Name"] == shard]
    assert "host=" in row["Address"] and "password" not in listed.stdout
    bad = CliRunner().invoke(cli, ["shard", "add", "Bad", "postgresql://h/db"], env=env)
    assert bad.exit_code != 0 and "a-z, 0-9 and _" in bad.output
    made = CliRunner().invoke(cli, ["instance", "create", f"cli-{shard}", "--type", "generic", "--shard", shard], env=env)
    assert made.exit_code == 0 and made.stdout.endswith(f"on shard {shard})\n"), made.output
    service.delete_instance(f"cli-{shard}")


def test_the_sql_surface_searches_a_shard_with_a_login_its_definer_cannot_read(service, shard, make_instance, engine,
                                                                             logins):
    made = make_instance("generic", shard=shard)
    for product_id, picture in list(PICTURES.items())[:3]:
        service.add_image(made.name, product_id, "0.png", picture)
    reader = logins.make("reader", "imagesearch_reader")
    assert reader.run("SELECT product_id FROM imagesearch.search_by_picture(:i, 'p1', '0.png', 2)",
                      i=made.name)[0] == ("p1",)
    with engine.connect() as conn:  # what the functions' role sees of the logins: nothing
        conn.exec_driver_sql("SET ROLE imagesearch_definer")
        options = conn.execute(sa.text("SELECT umoptions FROM pg_user_mappings WHERE srvname = :s"),
                               {"s": f"imagesearch_shard_{shard}"}).scalars().all()
        usable = conn.execute(sa.text("SELECT has_server_privilege(:s, 'USAGE')"),
                              {"s": f"imagesearch_shard_{shard}"}).scalar()
        conn.rollback()
    assert len(options) == 2 and options == [None, None] and usable is False
