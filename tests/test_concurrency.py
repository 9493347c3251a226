"""Operations racing each other, each with a defined outcome: add against delete of one key, clear and
instance deletion during searches, a key revoked during traffic. (Same-key upserts: test_operations.)"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from imagesearch_pg.errors import InvalidInstance
from tests.http_requests import post, signed_request
from tests.pictures import encode, noise


def _rows(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id"
            " WHERE i.name = :n"), {"n": name}).scalar()


def _race(*jobs) -> list[BaseException]:
    """Run the jobs on threads at once; the exceptions they raised."""
    failures: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return failures


def test_add_against_delete_of_one_key_keeps_the_count_true(service, instance, engine):
    picture = encode(noise(120, 120, seed=1))

    def adds():
        for _ in range(15):
            service.add_image(instance.name, "k", "1", picture)

    def deletes():
        for _ in range(15):
            service.delete_image(instance.name, "k", "1")

    assert _race(adds, deletes, adds, deletes) == []
    stored = _rows(engine, instance.name)
    assert stored in (0, 1)  # the last writer wins whole: there or not, never twice
    assert service.describe_instance(instance.name).picture_count == stored


def test_clear_during_searches_gives_whole_answers(service, instance, engine):
    pictures = [encode(noise(120, 120, seed=i)) for i in range(6)]
    for i, picture in enumerate(pictures):
        service.add_image(instance.name, f"p{i}", "1", picture)
    counts: list[int] = []

    def searches():
        for i in range(8):
            found = service.search_by_name(instance.name, f"p{i % 6}", "1", num=10) if i < 2 else None
            result = service.search_by_filter(instance.name, "int_attr != 1", num=10)
            counts.append(len(result.matches))
            if found is not None:
                assert found.matches[0].product_id == f"p{i % 6}"

    failures = _race(searches, searches, lambda: service.clear_instance(instance.name))
    # A search sees the instance before the clear (all six) or after it (none), never a part.
    assert all(n in (0, 6) for n in counts), counts
    assert [f for f in failures if "NoSpecifiedSearchPic" not in type(f).__name__] == []
    assert _rows(engine, instance.name) == 0 and service.describe_instance(instance.name).picture_count == 0


def test_deleting_an_instance_during_searches_answers_invalid_instance(service, make_instance):
    name = make_instance("generic").name
    service.add_image(name, "p", "1", encode(noise(120, 120, seed=2)))
    seen: list[list[str]] = [[], []]  # each thread's answers, in order

    def searches(answers: list[str]):
        for _ in range(20):
            try:
                found = service.search_by_filter(name, "int_attr != 1").matches
                answers.append("found" if [m.product_id for m in found] == ["p"] else "empty" if not found else "?")
            except InvalidInstance:
                answers.append("gone")

    def delete_and_recreate():
        service.delete_instance(name)
        service.create_instance(name, "generic")  # the fixture deletes it at the end

    assert _race(lambda: searches(seen[0]), lambda: searches(seen[1]), delete_and_recreate) == []
    # Each search saw the instance whole before its deletion, none at all, or whole (empty) after its
    # re-creation, in that order: never the old picture under the new instance, never a part.
    order = ["found", "gone", "empty"]
    for answers in seen:
        assert len(answers) == 20 and set(answers) <= set(order), answers
        assert answers == sorted(answers, key=order.index), answers


PROMISED_SECONDS = 10.0  # the README: "a revocation takes effect everywhere within 10 s"


def test_a_key_revoked_during_traffic_is_refused_everywhere_within_10_seconds(server, keys, shop):
    """Through the production server, whose worker processes each remember a key they looked up: every
    request sent 10 s after the revocation was committed is refused, whichever process answers it (the
    traffic goes on 2 s longer, on a new connection per request: dozens of requests, to every process)."""
    key_id, secret = keys.create([shop])
    body = f"InstanceName={shop}".encode()
    answers: list[tuple[float, str]] = []  # (sent at, "OK" or the Code)
    revoked_at: list[float] = []
    key_worked = threading.Event()
    began = time.monotonic()

    def traffic():
        # Until 2 s past the promise (or a minute passed: the revocation never came).
        while time.monotonic() < began + 60:
            sent = time.monotonic()
            status, answer = post(server, signed_request(server, key_id, secret, body), body)
            answers.append((sent, "OK" if status == 200 else answer["Code"]))
            if status == 200:
                key_worked.set()
            if revoked_at and sent > revoked_at[0] + PROMISED_SECONDS + 2:
                return
            time.sleep(0.05)  # a client's pace, not a synchronisation: the assertions use the times sent

    def revoke():
        assert key_worked.wait(timeout=30), "the key never worked"
        keys.revoke(key_id)
        revoked_at.append(time.monotonic())

    assert _race(traffic, traffic, revoke) == []
    assert {code for _, code in answers} <= {"OK", "InvalidAccessKeyId"}
    late = [code for sent, code in answers if sent > revoked_at[0] + PROMISED_SECONDS]
    assert len(late) > 10 and set(late) == {"InvalidAccessKeyId"}, f"{late.count('OK')} of {len(late)} passed"
