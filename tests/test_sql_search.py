"""The SQL search functions (sql/0016_search.sql) give the service's answers: the same pictures in the same
order with the same scores, over random filters, windows, thresholds, categories and DistinctProductId, for
each function; and the same refusals with the same messages and Codes."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from imagesearch_pg import categories
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.store import bulk_load
from imagesearch_pg.store.tables import instances
from tests.test_store import DIM, clustered_unit_vectors

PICTURES = 9000
CATEGORY_POOL = [0, 1, 2, 3, categories.OTHER]
WORDS = ["red", "blue", "green", "x y", 'say "hi"', "ü"]
COLUMNS = ("product_id", "pic_name", "score", "category_id", "custom_content", "int_attr", "int_attr2",
           "int_attr3", "int_attr4", "str_attr", "str_attr2", "str_attr3", "str_attr4")


def _instance_id(conn, name: str) -> int:
    return conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()


@pytest.fixture(scope="module")
def shop(service, engine):
    """A product instance of 9,000 clustered pictures, two or three to a product, with attributes spread so
    that filters go every way the plan can go: an exact scan of few matches, a broad walk, a walk of most."""
    name = "sql-search-shop"
    service.create_instance(name, "product", capacity=PICTURES + 10)
    rng = np.random.default_rng(5)
    vectors = clustered_unit_vectors(seed=3, count=PICTURES, clusters=60)
    rows = []
    for i, vector in enumerate(vectors):
        rows.append((
            f"p{i // 3 if i % 7 else i // 2}", f"n{i}", int(rng.choice(CATEGORY_POOL)), vector,
            None if i % 11 == 0 else int(rng.integers(0, 10)), int(rng.integers(0, 1000)),
            None if i % 5 == 0 else str(rng.choice(WORDS)), f"content {i}" if i % 4 == 0 else None,
        ))
    with engine.begin() as conn:
        instance_id = _instance_id(conn, name)
        bulk_load.bulk_load(conn, instance_id, iter(rows),
                            columns=bulk_load.BULK_COLUMNS + ("int_attr", "int_attr2", "str_attr", "custom_content"))
    yield name, vectors
    service.delete_instance(name)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def random_filter(rng: random.Random) -> str | None:
    """Filters from none at all to a handful of matches, in the grammar's several forms."""
    leaves = [
        lambda: f"int_attr {rng.choice(['<', '<=', '>', '>=', '=', '!='])} {rng.randint(0, 9)}",
        lambda: f"int_attr2 < {rng.choice([3, 30, 300, 900])}",
        lambda: f"int_attr2 in ({', '.join(str(rng.randint(0, 999)) for _ in range(rng.randint(1, 5)))})",
        lambda: f"str_attr = {quoted(rng.choice(WORDS))}",
        lambda: f"str_attr not in ({quoted(rng.choice(WORDS))}, \"blue\")",
        lambda: f"int_attr3 != {rng.randint(0, 3)}",  # never set: != matches every picture
    ]
    kind = rng.random()
    if kind < 0.2:
        return None
    if kind < 0.7:
        return rng.choice(leaves)()
    joiner = rng.choice([" AND ", " OR "])
    return "(" + joiner.join(rng.choice(leaves)() for _ in range(2)) + ")" + (
        f" AND int_attr2 >= {rng.randint(0, 500)}" if rng.random() < 0.5 else "")


def random_options(rng: random.Random) -> dict:
    num = rng.choice([1, 5, 10, 37, 100])
    return {
        "num": num,
        "start": rng.choice([0, 0, 3, 50, 500 - num]),
        "filter": random_filter(rng),
        "category_id": rng.choice([None, None, 0, 3, categories.OTHER]),
        "distinct_product_id": rng.random() < 0.3,
        "score_threshold": rng.choice([None, None, None, 0.5, 0.8]),
    }


def sql_rows(engine, function: str, arguments: dict) -> list[tuple]:
    named = ", ".join(f"{key} => :{key}" for key in arguments)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM imagesearch.{function}({named})"), arguments)
        return [tuple(row) for row in rows]


def service_rows(result) -> list[tuple]:
    return [
        (m.product_id, m.pic_name, m.score, m.category_id, m.attributes.custom_content, m.attributes.int_attr,
         m.attributes.int_attr2, m.attributes.int_attr3, m.attributes.int_attr4, m.attributes.str_attr,
         m.attributes.str_attr2, m.attributes.str_attr3, m.attributes.str_attr4)
        for m in result.matches
    ]


def assert_same(sql: list[tuple], service: list[tuple], context) -> None:
    assert [row[:2] for row in sql] == [row[:2] for row in service], context
    np.testing.assert_allclose([row[2] for row in sql], [row[2] for row in service], atol=1e-6, err_msg=str(context))
    assert [row[3:] for row in sql] == [row[3:] for row in service], context


def test_fifty_random_searches_by_picture_agree(service, engine, shop):
    name, _ = shop
    rng = random.Random(1)
    for case in range(50):
        options = random_options(rng)
        key = rng.randrange(PICTURES)
        product_id = f"p{key // 3 if key % 7 else key // 2}"
        expected = service_rows(service.search_by_name(name, product_id, f"n{key}", **options))
        got = sql_rows(engine, "search_by_picture",
                       {"instance": name, "product_id": product_id, "pic_name": f"n{key}", **options})
        assert_same(got, expected, (case, options))


def test_fifty_random_searches_by_vector_agree(service, engine, shop):
    name, vectors = shop
    rng = random.Random(2)
    for case in range(50):
        options = random_options(rng)
        query = vectors[rng.randrange(PICTURES)] * 0.7 + vectors[rng.randrange(PICTURES)] * 0.3
        expected = service_rows(service.search_by_vector(name, query, **options))
        literal = "[" + ",".join(f"{v:.9g}" for v in query) + "]"
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT * FROM imagesearch.search_by_vector(:instance, CAST(:query AS vector), num => :num,"
                " start => :start, filter => :filter, category_id => :category_id,"
                " distinct_product_id => :distinct_product_id, score_threshold => :score_threshold)"),
                {"instance": name, "query": literal, **options})
            got = [tuple(row) for row in rows]
        assert_same(got, expected, (case, options))


def test_fifty_random_searches_by_product_agree(service, engine, shop):
    name, _ = shop
    rng = random.Random(3)
    for case in range(50):
        options = random_options(rng)
        product_id = f"p{rng.randrange(PICTURES // 3)}"
        expected = service_rows(service.search_by_product(name, product_id, **options))
        got = sql_rows(engine, "search_by_product", {"instance": name, "product_id": product_id, **options})
        assert_same(got, expected, (case, options))
        assert all(row[0] != product_id for row in got)


def test_a_broad_filter_walks_and_still_returns_num_rows(service, engine, shop):
    """The filtered-search contract in SQL: min(num, matching) rows, whichever plan the share leads to."""
    name, _ = shop
    for text in ["int_attr < 9", "int_attr2 < 30", "int_attr2 = 7 AND int_attr = 1"]:
        with engine.connect() as conn:
            instance_id = _instance_id(conn, name)
            matching = conn.execute(sa.text(
                f"SELECT count(*) FROM imagesearch.pictures_{instance_id} p WHERE "
                + imagesearch_condition(conn, text)), {}).scalar()
        got = sql_rows(engine, "search_by_picture",
                       {"instance": name, "product_id": "p1", "pic_name": "n3", "num": 100, "filter": text})
        assert len(got) == min(100, matching), text


def imagesearch_condition(conn, text: str) -> str:
    """The filter as plain SQL, for counting its matches in the test (values inlined: test text only)."""
    from sqlalchemy.dialects import postgresql

    from imagesearch_pg.store.filters import compile_filter
    from imagesearch_pg.store.tables import pictures

    return str(compile_filter(text, pictures).compile(dialect=postgresql.dialect(),
                                                       compile_kwargs={"literal_binds": True})).replace(
        "imagesearch.pictures.", "p.")


def test_trademark_search_by_picture_fuses_the_silhouette_as_the_api_does(service, engine):
    name = "sql-search-marks"
    service.create_instance(name, "trademark")
    try:
        embeddings = clustered_unit_vectors(seed=21, count=800)
        silhouettes = clustered_unit_vectors(seed=22, count=800)
        with engine.begin() as conn:
            rows = ((f"m{i}", "n", categories.OTHER, e, s, i % 3) for i, (e, s) in enumerate(zip(embeddings, silhouettes)))
            bulk_load.bulk_load(conn, _instance_id(conn, name), rows,
                                columns=bulk_load.BULK_COLUMNS + ("silhouette", "int_attr"))
        for key, options in [(5, {}), (17, {"filter": "int_attr = 1", "num": 30}), (40, {"num": 20, "start": 7}),
                             (41, {"score_threshold": 0.6, "num": 50})]:
            expected = service_rows(service.search_by_name(name, f"m{key}", "n", **options))
            got = sql_rows(engine, "search_by_picture", {"instance": name, "product_id": f"m{key}", "pic_name": "n",
                                                           **options})
            assert_same(got, expected, (key, options))
    finally:
        service.delete_instance(name)


# ---- refusals ----------------------------------------------------------------------------------------------

def service_refusal(call) -> tuple[str, str]:
    with pytest.raises(ImageSearchError) as caught:
        call()
    return caught.value.code, caught.value.message


def sql_refusal(engine, statement: str, arguments: dict) -> tuple[str, str]:
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text(statement), arguments)
    diag = caught.value.orig.diag
    assert isinstance(caught.value.orig, (psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound)), diag
    return diag.message_detail, diag.message_primary


BAD_OPTIONS = [
    {"num": 0}, {"num": 101}, {"num": -5}, {"start": -1}, {"start": 500}, {"start": 450, "num": 51},
    {"score_threshold": 1.5}, {"score_threshold": -0.1}, {"filter": "int_attr = "}, {"filter": ""},
    {"filter": "price < 3"}, {"filter": 'str_attr = "a\\x"'}, {"category_id": 12345},
    {"category_id": 4, "num": 0},  # the window is checked before the category
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=lambda o: repr(o)[:60])
def test_bad_options_are_refused_alike(service, engine, shop, options):
    name, vectors = shop
    expected = service_refusal(lambda: service.search_by_name(name, "p1", "n3", **options))
    arguments = {"instance": name, "product_id": "p1", "pic_name": "n3", **options}
    named = ", ".join(f"{key} => :{key}" for key in arguments)
    assert sql_refusal(engine, f"SELECT * FROM imagesearch.search_by_picture({named})", arguments) == expected
    expected = service_refusal(lambda: service.search_by_product(name, "p1", **options))
    arguments = {"instance": name, "product_id": "p1", **options}
    named = ", ".join(f"{key} => :{key}" for key in arguments)
    assert sql_refusal(engine, f"SELECT * FROM imagesearch.search_by_product({named})", arguments) == expected


@pytest.mark.parametrize("instance, product_id, pic_name", [
    ("no-such-instance", "p1", "n3"),
    ("bad name!", "p1", "n3"),
    ("", "p1", "n3"),
    ("x" * 65, "p1", "n3"),
    ("sql-search-shop", "p1", "no-such-picture"),
    ("sql-search-shop", "", "n3"),
    ("sql-search-shop", "p1", ""),
    ("sql-search-shop", "p" * 513, "n3"),
    ("sql-search-shop", "p1", "it's \"quoted\"\n"),
])
def test_bad_keys_are_refused_alike(service, engine, shop, instance, product_id, pic_name):
    expected = service_refusal(lambda: service.search_by_name(instance, product_id, pic_name))
    arguments = {"instance": instance, "product_id": product_id, "pic_name": pic_name}
    got = sql_refusal(engine, "SELECT * FROM imagesearch.search_by_picture(:instance, :product_id, :pic_name)", arguments)
    assert got == expected


def test_missing_product_and_bad_vectors_are_refused_alike(service, engine, shop):
    name, vectors = shop
    assert sql_refusal(engine, "SELECT * FROM imagesearch.search_by_product(:i, :p)", {"i": name, "p": "nobody"}) == \
        service_refusal(lambda: service.search_by_product(name, "nobody"))
    for vector in (np.zeros(DIM, np.float32), np.ones(DIM - 1, np.float32)):
        literal = "[" + ",".join(map(str, vector)) + "]"
        assert sql_refusal(engine, "SELECT * FROM imagesearch.search_by_vector(:i, CAST(:v AS vector))",
                           {"i": name, "v": literal}) == service_refusal(lambda: service.search_by_vector(name, vector))


def test_the_category_rules_are_the_services():
    with_categories = [name for name, rules in SERVICE_TYPES.items() if rules.categories]
    assert with_categories == ["product"]  # what imagesearch.checked_category assumes


def test_the_category_list_is_the_services(engine):
    with engine.connect() as conn:
        listed = dict(conn.execute(sa.text("SELECT category_id, name FROM imagesearch.category_list")).all())
    assert listed == categories.CATEGORIES


def test_silhouette_margins_are_the_encoders(encoders, engine):
    with engine.connect() as conn:
        for name in ("efficientnet-lite0-gem", "efficientnet-lite0-trademark"):
            margin = conn.execute(sa.text("SELECT imagesearch.silhouette_margin(:n)"), {"n": name}).scalar()
            encoder = encoders.get(name)
            assert margin == (encoder.silhouette_margin if encoder.silhouettes else None), name


def test_the_session_settings_do_not_change_the_answer(service, engine, shop):
    name, _ = shop
    expected = service_rows(service.search_by_name(name, "p1", "n3", num=50))
    with engine.connect() as conn:
        conn.exec_driver_sql("SET hnsw.ef_search = 10")
        conn.exec_driver_sql("SET hnsw.iterative_scan = off")
        got = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM imagesearch.search_by_picture(:i, 'p1', 'n3', 50)"),
                                              {"i": name})]
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == "10"  # and the session's are kept
    assert_same(got, expected, "settings")
