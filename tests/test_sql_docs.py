"""Every worked example of docs/sql.md, run in order against a real database, with its answer checked."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from imagesearch_pg.errors import ImageSearchError
from tests.pictures import encode, sample_photos
from tests.test_sql_queue import run_queue

DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"
BLOCK = re.compile(r"```(sql|python)\n(?:--|#) example: ([\w-]+)\n(.*?)```", re.S)


def examples() -> dict[str, tuple[str, str]]:
    found = {name: (language, body) for language, name, body in BLOCK.findall(DOC.read_text())}
    assert list(found) == ["products", "sync", "status", "join", "in-stock-under-50", "duplicates", "changes",
                           "bad-picture", "errors", "by-vector", "sqlalchemy"]
    return found


# (sku, title, price_cents, stock, photo): cup-1 and cup-2 are one picture under two SKUs.
CATALOGUE = [
    ("cup-1", "espresso cup", 1200, 4, "coffee"),
    ("cup-2", "espresso cup, boxed", 1500, 3, "coffee"),
    ("mug-1", "coffee mug", 4500, 0, "coffee-crop"),
    ("mug-2", "big mug", 8900, 7, "coffee-flip"),
    ("lamp-1", "rocket lamp", 3000, 2, "rocket"),
    ("cat-1", "cat poster", 2500, 9, "chelsea"),
    ("cam-1", "camera print", 4000, 1, "camera"),
]


@pytest.fixture(scope="module")
def shop(service, engine):
    photos = sample_photos()
    pictures = {key: encode(image) for key, image in photos.items()}
    pictures["coffee-crop"] = encode(photos["coffee"][40:360, 60:560])
    pictures["coffee-flip"] = encode(photos["coffee"][:, ::-1])
    service.create_instance("shop", "product")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA app")
    yield pictures
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA app CASCADE")
    service.delete_instance("shop")


def run(engine, body: str) -> list[tuple]:
    """A block as psql would run it: its statements in order; the rows of the last one."""
    rows: list[tuple] = []
    code = re.sub(r"--[^\n]*", "", body)  # the examples hold no '--' inside a string
    with engine.begin() as conn:
        for statement in [s for s in code.split(";") if s.strip()]:
            result = conn.exec_driver_sql(statement)
            rows = [tuple(r) for r in result] if result.returns_rows else []
    return rows


def test_the_worked_examples(service, engine, shop):
    doc = examples()
    run(engine, doc["products"][1])
    with engine.begin() as conn:
        for sku, title, price, stock, photo in CATALOGUE:
            conn.execute(sa.text("INSERT INTO app.products VALUES (:s, :t, :p, :n, :f)"),
                         {"s": sku, "t": title, "p": price, "n": stock, "f": shop[photo]})

    assert run(engine, doc["sync"][1]) == [(len(CATALOGUE),)]
    run_queue(service)
    assert run(engine, doc["status"][1]) == [("done", len(CATALOGUE))]

    joined = run(engine, doc["join"][1])
    assert len(joined) == 5 and {joined[0][0], joined[1][0]} == {"cup-1", "cup-2"} and joined[0][3] > 0.999
    titles = {sku: title for sku, title, *_ in CATALOGUE}
    assert all(title == titles[sku] for sku, title, _, _ in joined)

    cheap = run(engine, doc["in-stock-under-50"][1])
    by_sku = {sku: (price, stock) for sku, _, price, stock, _ in CATALOGUE}
    expected = {sku for sku, (price, stock) in by_sku.items() if price < 5000 and stock > 0 and sku != "cup-1"}
    assert {row[0] for row in cheap} == expected  # fewer than 5 match: all of them, and only them
    assert cheap[0][0] == "cup-2"

    pairs = run(engine, doc["duplicates"][1])
    assert ("cup-1", "cup-2") in {(a, b) for a, b, _ in pairs} or ("cup-2", "cup-1") in {(a, b) for a, b, _ in pairs}

    run(engine, doc["changes"][1])
    run_queue(service)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT int_attr2 FROM imagesearch.picture_list"
                                    " WHERE instance = 'shop' AND product_id = 'cup-2'").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM imagesearch.picture_list"
                                    " WHERE instance = 'shop' AND product_id = 'lamp-1'").scalar() == 0

    run(engine, doc["bad-picture"][1])
    run_queue(service)
    [(sku, code, message)] = run(engine, doc["errors"][1])
    with pytest.raises(ImageSearchError) as api:  # what AddImage says of the same bytes
        service.add_image("shop", "junk-1", "photo", b"\x00\x01\x02\x03")
    assert (sku, code, message) == ("junk-1", api.value.code, api.value.message)

    nearest = run(engine, doc["by-vector"][1])
    assert {nearest[0][0], nearest[1][0]} == {"cup-1", "cup-2"} and len(nearest) == 3

    printed = io.StringIO()
    url = engine.url.render_as_string(hide_password=False)
    with contextlib.redirect_stdout(printed), _environment(SHOP_DATABASE_URL=url):
        exec(compile(doc["sqlalchemy"][1], "docs/sql.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    # in stock now: cup-2 went to 0 and lamp-1 is gone; the flipped cup is nearest
    assert len(lines) == 3 and lines[0].startswith("mug-2")
    assert not {line.split()[0] for line in lines} & {"cup-1", "cup-2", "mug-1", "lamp-1"}


@contextlib.contextmanager
def _environment(**values):
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
