"""Searches on a streaming replica: a real hot standby of a primary of its own (both embedded servers,
tests/standby.py), routing, read-your-writes, a standby that falls behind, and one stopped mid-load."""

from __future__ import annotations

import json
import os
import threading
import time
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

from imagesearch_pg.config import Settings
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.store import schema
from imagesearch_pg.store.database import Database, InvalidDatabaseUrl
from tests.pictures import encode, noise
from tests.standby import Standby

pytestmark = pytest.mark.skipif(bool(os.environ.get("IMAGESEARCH_DATABASE_URL")),
                                reason="pg_basebackup needs the embedded primary's own data directory")

PICTURES = {f"p{i}": encode(noise(256, 256, seed=i)) for i in range(6)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, encoders):
    home = tmp_path_factory.mktemp("replicated")
    settings = Settings.from_env({"IMAGESEARCH_HOME": str(home)})
    database = Database.connect(settings)
    schema.upgrade(database.engine)
    socket_dir = parse_qs(urlparse(database.embedded_server.get_uri()).query)["host"][0]
    standby = Standby(settings.pgdata, socket_dir, settings.pgdata.parent / "standby")
    database.use_replicas((standby.url,), max_lag=1.0)
    service = ImageSearch(database, encoders, settings)
    for name in ("a", "b"):
        service.create_instance(name, "generic")
        for product_id, picture in PICTURES.items():
            service.add_image(name, product_id, "0.png", picture)
    yield service, standby
    service.close()
    standby.stop("immediate")


def router(service):
    return service.database.replicas


def until(condition, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def standby_usable(service) -> bool:
    return router(service).status()[0]["usable"]  # status() starts the checks in this process if need be


def served(service) -> tuple[int, int]:
    """(reads the standby answered, reads the primary answered)"""
    return router(service).replicas[0].served, router(service).served_by_primary


def search(service, instance: str, product_id: str) -> list[str]:
    return [m.product_id for m in service.search_by_name(instance, product_id, "0.png", num=3).matches]


def test_searches_go_to_the_standby(cluster):
    service, standby = cluster
    assert standby.sql("SELECT pg_is_in_recovery()") == "t"
    until(lambda: standby_usable(service))
    before = served(service)
    for product_id in PICTURES:
        assert search(service, "a", product_id)[0] == product_id
    after = served(service)
    assert after[0] - before[0] == len(PICTURES) and after[1] == before[1]
    # The standby's own sessions ran the searches (each shows the last statement it ran).
    ran = standby.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                      " AND query LIKE '%ORDER BY%<=>%'")
    assert int(ran) >= 1


def test_a_client_reads_its_own_writes_while_the_standby_is_paused(cluster):
    service, standby = cluster
    until(lambda: standby_usable(service))
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        service.add_image("a", "new", "0.png", encode(noise(256, 256, seed=99)))
        before = served(service)
        assert search(service, "a", "new")[0] == "new"  # the standby has not replayed it: the primary answers
        assert served(service)[1] == before[1] + 1
        service.delete_image("a", "new")
        assert "new" not in [m.product_id for m in service.search_by_name("a", "p0", "0.png", num=10).matches]
        # The standby falls behind the primary: past max_lag, searches of the other instance leave it too.
        until(lambda: not standby_usable(service))
        before = served(service)
        assert search(service, "b", "p1")[0] == "p1"
        assert served(service) == (before[0], before[1] + 1)
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    until(lambda: standby_usable(service))
    before = served(service)
    assert search(service, "b", "p1")[0] == "p1" and search(service, "a", "p2")[0] == "p2"
    assert served(service)[0] == before[0] + 2


def test_a_standby_stopped_mid_load_fails_no_search(cluster):
    service, standby = cluster
    until(lambda: standby_usable(service))
    failures, answers, stop = [], [], threading.Event()

    def load() -> None:
        while not stop.is_set():
            for product_id in PICTURES:
                try:
                    answers.append(search(service, "b", product_id)[0] == product_id)
                except Exception as exc:  # noqa: BLE001 - any failure is what this test counts
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        until(lambda: router(service).replicas[0].served > 20)
        standby.stop("immediate")
        stopped_at = len(answers)
        until(lambda: len(answers) > stopped_at + 50)
        assert not standby_usable(service)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and all(answers)
    standby.start()  # and back: the checks find it and it serves again
    until(lambda: standby_usable(service))
    before = served(service)
    assert search(service, "b", "p3")[0] == "p3" and served(service)[0] == before[0] + 1


def test_a_server_that_is_not_a_standby_serves_no_search(cluster):
    service, _ = cluster
    database = Database(engine=service.database.engine)  # the same primary, named as its own replica
    database.use_replicas((service.database.libpq_url(),), max_lag=1.0)
    try:
        assert database.read_pictures(1, lambda conn: conn.exec_driver_sql("SELECT 1").scalar()) == 1
        assert database.replicas.replicas[0].served == 0 and database.replicas.served_by_primary == 1
        assert database.replicas.status()[0]["usable"] is False
    finally:
        database.replicas.close()
        database.reader.dispose()


def test_replica_urls_come_from_the_environment_and_are_checked():
    settings = Settings.from_env({"IMAGESEARCH_REPLICA_URLS": " postgresql://r1/db , postgresql://r2/db ",
                                  "IMAGESEARCH_REPLICA_MAX_LAG": "2.5"})
    assert settings.replica_urls == ("postgresql://r1/db", "postgresql://r2/db") and settings.replica_max_lag == 2.5
    database = Database(engine=sa.create_engine("postgresql+psycopg://nobody@nowhere/db"))  # never connects
    with pytest.raises(InvalidDatabaseUrl, match="postgresql://"):
        database.use_replicas(("mysql://r1/db",), 1.0)


def test_the_command_shows_each_replica(cluster):
    from click.testing import CliRunner

    from imagesearch_pg.cli import cli

    service, standby = cluster
    env = {"IMAGESEARCH_DATABASE_URL": service.database.libpq_url(), "IMAGESEARCH_HOME": str(service.settings.home)}
    shown = CliRunner().invoke(cli, ["db", "replicas"], env={**env, "IMAGESEARCH_REPLICA_URLS": standby.url})
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.endswith("s behind, serves searches\n") and "socket" in shown.stdout
    both = CliRunner().invoke(cli, ["db", "replicas", "--json"],
                              env={**env, "IMAGESEARCH_REPLICA_URLS": f"{standby.url},{service.database.libpq_url()}"})
    assert both.exit_code == 1  # the primary is not a standby
    rows = [json.loads(line) for line in both.stdout.splitlines()]
    assert [row["usable"] for row in rows] == [True, False] and rows[1]["lag_seconds"] is None
    none = CliRunner().invoke(cli, ["db", "replicas"], env=env)
    assert none.exit_code == 1 and "set IMAGESEARCH_REPLICA_URLS" in none.output
