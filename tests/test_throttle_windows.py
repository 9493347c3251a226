"""Throttling's count (imagesearch_pg/service/throttling.py, imagesearch_pg/store/request_counts.py) against
the real database, measured in windows aligned to its counting: each call is bracketed by two readings of
the database's clock, and only calls whose brackets lie in one second are compared with the rule (a run that
crosses a second starts again under a fresh kind, whose counts begin at zero)."""

from __future__ import annotations

import itertools
import secrets
import uuid

import pytest
import sqlalchemy as sa

from imagesearch_pg.errors import Throttling
from imagesearch_pg.service.throttling import Throttle
from imagesearch_pg.store import request_counts
from imagesearch_pg.store.tables import instances
from imagesearch_pg.store.tables import request_counts as counts_table

ATTEMPTS = 50  # calls crossing a second are rare (a run takes milliseconds); 50 misses in a row do not happen


@pytest.fixture
def instance_id(engine):
    """An instance id of this test alone (the counts have no foreign key); its counts are removed after."""
    taken = -1 - secrets.randbelow(2**31 - 2)
    yield taken
    with engine.begin() as conn:
        conn.execute(sa.delete(counts_table).where(counts_table.c.instance_id == taken))


def database_second(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp())))).scalar_one())


def in_one_second(engine, calls):
    """Run ``calls`` (each given a fresh kind per attempt) until every one of them ran inside one second of the
    database's clock; returns that second and their results."""
    for _ in range(ATTEMPTS):
        kind = f"kind-{uuid.uuid4().hex}"
        first = database_second(engine)
        results = [call(kind) for call in calls]
        if database_second(engine) == first:
            return first, kind, results
    raise AssertionError(f"{ATTEMPTS} runs each crossed a second of the database's clock")


def outcome(throttle, instance_id, limit):
    def call(kind):
        try:
            throttle.admit(instance_id, kind, limit)
        except Throttling as refused:
            return str(refused)
        return "admitted"
    return call


@pytest.mark.parametrize("limit", [1, 3])
def test_the_nth_request_of_a_second_is_admitted_while_n_is_within_the_limit(database, engine, instance_id, limit):
    throttle = Throttle(database)
    _, kind, results = in_one_second(engine, [outcome(throttle, instance_id, limit)] * (limit + 2))
    refusal = f"more than {limit} {kind} requests per second on this instance; retry shortly"
    assert results == ["admitted"] * limit + [refusal] * 2


def test_without_a_limit_given_the_instances_plan_is_read_then(database, engine, make_instance):
    """A limit of None is the QPS plan the database holds when the request is counted; an instance that is
    gone has no plan, and its requests are not refused here (the action itself finds it missing)."""
    name = make_instance("generic", qps=2).name
    with engine.connect() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
    throttle = Throttle(database)
    _, kind, results = in_one_second(engine, [outcome(throttle, instance_id, None)] * 4)
    assert results == ["admitted"] * 2 + [f"more than 2 {kind} requests per second on this instance; retry shortly"] * 2
    with engine.begin() as conn:
        conn.execute(sa.update(instances).where(instances.c.id == instance_id).values(qps=3))
    _, kind, results = in_one_second(engine, [outcome(throttle, instance_id, None)] * 4)
    assert results.count("admitted") == 3
    gone = -1 - secrets.randbelow(2**31 - 2)
    try:
        assert in_one_second(engine, [outcome(throttle, gone, None)] * 3)[2] == ["admitted"] * 3
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(counts_table).where(counts_table.c.instance_id.in_([instance_id, gone])))


def test_counts_are_per_instance_and_kind(database, engine, instance_id):
    other_instance = instance_id - 1 if instance_id > -2**31 + 1 else instance_id + 1
    with database.transaction() as conn:
        conn.execute(sa.delete(counts_table).where(counts_table.c.instance_id == other_instance))

    def count(instance, suffix):
        def call(kind):
            with database.transaction() as conn:
                return request_counts.count_request(conn, instance, kind + suffix)
        return call

    try:
        second, kind, results = in_one_second(engine, [
            count(instance_id, ""), count(instance_id, ""), count(other_instance, ""), count(instance_id, "-add"),
            count(instance_id, ""),
        ])
        assert results == [1, 2, 1, 1, 3]
        with engine.connect() as conn:
            rows = conn.execute(sa.select(counts_table.c.instance_id, counts_table.c.kind, counts_table.c.second,
                                          counts_table.c.count)
                                .where(counts_table.c.instance_id.in_([instance_id, other_instance]),
                                       counts_table.c.kind.in_([kind, kind + "-add"]))).all()
        assert sorted(rows) == sorted([(instance_id, kind, second, 3), (other_instance, kind, second, 1),
                                       (instance_id, kind + "-add", second, 1)])
    finally:
        with database.transaction() as conn:
            conn.execute(sa.delete(counts_table).where(counts_table.c.instance_id == other_instance))


@pytest.mark.parametrize("draw,forgets", [(0, True), (1, False), (999, False)])
def test_now_and_then_a_count_forgets_the_seconds_older_than_a_minute(database, engine, instance_id, monkeypatch,
                                                                        draw, forgets):
    """One request in a thousand (secrets.randbelow(1000) drew 0) deletes counts older than 60 seconds."""
    drawn = []
    monkeypatch.setattr(request_counts.secrets, "randbelow", lambda n: drawn.append(n) or draw)
    for attempt in itertools.count():
        assert attempt < ATTEMPTS, "every attempt crossed a second of the database's clock"
        now = database_second(engine)
        old = {now - 61: "older than a minute", now - 60: "a minute old", now - 1: "a second old"}
        with database.transaction() as conn:
            conn.execute(sa.delete(counts_table).where(counts_table.c.instance_id == instance_id))
            conn.execute(sa.insert(counts_table), [
                {"instance_id": instance_id, "kind": "old", "second": second, "count": 7} for second in old])
            request_counts.count_request(conn, instance_id, "now")
        if database_second(engine) == now:
            break
    with engine.connect() as conn:
        kept = set(conn.execute(sa.select(counts_table.c.second).where(counts_table.c.instance_id == instance_id,
                                                                       counts_table.c.kind == "old")).scalars())
    assert kept == ({now - 60, now - 1} if forgets else set(old))
    assert set(drawn) == {1000}
