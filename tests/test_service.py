"""The service layer end to end on the real database and the real default encoder."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from flask_app import protocol
from imagesearch_pg.errors import (
    InvalidCategory,
    InvalidFilter,
    InvalidImage,
    InvalidImageSize,
    InvalidInstance,
    InvalidParameter,
    InvalidRegion,
    InvalidStartParameter,
    MissingParameter,
    NoSpecifiedSearchPic,
    OverflowMaxResultNum,
    OverflowMaxReturnNum,
)
from imagesearch_pg.service import Attributes
from imagesearch_pg.store.tables import pictures
from tests.pictures import encode, noise, sample_photos

PHOTOS = sample_photos()


def count_rows(engine, instance_name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id"
                " WHERE i.name = :n"
            ),
            {"n": instance_name},
        ).scalar_one()


@pytest.fixture(scope="module")
def gallery(service, tmp_path_factory):
    """A generic instance holding the sample photos, ProductId = photo name, PicName = '<name>.png'."""
    name = "gallery-" + tmp_path_factory.mktemp("g").name.replace("_", "-")[-20:]
    service.create_instance(name, "generic")
    for key, photo in PHOTOS.items():
        service.add_image(name, key, f"{key}.png", encode(photo), attributes=Attributes(int_attr=len(key)))
    yield name
    service.delete_instance(name)


# ---- edits of a photo, as a user's copies would be ----------------------------------------------

def crop_70(image):
    h, w = image.shape[:2]
    return image[int(h * 0.15): int(h * 0.85), int(w * 0.15): int(w * 0.85)]


def rotate_10(image):
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 10, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def recolour(image):
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + 12) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * 0.7, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def test_same_picture_is_found_first_with_score_above_099(service, gallery):
    for key, photo in PHOTOS.items():
        result = service.search_by_picture(gallery, encode(photo), num=3)
        assert result.matches[0].product_id == key
        assert result.matches[0].score > 0.99
        assert result.matches[0].score >= result.matches[1].score >= result.matches[2].score


@pytest.mark.parametrize("edit", [crop_70, rotate_10, recolour], ids=lambda f: f.__name__)
def test_edited_copy_is_found_first(service, gallery, edit):
    for key, photo in PHOTOS.items():
        query = encode(edit(photo), "JPEG", quality=85)
        best = service.search_by_picture(gallery, query, num=1).matches[0]
        assert best.product_id == key, f"{edit.__name__} of {key} found {best.product_id}"


def test_search_returns_attributes_and_paging(service, gallery):
    first = service.search_by_picture(gallery, encode(PHOTOS["coffee"]), num=4)
    assert first.matches[0].attributes.int_attr == len("coffee")
    assert first.matches[0].pic_name == "coffee.png"
    second_page = service.search_by_picture(gallery, encode(PHOTOS["coffee"]), num=2, start=2)
    assert [a.pic_name for a in second_page.matches] == [a.pic_name for a in first.matches[2:4]]
    assert first.docs_return == 4 and second_page.docs_return == 2


def test_score_threshold(service, gallery):
    result = service.search_by_picture(gallery, encode(PHOTOS["rocket"]), num=10, score_threshold=0.99)
    assert [a.product_id for a in result.matches] == ["rocket"]
    everything = service.search_by_picture(gallery, encode(PHOTOS["rocket"]), num=10, score_threshold=0.0)
    assert everything.docs_return == len(PHOTOS)


def test_search_by_name_finds_itself_first(service, gallery):
    result = service.search_by_name(gallery, "chelsea", "chelsea.png", num=len(PHOTOS))
    assert result.matches[0].pic_name == "chelsea.png" and result.matches[0].score > 0.999
    assert len(result.matches) == len(PHOTOS)
    with pytest.raises(NoSpecifiedSearchPic):
        service.search_by_name(gallery, "chelsea", "missing.png")


def test_search_by_vector_ranks_by_the_stored_vectors(service, gallery, engine):
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT p.embedding::text FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id"
            " WHERE i.name = :n AND p.product_id = 'coffee'"), {"n": gallery}).scalar_one()
    vector = np.array([float(x) for x in stored.strip("[]").split(",")])
    result = service.search_by_vector(gallery, 3.0 * vector, num=3)  # any length: scaled to unit length
    assert result.matches[0].product_id == "coffee" and result.matches[0].score > 0.999
    assert result.docs_found == len(PHOTOS) and len(result.matches) == 3
    assert service.search_by_vector(gallery, vector, filter="int_attr = 424242").matches == []


@pytest.mark.parametrize("vector, says", [
    ([0.1] * 1279, "1280"),
    ([0.1] * 1281, "1280"),
    ([[0.1] * 1280], "1280"),
    ([0.0] * 1280, "all zeros"),
    ([float("nan")] + [0.1] * 1279, "NaN"),
    ([float("inf")] + [0.1] * 1279, "NaN or an infinity"),
    (["a"] * 1280, "list of 1280 numbers"),
    ("abc", "list of 1280 numbers"),
    (None, "1280"),
])
def test_search_by_vector_refuses_what_is_not_a_query_vector(service, gallery, vector, says):
    with pytest.raises(InvalidParameter, match=says):
        service.search_by_vector(gallery, vector)


@pytest.mark.parametrize("options, error", [
    ({"filter": "int_attr >"}, InvalidFilter),
    ({"filter": "name = 'x'; DROP TABLE imagesearch.instances"}, InvalidFilter),
    ({"num": 0}, InvalidParameter),
    ({"num": 101}, OverflowMaxReturnNum),
    ({"start": -1}, InvalidStartParameter),
    ({"start": 499, "num": 10}, OverflowMaxResultNum),
    ({"score_threshold": 1.5}, InvalidParameter),
])
def test_search_by_vector_checks_the_options_every_search_checks(service, gallery, options, error):
    with pytest.raises(error):
        service.search_by_vector(gallery, [0.1] * 1280, **options)


def test_search_by_vector_on_a_missing_instance(service):
    with pytest.raises(InvalidInstance):
        service.search_by_vector("no-such-instance", [0.1] * 1280)


def test_base64_picture_is_accepted(service, gallery):
    text = base64.b64encode(encode(PHOTOS["astronaut"])).decode()  # as the HTTP protocol sends it
    assert service.search_by_picture(gallery, protocol.picture(text), num=1).matches[0].product_id == "astronaut"


def test_region_restricts_the_picture(service, instance):
    # Two photos side by side; a region around one of them finds that one.
    left, right = cv2.resize(PHOTOS["coffee"], (300, 300)), cv2.resize(PHOTOS["rocket"], (300, 300))
    service.add_image(instance.name, "coffee", "c", encode(left))
    service.add_image(instance.name, "rocket", "r", encode(right))
    both = encode(np.hstack([left, right]))
    assert service.search_by_picture(instance.name, both, region="300,600,0,300").matches[0].product_id == "rocket"
    assert service.search_by_picture(instance.name, both, region="0,300,0,300").matches[0].product_id == "coffee"
    info = service.add_image(instance.name, "both", "b", both, region="0,300,0,300")
    assert info.region == "0,300,0,300"
    with pytest.raises(InvalidRegion):
        service.search_by_picture(instance.name, both, region="0,601,0,300")


def test_upsert_replaces_picture_and_attributes(service, instance, engine):
    service.add_image(instance.name, "p", "a.jpg", encode(PHOTOS["coffee"]),
                      attributes=Attributes(int_attr=1, str_attr="old", custom_content="x"))
    service.add_image(instance.name, "p", "a.jpg", encode(PHOTOS["rocket"]), attributes=Attributes(str_attr2="new"))
    assert count_rows(engine, instance.name) == 1
    best = service.search_by_picture(instance.name, encode(PHOTOS["rocket"]), num=1).matches[0]
    assert best.score > 0.99
    assert best.attributes == Attributes(str_attr2="new")  # last write wins whole, no merge


def test_delete_by_product_and_by_pic_name(service, instance, engine):
    for i, key in enumerate(["coffee", "rocket", "chelsea"]):
        service.add_image(instance.name, "prod" if i < 2 else "other", f"{key}.png", encode(PHOTOS[key]))
    assert service.delete_image(instance.name, "prod", "coffee.png").pic_names == ["coffee.png"]
    top = service.search_by_picture(instance.name, encode(PHOTOS["coffee"]), num=5)
    assert "coffee.png" not in [a.pic_name for a in top.matches]
    assert sorted(service.delete_image(instance.name, "prod").pic_names) == ["rocket.png"]
    assert service.delete_image(instance.name, "prod").pic_names == []
    assert count_rows(engine, instance.name) == 1


def test_instances_are_isolated(service, make_instance):
    a, b = make_instance(), make_instance()
    service.add_image(a.name, "same", "same.png", encode(PHOTOS["coffee"]))
    service.add_image(b.name, "same", "same.png", encode(PHOTOS["rocket"]))
    in_a = service.search_by_picture(a.name, encode(PHOTOS["rocket"]), num=10).matches
    assert len(in_a) == 1 and in_a[0].score < 0.9  # only a's coffee, far from the rocket
    service.delete_image(a.name, "same")
    assert service.search_by_picture(b.name, encode(PHOTOS["rocket"]), num=1).matches[0].score > 0.99
    assert service.describe_instance(a.name).picture_count == 0
    assert service.describe_instance(b.name).picture_count == 1


def test_instance_lifecycle(service, make_instance):
    made = make_instance("trademark", capacity=500, qps=3)
    shown = service.describe_instance(made.name)
    assert (shown.service_type, shown.capacity, shown.qps, shown.picture_count) == ("trademark", 500, 3, 0)
    assert shown.embedding_dim == 1280 and shown.encoder == "efficientnet-lite0-trademark"
    assert made.name in [i.name for i in service.list_instances()]
    with pytest.raises(InvalidParameter, match="already exists"):
        service.create_instance(made.name, "generic")
    for bad in dict(name="bad name!"), dict(name=""), dict(name="x" * 65):
        with pytest.raises(InvalidParameter, match="instance name"):
            service.create_instance(bad["name"], "generic")
    with pytest.raises(InvalidParameter, match="service type"):
        service.create_instance("ok-name", "video")
    with pytest.raises(InvalidParameter, match="capacity"):
        service.create_instance("ok-name", "generic", capacity=0)
    with pytest.raises(InvalidInstance):
        service.describe_instance("ok-name")


def test_unknown_instance(service):
    with pytest.raises(InvalidInstance):
        service.search_by_picture("no-such-instance", encode(PHOTOS["coffee"]))
    with pytest.raises(InvalidInstance):
        service.add_image("no-such-instance", "p", "n", encode(PHOTOS["coffee"]))


LONG = "x" * 513

@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(product_id=""), MissingParameter, "ProductId"),
        (dict(product_id=LONG), InvalidParameter, "ProductId must be 1-512"),
        (dict(pic_name=LONG), InvalidParameter, "PicName must be 1-512"),
        (dict(pic_name="a\x00b"), InvalidParameter, "NUL"),
        (dict(attributes=Attributes(custom_content="c" * 4097)), InvalidParameter, "CustomContent"),
        (dict(attributes=Attributes(str_attr3="s" * 129)), InvalidParameter, "StrAttr3"),
        (dict(attributes=Attributes(int_attr=2**31)), InvalidParameter, "IntAttr"),
        (dict(attributes=Attributes(int_attr4=-(2**31) - 1)), InvalidParameter, "IntAttr4"),
        (dict(picture=b""), MissingParameter, "PicContent"),
        (dict(picture=b"not a picture"), InvalidImage, "not a picture"),
        (dict(picture=encode(noise(99, 300))), InvalidImageSize, "100-4096"),
        (dict(region="1,2,3"), InvalidRegion, "four integers"),
    ],
)
def test_bad_add_changes_nothing(service, instance, engine, kwargs, error, message):
    service.add_image(instance.name, "keep", "keep.png", encode(PHOTOS["coffee"]))
    args = dict(product_id="p", pic_name="n.png", picture=encode(PHOTOS["rocket"]))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        service.add_image(instance.name, args.pop("product_id"), args.pop("pic_name"), args.pop("picture"), **args)
    assert count_rows(engine, instance.name) == 1


def test_limits_accept_their_edges(service, instance, engine):
    service.add_image(
        instance.name, "p" * 512, "n" * 512, encode(noise(100, 4096 // 8)),
        attributes=Attributes(custom_content="c" * 4096, str_attr="s" * 128, int_attr=2**31 - 1, int_attr2=-(2**31)),
    )
    assert count_rows(engine, instance.name) == 1


def test_category_on_product_instances(service, make_instance):
    product = make_instance("product")
    assert service.add_image(product.name, "p", "n", encode(PHOTOS["coffee"]), category_id=6).category_id == 6
    with pytest.raises(InvalidCategory, match="allowed"):
        service.add_image(product.name, "p", "n", encode(PHOTOS["coffee"]), category_id=10)
    generic = make_instance("generic")
    assert service.add_image(generic.name, "p", "n", encode(PHOTOS["coffee"]), category_id=6).category_id == 88888888


@pytest.mark.parametrize(
    "num,start,error",
    [(0, 0, InvalidParameter), (101, 0, OverflowMaxReturnNum), (10, -1, InvalidStartParameter),
     (10, 500, InvalidStartParameter), (2, 499, OverflowMaxResultNum)],
)
def test_search_window_errors(service, gallery, num, start, error):
    with pytest.raises(error):
        service.search_by_picture(gallery, encode(PHOTOS["coffee"]), num=num, start=start)


@pytest.mark.parametrize("num,start", [(1, 0), (100, 0), (1, 499), (100, 400)])
def test_search_window_edges(service, gallery, num, start):
    result = service.search_by_picture(gallery, encode(PHOTOS["coffee"]), num=num, start=start)
    assert result.docs_return == max(0, min(num, len(PHOTOS) - start))


def test_embeddings_are_unit_length(engine, service, instance):
    service.add_image(instance.name, "p", "n", encode(PHOTOS["retina"]))
    with engine.connect() as conn:
        stored = conn.execute(sa.select(pictures.c.embedding).where(pictures.c.product_id == "p")).scalar_one()
    # stored as halfvec (migration 0018): unit length to float16's precision
    assert abs(np.linalg.norm(np.asarray(stored, np.float32)) - 1.0) < 1e-3


def test_other_process_deleting_or_recreating_an_instance(service, database, encoders, make_instance):
    """Reads cache an instance's facts; another process deleting or re-creating it must not confuse them."""
    from imagesearch_pg.service import ImageSearch

    other = ImageSearch(database, encoders)  # a second process's service, same database
    made = make_instance()
    service.add_image(made.name, "old", "old.png", encode(PHOTOS["coffee"]))
    assert service.search_by_picture(made.name, encode(PHOTOS["coffee"])).matches[0].product_id == "old"

    other.delete_instance(made.name)
    other.create_instance(made.name, "generic")
    other.add_image(made.name, "new", "new.png", encode(PHOTOS["coffee"]))
    assert service.search_by_picture(made.name, encode(PHOTOS["coffee"])).matches[0].product_id == "new"
    assert service.search_by_name(made.name, "new", "new.png").matches[0].product_id == "new"

    other.delete_instance(made.name)
    with pytest.raises(InvalidInstance):
        service.search_by_picture(made.name, encode(PHOTOS["coffee"]))
    with pytest.raises(InvalidInstance):
        service.search_by_name(made.name, "new", "new.png")
    other.create_instance(made.name, "generic")  # for the fixture's cleanup


@pytest.mark.parametrize("name,error", [("", MissingParameter), (None, MissingParameter),
                                        ("a\x00b", InvalidParameter), ("x" * 65, InvalidParameter)])
def test_bad_instance_names_are_client_errors(service, name, error):
    for call in (lambda: service.describe_instance(name),
                 lambda: service.search_by_picture(name, encode(PHOTOS["coffee"])),
                 lambda: service.search_by_name(name, "p", "n"),
                 lambda: service.delete_image(name, "p"),
                 lambda: service.add_image(name, "p", "n", encode(PHOTOS["coffee"]))):
        with pytest.raises(error):
            call()


def test_product_category_is_predicted_and_restricts_searches(service, make_instance):
    product = make_instance("product")
    # Coffee is a drink in a cup: the ImageNet mapping says Bottle (drinks) with no labelled neighbours.
    predicted = service.add_image(product.name, "cup", "cup.png", encode(PHOTOS["coffee"]))
    assert predicted.category_id == 8
    # The user's own labels outvote the mapping: a labelled near-copy pulls the prediction to its category.
    service.add_image(product.name, "snack", "s.png", encode(crop_70(PHOTOS["coffee"])), category_id=6)
    again = service.add_image(product.name, "cup2", "cup2.png", encode(rotate_10(PHOTOS["coffee"])))
    assert again.category_id == 6
    # A search with a CategoryId stays within it; without one it spans every category.
    within = service.search_by_picture(product.name, encode(PHOTOS["coffee"]), category_id=8, num=10)
    assert [a.product_id for a in within.matches] == ["cup"]
    everything = service.search_by_picture(product.name, encode(PHOTOS["coffee"]), num=10)
    assert {a.product_id for a in everything.matches} == {"cup", "snack", "cup2"}
    assert everything.pic_info.category_id in (6, 8)
    by_name = service.search_by_name(product.name, "cup", "cup.png", category_id=6)
    assert {a.product_id for a in by_name.matches} == {"snack", "cup2"}
    with pytest.raises(InvalidCategory):
        service.search_by_picture(product.name, encode(PHOTOS["coffee"]), category_id=12345)


def test_other_service_types_are_always_other(service, make_instance):
    generic = make_instance("generic")
    info = service.add_image(generic.name, "cup", "cup.png", encode(PHOTOS["coffee"]), category_id=3)
    assert info.category_id == 88888888
    result = service.search_by_picture(generic.name, encode(PHOTOS["coffee"]), category_id=3)
    assert [a.category_id for a in result.matches] == [88888888]


def _on_canvas(photo, canvas=(600, 800), at=(150, 200), size=(240, 320), colour=235):
    """``photo`` resized to ``size`` (h, w) and placed at ``at`` (y, x) on a plain canvas."""
    page = np.full((*canvas, 3), colour, np.uint8)
    page[at[0]: at[0] + size[0], at[1]: at[1] + size[1]] = cv2.resize(photo, (size[1], size[0]))
    return page


def test_crop_detects_the_subject_and_both_sides_see_it(service, instance):
    page = _on_canvas(PHOTOS["coffee"])
    info = service.add_image(instance.name, "coffee", "on-page.png", encode(page))
    x1, x2, y1, y2 = map(int, info.region.split(","))
    assert abs(x1 - 200) <= 8 and abs(x2 - 520) <= 8 and abs(y1 - 150) <= 8 and abs(y2 - 390) <= 8
    # The bare photo matches the stored page closely because both were cut to the subject.
    bare = service.search_by_picture(instance.name, encode(PHOTOS["coffee"])).matches[0]
    assert bare.product_id == "coffee" and bare.score > 0.9
    whole = service.add_image(instance.name, "coffee", "whole.png", encode(page), crop=False)
    assert whole.region == "0,800,0,600" and whole.multi_region == ["0,800,0,600"]


def test_two_subjects_give_two_regions(service, instance):
    page = np.full((500, 1000, 3), 240, np.uint8)
    page[100:350, 50:350] = cv2.resize(PHOTOS["rocket"], (300, 250))
    page[150:400, 650:950] = cv2.resize(PHOTOS["chelsea"], (300, 250))
    info = service.add_image(instance.name, "two", "two.png", encode(page))
    assert len(info.multi_region) == 2 and info.region == info.multi_region[0]
    lefts = sorted(int(r.split(",")[0]) for r in info.multi_region)
    assert abs(lefts[0] - 50) <= 8 and abs(lefts[1] - 650) <= 8


def test_fabric_always_uses_the_whole_picture(service, make_instance):
    fabric = make_instance("fabric")
    page = _on_canvas(PHOTOS["coffee"], canvas=(600, 800))
    assert service.add_image(fabric.name, "f", "f.png", encode(page)).region == "0,800,0,600"
    assert service.add_image(fabric.name, "f", "f.png", encode(page), region="10,20,10,20").region == "10,20,10,20"


def test_each_service_type_gets_its_default_encoder(make_instance):
    from imagesearch_pg.service_types import SERVICE_TYPES

    for service_type, encoder in ((t.name, t.default_encoder) for t in SERVICE_TYPES.values()):
        assert make_instance(service_type).encoder == encoder


def test_shape_encoder_ignores_colour_and_polarity(service, make_instance):
    """With the shape encoder, a logo recoloured or inverted onto a dark ground is still found first."""
    trademark = make_instance("trademark", encoder="efficientnet-lite0-gem-shape")
    logo = np.full((300, 300, 3), 255, np.uint8)
    cv2.circle(logo, (150, 150), 90, (200, 30, 30), thickness=25)
    cv2.rectangle(logo, (120, 60), (180, 240), (200, 30, 30), thickness=-1)
    other = np.full((300, 300, 3), 255, np.uint8)
    cv2.putText(other, "AZ", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, (200, 30, 30), 20)
    service.add_image(trademark.name, "ring", "r.png", encode(logo))
    service.add_image(trademark.name, "az", "a.png", encode(other))
    recoloured = logo.copy()
    recoloured[(logo == [200, 30, 30]).all(axis=2)] = [20, 90, 220]
    inverted = 255 - logo
    for query in (recoloured, inverted):
        assert service.search_by_picture(trademark.name, encode(query)).matches[0].product_id == "ring"


def test_texture_encoder_sees_a_quarter_turned_picture_as_the_same(encoders):
    """Fabric's encoder averages the picture and its quarter turn: a turned photo of the same cloth stays close."""
    plain, texture = encoders.get("efficientnet-lite0-gem"), encoders.get("efficientnet-lite0-gem-texture")
    for key in ("immunohistochemistry", "coffee"):
        picture = PHOTOS[key]
        turned = np.ascontiguousarray(np.rot90(picture))
        similarity = {e.name: float(e.predict([picture])[0] @ e.predict([turned])[0]) for e in (plain, texture)}
        assert similarity[texture.name] > 0.93 and similarity[texture.name] > similarity[plain.name] + 0.1
