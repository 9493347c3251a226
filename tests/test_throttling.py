"""Throttling as the README promises it, with the shipped limits, through the production server: searches
(CheckImageExists and CompareSimilarByImage among them) at the instance's QPS plan, adds and updates at 5/s,
deletes at 20/s, each instance and kind counted apart, over it HTTP 429 Throttling. Each burst runs inside
one second of the database's clock, the window the server counts in (tests/rate_windows.py), so the counts
are exact: the limit admitted, the next refused."""

from __future__ import annotations

import base64

import sqlalchemy as sa

from imagesearch_pg.errors import Throttling
from imagesearch_pg.service.throttling import Throttle
from imagesearch_pg.store.database import Database
from tests.pictures import encode, noise
from tests.rate_windows import call, in_one_second

ADDS_PER_SECOND, DELETES_PER_SECOND = 5, 20  # the README's numbers, not the code's constants
REFUSED = "429 Throttling"
PICTURE = base64.b64encode(encode(noise(160, 160, seed=5))).decode()


def stocked(service, make_instance, **options) -> str:
    """An instance holding picture p/1.jpg (added through the service: not counted)."""
    name = make_instance("generic", **options).name
    service.add_image(name, "p", "1.jpg", base64.b64decode(PICTURE))
    return name


def test_searches_and_the_actions_counted_as_searches_share_the_instances_qps_plan(
        server, credentials, engine, service, make_instance):
    plan, other = stocked(service, make_instance, qps=3), stocked(service, make_instance, qps=3)

    def burst():
        def at(instance, action, **fields):
            return call(server, credentials, action, instance, **fields)

        return [
            at(plan, "CheckImageExists", ProductId="p", PicName="1.jpg"),
            at(plan, "SearchImageByName", ProductId="p", PicName="1.jpg"),
            at(plan, "SearchImageByFilter", Filter="int_attr>0"),  # the plan's third search this second
            at(plan, "CompareSimilarByImage", PrimaryPicContent=PICTURE, SecondaryPicContent=PICTURE),
            at(plan, "SearchImageByPic", PicContent=PICTURE),
            at(plan, "CheckImageExists", ProductId="p", PicName="1.jpg"),
            at(other, "CheckImageExists", ProductId="p", PicName="1.jpg"),  # another instance's count
            at(plan, "UpdateImage", ProductId="p", PicName="1.jpg", IntAttr="1"),  # adds have their own
            at(plan, "DeleteImage", ProductId="nothing-here"),  # and deletes theirs
        ]

    assert in_one_second(engine, burst) == ["OK"] * 3 + [REFUSED] * 3 + ["OK"] * 3


def test_a_changed_plan_applies_to_the_running_server_at_once(server, credentials, engine, service, make_instance):
    """The plan is changed by another process (the CLI, the console) while the server runs."""
    shop = stocked(service, make_instance, qps=2)

    def searches(count):
        return lambda: [call(server, credentials, "CheckImageExists", shop, ProductId="p", PicName="1.jpg")
                        for _ in range(count)]

    assert in_one_second(engine, searches(3)) == ["OK"] * 2 + [REFUSED]
    service.change_plan(shop, qps=4)
    assert in_one_second(engine, searches(5)) == ["OK"] * 4 + [REFUSED]
    service.change_plan(shop, qps=1)
    assert in_one_second(engine, searches(2)) == ["OK", REFUSED]


def test_adds_and_updates_are_admitted_at_5_per_second(server, credentials, engine, service, make_instance):
    shop, other = stocked(service, make_instance, qps=1000), stocked(service, make_instance)

    def burst():
        updates = [call(server, credentials, "UpdateImage", shop, ProductId="p", PicName="1.jpg", IntAttr=str(i))
                   for i in range(ADDS_PER_SECOND)]
        return updates + [
            call(server, credentials, "AddImage", shop, ProductId="q", PicName="1.jpg", PicContent=PICTURE),
            call(server, credentials, "UpdateImage", shop, ProductId="p", PicName="1.jpg", IntAttr="9"),
            call(server, credentials, "UpdateImage", other, ProductId="p", PicName="1.jpg", IntAttr="9"),
            call(server, credentials, "DeleteImage", shop, ProductId="nothing-here"),
            call(server, credentials, "CheckImageExists", shop, ProductId="p", PicName="1.jpg"),
        ]

    assert in_one_second(engine, burst, before=lambda: service.delete_image(shop, "q", "1.jpg")) == (
        ["OK"] * ADDS_PER_SECOND + [REFUSED] * 2 + ["OK"] * 3)
    assert service.check_image_exists(shop, "q", "1.jpg") is None  # the refused add changed nothing


def test_deletes_are_admitted_at_20_per_second(server, credentials, engine, service, make_instance):
    shop, other = stocked(service, make_instance, qps=1000), stocked(service, make_instance)

    def burst():
        deletes = [call(server, credentials, "DeleteImage", shop, ProductId=f"absent-{i}")
                   for i in range(DELETES_PER_SECOND)]
        return deletes + [
            call(server, credentials, "DeleteImage", shop, ProductId="p"),
            call(server, credentials, "DeleteImage", other, ProductId="absent"),
            call(server, credentials, "UpdateImage", shop, ProductId="p", PicName="1.jpg", IntAttr="9"),
        ]

    def restock():
        service.add_image(shop, "p", "1.jpg", base64.b64decode(PICTURE))

    assert in_one_second(engine, burst, before=restock) == ["OK"] * DELETES_PER_SECOND + [REFUSED] + ["OK"] * 2
    assert service.check_image_exists(shop, "p", "1.jpg").attributes.int_attr == 9  # the refused delete did nothing


def test_throttle_counts_are_shared_between_processes(service, make_instance, engine):
    """Two engines stand for two worker processes: together they admit the limit per second, no more."""
    instance_id = service.instances.cached(make_instance("generic").name).id
    other_engine = sa.create_engine(service.database.engine.url)
    try:
        workers = [Throttle(service.database), Throttle(Database(other_engine))]

        def burst():
            outcomes = []
            for i in range(5):
                try:
                    workers[i % 2].admit(instance_id, "search", 3)
                    outcomes.append("admitted")
                except Throttling:
                    outcomes.append("refused")
            return outcomes

        assert in_one_second(engine, burst) == ["admitted"] * 3 + ["refused"] * 2
    finally:
        other_engine.dispose()
