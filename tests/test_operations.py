"""The picture operations besides add and search: exists, update, delete by filter, listing, compare,
clear, capacity, and consistency under concurrent writes. Real database, real encoder."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from imagesearch_pg.errors import (
    InstanceStatusError,
    InvalidFilter,
    InvalidParameter,
    MissingParameter,
    NoSpecifiedSearchPic,
)
from imagesearch_pg.service import Attributes
from tests.pictures import encode, noise, sample_photos

PHOTOS = sample_photos()


def stored_embedding(engine, instance_name, product_id, pic_name):
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT p.embedding::text FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id"
                " WHERE i.name = :n AND p.product_id = :p AND p.pic_name = :q"
            ),
            {"n": instance_name, "p": product_id, "q": pic_name},
        ).scalar()


@pytest.fixture
def filled(service, make_instance):
    """Six noise pictures: ProductId a/b/c, PicName 1/2, IntAttr 0..5, StrAttr 'x'/'y'."""
    instance = make_instance("generic")
    for i in range(6):
        service.add_image(
            instance.name, "abc"[i // 2], str(i % 2 + 1), encode(noise(160, 160, seed=i)),
            attributes=Attributes(int_attr=i, str_attr="x" if i < 3 else "y", custom_content=f"c{i}"),
        )
    return instance.name


def test_check_image_exists(service, filled):
    found = service.check_image_exists(filled, "b", "1")
    assert (found.product_id, found.pic_name, found.score) == ("b", "1", None)
    assert (found.attributes.int_attr, found.attributes.str_attr, found.attributes.custom_content) == (2, "x", "c2")
    assert service.check_image_exists(filled, "b", "3") is None
    with pytest.raises(MissingParameter):
        service.check_image_exists(filled, "", "1")
    with pytest.raises(InvalidParameter):
        service.check_image_exists(filled, "a", "x" * 513)


def test_update_image_changes_attributes_not_the_vector(service, filled, engine):
    before = stored_embedding(engine, filled, "c", "2")
    service.update_image(filled, "c", "2", Attributes(int_attr=99, str_attr2="new"))
    after = service.check_image_exists(filled, "c", "2").attributes
    assert (after.int_attr, after.str_attr2, after.str_attr, after.custom_content) == (99, "new", "y", "c5")
    assert stored_embedding(engine, filled, "c", "2") == before
    assert service.search_by_name(filled, "c", "2", filter="int_attr=99").matches[0].pic_name == "2"
    with pytest.raises(NoSpecifiedSearchPic):
        service.update_image(filled, "c", "9", Attributes(int_attr=1))
    with pytest.raises(MissingParameter):
        service.update_image(filled, "c", "2", Attributes())
    with pytest.raises(InvalidParameter, match="IntAttr"):
        service.update_image(filled, "c", "2", Attributes(int_attr=2**31, str_attr="z"))
    assert service.check_image_exists(filled, "c", "2").attributes.str_attr == "y"  # nothing half-written


def test_delete_by_filter(service, filled):
    with pytest.raises(InvalidFilter):
        service.delete_image(filled, filter="int_attr >= 'x'")
    with pytest.raises(InvalidParameter):
        service.delete_image(filled, "a", filter="int_attr >= 0")
    assert service.describe_instance(filled).picture_count == 6
    deleted = service.delete_image(filled, filter='int_attr >= 2 AND str_attr = "x"')
    assert deleted.pic_names == ["1"]  # b/1 (IntAttr 2)
    assert service.check_image_exists(filled, "b", "1") is None
    assert service.describe_instance(filled).picture_count == 5
    assert sorted(service.delete_image(filled, filter="int_attr in (0, 5)").pic_names) == ["1", "2"]
    assert service.delete_image(filled, filter="int_attr = 1000").pic_names == []
    assert service.describe_instance(filled).picture_count == 3


def test_search_by_filter_lists_in_a_stable_order(service, filled):
    listed = service.search_by_filter(filled, "int_attr >= 1", num=10)
    assert [(a.product_id, a.pic_name) for a in listed.matches] == [("a", "2"), ("b", "1"), ("b", "2"), ("c", "1"), ("c", "2")]
    assert listed.docs_found == 5 and all(a.score is None for a in listed.matches)
    page = service.search_by_filter(filled, "int_attr >= 1", num=2, start=2)
    assert [(a.product_id, a.pic_name) for a in page.matches] == [("b", "2"), ("c", "1")]
    assert service.search_by_filter(filled, 'str_attr = "none"').matches == []
    with pytest.raises(MissingParameter):
        service.search_by_filter(filled, "")
    with pytest.raises(InvalidFilter):
        service.search_by_filter(filled, "int_attr >")


def test_compare_pictures(service, make_instance):
    instance = make_instance("generic")
    coffee, cat = encode(PHOTOS["coffee"]), encode(PHOTOS["chelsea"])
    same = service.compare_pictures(instance.name, coffee, coffee)
    copy = service.compare_pictures(instance.name, coffee, encode(PHOTOS["coffee"][20:-20, 30:-30]))
    other = service.compare_pictures(instance.name, coffee, cat)
    assert same > 0.999 and 0.8 < copy < same and other < 0.6
    assert service.describe_instance(instance.name).picture_count == 0  # compares store nothing


def test_clear_instance(service, filled):
    service.clear_instance(filled)
    assert service.describe_instance(filled).picture_count == 0
    assert service.search_by_picture(filled, encode(noise(160, 160, seed=1))).matches == []
    service.add_image(filled, "a", "1", encode(noise(160, 160, seed=1)))
    assert service.describe_instance(filled).picture_count == 1


def test_capacity_refuses_new_pictures_but_not_replacements(service, make_instance, engine):
    instance = make_instance("generic", capacity=3)
    for i in range(3):
        service.add_image(instance.name, f"p{i}", "1", encode(noise(120, 120, seed=i)))
    with pytest.raises(InstanceStatusError, match="full"):
        service.add_image(instance.name, "p3", "1", encode(noise(120, 120, seed=3)))
    assert service.check_image_exists(instance.name, "p3", "1") is None
    service.add_image(instance.name, "p0", "1", encode(noise(120, 120, seed=9)), attributes=Attributes(int_attr=7))
    assert service.check_image_exists(instance.name, "p0", "1").attributes.int_attr == 7
    service.delete_image(instance.name, "p1")
    service.add_image(instance.name, "p3", "1", encode(noise(120, 120, seed=3)))
    assert service.describe_instance(instance.name).picture_count == 3


def test_concurrent_adds_of_one_key_leave_one_writers_row(service, make_instance, engine):
    instance = make_instance("generic")
    pictures = {i: encode(noise(160, 160, seed=20 + i)) for i in range(6)}
    errors = []

    def add(i):
        try:
            service.add_image(instance.name, "same", "key", pictures[i], attributes=Attributes(int_attr=i, str_attr=str(i)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert service.describe_instance(instance.name).picture_count == 1
    row = service.check_image_exists(instance.name, "same", "key")
    winner = row.attributes.int_attr
    assert row.attributes.str_attr == str(winner)  # all columns from the same writer
    found = service.search_by_picture(instance.name, pictures[winner], crop=False).matches[0]
    assert found.score > 0.999  # its vector too


def test_a_picture_is_searchable_once_added_and_gone_once_deleted(service, make_instance):
    instance = make_instance("generic")
    for i in range(20):
        picture = encode(noise(140, 140, seed=100 + i))
        service.add_image(instance.name, f"p{i}", "1", picture)
        assert service.search_by_picture(instance.name, picture, num=1).matches[0].product_id == f"p{i}"
        service.delete_image(instance.name, f"p{i}", "1")
        assert all(a.product_id != f"p{i}" for a in service.search_by_picture(instance.name, picture).matches)
        service.add_image(instance.name, f"p{i}", "1", picture)
    assert service.describe_instance(instance.name).picture_count == 20


def test_keys_of_512_characters_in_any_script_are_stored_found_and_deleted(service, instance):
    # 512 characters of CJK and of emoji are 1.5 kB and 2 kB of UTF-8: more than a b-tree entry holds.
    product, pic = "日本語" * 170 + "日本", "😀" * 512
    service.add_image(instance.name, product, pic, encode(PHOTOS["coffee"]))
    service.add_image(instance.name, product, pic, encode(PHOTOS["coffee"]), attributes=Attributes(int_attr=2))
    assert service.describe_instance(instance.name).picture_count == 1  # the second add replaced the first
    assert service.check_image_exists(instance.name, product, pic).attributes.int_attr == 2
    assert service.search_by_name(instance.name, product, pic, num=1).matches[0].pic_name == pic
    assert service.delete_image(instance.name, product).pic_names == [pic]
    assert service.check_image_exists(instance.name, product, pic) is None
