"""The hostile corpus's rules (tests/hostile_corpus.py), sent to the SQL functions instead of the HTTP API.

A value the SQL types can hold reaches the function and gets the API's Code; one they cannot (a NUL, "ten"
as an integer) is refused by the driver or by PostgreSQL's own input rules (SQLSTATE class 22) before any
function runs.
Either way nothing is written.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.hostile_corpus import BAD_FILTERS, BAD_INT_ATTRS, BAD_KEYS, BAD_SEARCH_OPTIONS, BAD_WINDOWS
from tests.pictures import encode, noise

# The API's parameter -> the SQL functions' parameter and the type it is read as.
PARAMETERS = {"Num": ("num", "integer"), "Start": ("start", "integer"), "ScoreThreshold": ("score_threshold", "float8"),
              "ProductId": ("product_id", "text"), "PicName": ("pic_name", "text"), "Filter": ("filter", "text")}
SEARCH = {"instance": "sql-hostile", "product_id": "stored", "pic_name": "1.jpg"}


@pytest.fixture(scope="module")
def stored(service):
    service.create_instance("sql-hostile", "generic")
    service.add_image("sql-hostile", "stored", "1.jpg", encode(noise(150, 150, seed=11)))
    yield "sql-hostile"
    service.delete_instance("sql-hostile")


def refusal(engine, statement: str, values: dict) -> tuple[str, str | None]:
    """(SQLSTATE, DETAIL) of the refusal; the database holds what it held."""
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM imagesearch.picture_queue")).scalar()
    try:
        with engine.connect() as conn, pytest.raises((sa.exc.DBAPIError, ValueError)) as caught:
            conn.execute(sa.text(statement), values)
            conn.commit()
    finally:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM imagesearch.picture_queue")).scalar() == before
            assert conn.execute(sa.text("SELECT picture_count FROM imagesearch.instance_list WHERE name = 'sql-hostile'")
                                ).scalar() == 1
    error = getattr(caught.value, "orig", caught.value)
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is None:  # psycopg refuses a NUL in text before sending it
        assert "NUL" in str(error), error
        return "22000", None
    if sqlstate in ("22023", "P0002"):  # raised by imagesearch.raise_error: the Code is the DETAIL
        return sqlstate, error.diag.message_detail
    return sqlstate, None


def search_call(overrides: dict) -> tuple[str, dict]:
    values = dict(SEARCH)
    named = []
    for name, value in overrides.items():
        values[PARAMETERS[name][0]] = value
    for parameter in values:
        kind = next((k for p, k in PARAMETERS.values() if p == parameter), "text")
        named.append(f"{parameter} => CAST(:{parameter} AS {kind})")
    return f"SELECT * FROM imagesearch.search_by_picture({', '.join(named)})", values


CASES = ([(case, {"Filter": value}, code) for case, value, _, code in BAD_FILTERS]
         + [(case, params, code) for case, params, _, code in BAD_KEYS + BAD_WINDOWS]
         + [(case, params, code) for case, params, _, code in BAD_SEARCH_OPTIONS if "DistinctProductId" not in params])


@pytest.mark.parametrize("case, overrides, code", CASES, ids=[case for case, _, _ in CASES])
def test_searches_refuse_the_corpus(engine, stored, case, overrides, code):
    statement, values = search_call(overrides)
    sqlstate, detail = refusal(engine, statement, values)
    if detail is not None:
        assert detail == code, (sqlstate, detail)
    else:  # the value cannot be the SQL type at all
        assert sqlstate.startswith("22"), sqlstate


@pytest.mark.parametrize("case, attributes, code", [(c, p, code) for c, p, _, code in BAD_INT_ATTRS],
                         ids=[c for c, _, _, _ in BAD_INT_ATTRS])
def test_add_image_refuses_the_corpus(engine, stored, case, attributes, code):
    # the API's form values as JSON: digits become numbers, anything else stays a string
    as_json = {key: int(value) if value.lstrip("-").isascii() and value.lstrip("-").isdigit() else value
               for key, value in attributes.items()}
    statement = "SELECT imagesearch.add_image('sql-hostile', 'p', 'a.jpg', '\\x00'::bytea, CAST(:a AS jsonb))"
    sqlstate, detail = refusal(engine, statement, {"a": json.dumps(as_json)})
    if detail is not None:
        assert detail == code, (sqlstate, detail)
    else:  # a NUL: jsonb cannot hold it
        assert sqlstate.startswith("22"), sqlstate
