"""The filter language compiled inside the database (sql/0016_filter.sql) against the Python compiler
(store/filters.py): the same rows for random filters over random rows, and the same refusal, word for word,
for hand-written and random malformed filters."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesearch_pg.errors import InvalidFilter
from imagesearch_pg.store.filters import MAX_FILTER_LENGTH, MAX_NESTING, parse_filter
from tests.test_filters import DB_CASES, ERRORS, HOSTILE, insert_rows, matching, rows_and_filter
from tests.test_filters import example_rows, instance_id  # noqa: F401 (fixtures)

# Rows that the SQL condition selects, run as the search functions run it: EXECUTE ... USING the arrays.
MATCHING = """
CREATE FUNCTION pg_temp.sql_matching(p_instance integer, p_filter text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    c := imagesearch.compile_filter(p_filter);
    RETURN QUERY EXECUTE format('SELECT p.product_id FROM imagesearch.pictures p WHERE p.instance_id = $3 AND (%s)',
                                c.condition) USING c.ints, c.strs, p_instance;
END $$
"""


@pytest.fixture
def conn(engine):
    with engine.connect() as conn:
        trans = conn.begin()  # rolled back: the temporary function and any rows go with it
        conn.connection.driver_connection.execute(MATCHING)  # no parameters: its % signs stay literal
        yield conn
        trans.rollback()


def sql_matching(conn, instance_id: int, text: str) -> set[str]:
    rows = conn.execute(sa.text("SELECT pg_temp.sql_matching(:i, :f)"), {"i": instance_id, "f": text})
    return set(rows.scalars())


def python_refusal(text: str) -> str | None:
    try:
        parse_filter(text)
    except InvalidFilter as exc:
        return exc.message
    return None


def sql_refusal(conn, text: str) -> str | None:
    """The message compile_filter raises (its DETAIL must be the Code), or None if it compiles."""
    conn.exec_driver_sql("SAVEPOINT compile")
    try:
        conn.execute(sa.text("SELECT imagesearch.compile_filter(:f)"), {"f": text})
    except sa.exc.DBAPIError as exc:
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT compile")
        assert isinstance(exc.orig, psycopg.errors.InvalidParameterValue), exc
        assert exc.orig.diag.message_detail == "InvalidFilter"
        return exc.orig.diag.message_primary
    conn.exec_driver_sql("RELEASE SAVEPOINT compile")
    return None


def test_examples_select_the_same_rows(example_rows, conn):
    for text, expected in DB_CASES:
        assert sql_matching(conn, example_rows, text) == expected, text


@pytest.mark.parametrize("text", [text for text, _, _ in ERRORS if "\x00" not in text and "\ud800" not in text])
def test_every_refusal_has_the_same_message(conn, text):
    assert sql_refusal(conn, text) == python_refusal(text) is not None


@pytest.mark.parametrize("text", [t for t in HOSTILE if "\x00" not in t and not any("\ud800" <= c <= "\udfff" for c in t)])
def test_hostile_filters_are_refused_alike(conn, text):
    assert sql_refusal(conn, text) == python_refusal(text) is not None


def test_the_limits_are_the_same(example_rows, conn):
    longest = "int_attr = 1" + " " * (MAX_FILTER_LENGTH - 12)
    assert sql_refusal(conn, longest) is None
    deepest = "(" * MAX_NESTING + "int_attr2 = 1" + ")" * MAX_NESTING
    assert sql_matching(conn, example_rows, deepest) == matching(conn, example_rows, deepest)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=rows_and_filter())
def test_random_filters_select_the_rows_python_selects(instance_id, engine, case):
    rows, filters = case
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.connection.driver_connection.execute(MATCHING)  # no parameters: its % signs stay literal
            insert_rows(conn, instance_id, rows)
            for _, text in filters:
                assert sql_matching(conn, instance_id, text) == matching(conn, instance_id, text), text
        finally:
            trans.rollback()


# Pieces malformed filters are made of: every token kind, near-misses, quotes and escapes, characters the
# lexer treats specially, and letters from other scripts.
PIECES = [
    "int_attr", "INT_ATTR2", "str_attr", "Str_Attr4", "int_attr5", "custom", "ınt_attr", "ѕtr_attr", "_x",
    "and", "OR", "Not", "in", "not in", "(", ")", ",", "=", "!=", ">", ">=", "<", "<=", "==", "<>", "!", "~",
    "0", "7", "-3", "+12", "007", "2147483647", "2147483648", "-2147483649", "99999999999", "1.5", "1e3", "5and",
    '"', '"a"', '""', '"\\""', '"\\\\"', '"\\x"', '"a\\', "\\", "'", "'a'", "-", "+", ".", "$1", ";", "--", "%s",
    " ", "  ", "\t", "\n", "é", "日本", "€", "\u00a0", "\u200b", "１", "Ω", "ß",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=12), spaced=st.booleans())
def test_random_malformed_filters_are_refused_alike(conn, pieces, spaced):
    text = (" " if spaced else "").join(pieces)
    assert sql_refusal(conn, text) == python_refusal(text), repr(text)


CHARACTERS = sorted(set("".join(PIECES)) | set("abcdefghijklmnopqrstuvwxyz_ATNDOR0123456789\r\v\f\x01\x7f\u2028"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.sampled_from(CHARACTERS), min_size=1, max_size=40))
def test_random_character_strings_are_refused_alike(conn, text):
    assert sql_refusal(conn, text) == python_refusal(text), repr(text)


@pytest.fixture(scope="module")
def other_locale(engine):
    """A database made with libc's C locale, where [:alnum:] is ASCII alone (the suite's server has a
    Unicode one), migrated to head; a connection in a transaction that is rolled back."""
    from imagesearch_pg.store import schema
    from imagesearch_pg.store.database import create_engine

    name = f"c_locale_{uuid.uuid4().hex[:12]}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE \"{name}\" LOCALE 'C' ENCODING 'UTF8' TEMPLATE template0"))
    made = create_engine(engine.url.set(database=name).render_as_string(hide_password=False), search_path=None)
    try:
        schema.upgrade(made)
        with made.connect() as conn:
            trans = conn.begin()
            yield conn
            trans.rollback()
    finally:
        made.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("text", [
    "１ = 1", "int_attr = １", "²", "é", "Ω > 1", "straße = \"x\"", "int_attr\u00a0= 1", "str_аttr = \"a\"",
    "INT_ATTR = 1 AND STR_ATTR = \"a\"", "İNT_ATTR = 1", "int_attr IN (1, ２)", "٣", "€",
])
def test_filters_are_lexed_alike_in_a_database_of_another_locale(conn, other_locale, text):
    """Character classes follow a database's locale: the compiler must use none, so that a filter gets the
    same answer in any user's database as from the service."""
    assert sql_refusal(other_locale, text) == sql_refusal(conn, text) == python_refusal(text), repr(text)
