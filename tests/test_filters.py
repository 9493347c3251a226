"""The filter language: parser against hand-written ASTs, SQL against a real PostgreSQL, errors, hostile input.

The property tests generate ASTs, render them to text with random spacing and case, and compare
(1) the parsed text with the generated AST and (2) the rows PostgreSQL selects with the compiled condition
with the rows the pure-Python reference (tests/filter_reference.py) accepts for the generated AST.
"""

from __future__ import annotations


import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from flask_app import protocol
from imagesearch_pg.errors import InvalidFilter
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.filters import (
    INT_OPS,
    MAX_FILTER_LENGTH,
    MAX_NESTING,
    STR_OPS,
    And,
    Comparison,
    Membership,
    Or,
    compile_filter,
    parse_filter,
)
from imagesearch_pg.attributes import INT32_MAX as INT_MAX, INT32_MIN as INT_MIN, INT_ATTRS, STR_ATTRS
from imagesearch_pg.store.tables import instances, key_digest, pictures
from tests.filter_reference import evaluate, evaluate_node

ATTRS = INT_ATTRS + STR_ATTRS
EMBEDDING = np.full(1280, 0.5, dtype=np.float32)


# ---- helpers ----------------------------------------------------------------------------------------


@pytest.fixture
def instance_id(make_instance, engine) -> int:
    name = make_instance("generic").name
    with engine.connect() as conn:
        return conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()


def insert_rows(conn: sa.Connection, instance_id: int, rows: list[dict]) -> None:
    """All rows in one INSERT: product_id p0, p1, ...; attributes missing from a row are NULL."""
    if rows:
        conn.execute(
            sa.insert(pictures),
            [
                {
                    "instance_id": instance_id,
                    "key_digest": key_digest(f"p{i}", "pic"),
                    "product_id": f"p{i}",
                    "pic_name": "pic",
                    "category_id": 88888888,
                    "embedding": EMBEDDING,
                    **{attr: row.get(attr) for attr in ATTRS},
                }
                for i, row in enumerate(rows)
            ],
        )


def matching(conn: sa.Connection, instance_id: int, text: str) -> set[str]:
    statement = sa.select(pictures.c.product_id).where(pictures.c.instance_id == instance_id, compile_filter(text))
    return set(conn.execute(statement).scalars())


def db_state(conn: sa.Connection, instance_id: int) -> tuple:
    return (
        conn.execute(
            sa.select(sa.func.count()).select_from(pictures).where(pictures.c.instance_id == instance_id)
        ).scalar_one(),
        conn.execute(sa.text("SELECT to_regclass('imagesearch.pictures') IS NOT NULL")).scalar_one(),
        conn.execute(sa.text("SELECT to_regclass('imagesearch.instances') IS NOT NULL")).scalar_one(),
    )


def raises_invalid(text) -> str:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter(text)
    error = caught.value
    assert error.code == "InvalidFilter" and protocol.http_status(error) == 400
    assert error.message.startswith("Filter: ")
    return error.message


# ---- the parser against hand-written ASTs -------------------------------------------------------------

C, M = Comparison, Membership

PARSED = [
    # the examples of filter.md
    ("int_attr>=100", C("int_attr", ">=", 100)),
    ('str_attr!="value1"', C("str_attr", "!=", "value1")),
    ('int_attr=1000 AND str_attr="value1"', And((C("int_attr", "=", 1000), C("str_attr", "=", "value1")))),
    (
        '(int_attr>=10 OR int_attr2 in (1,2,3)) AND str_attr not in ("a","b")',
        And((Or((C("int_attr", ">=", 10), M("int_attr2", (1, 2, 3)))), M("str_attr", ("a", "b"), negated=True))),
    ),
    # every operator, sign, leading zeros, case of keywords and fields, free white space
    ("int_attr2 > -5", C("int_attr2", ">", -5)),
    ("int_attr3<+5", C("int_attr3", "<", 5)),
    ("int_attr4 <= 007", C("int_attr4", "<=", 7)),
    ("INT_ATTR != -0", C("int_attr", "!=", 0)),
    (f"Int_Attr = {INT_MIN}", C("int_attr", "=", INT_MIN)),
    (f"int_attr={INT_MAX}", C("int_attr", "=", INT_MAX)),
    ('STR_ATTR4 = ""', C("str_attr4", "=", "")),
    ("\t\r\n str_attr3\n=\n\"x\"\f\v ", C("str_attr3", "=", "x")),
    ("int_attr IN(1)", M("int_attr", (1,))),
    ("int_attr NoT\n\t iN ( -1 , 2,3 )", M("int_attr", (-1, 2, 3), negated=True)),
    ('str_attr2 in("a","a")', M("str_attr2", ("a", "a"))),
    # string escapes and characters that mean something elsewhere
    (r'str_attr = "say \"hi\""', C("str_attr", "=", 'say "hi"')),
    (r'str_attr = "a\\b"', C("str_attr", "=", "a\\b")),
    (r'str_attr = "\\"', C("str_attr", "=", "\\")),
    (r'str_attr = "\\\""', C("str_attr", "=", '\\"')),
    ('str_attr = "a AND b) OR (c"', C("str_attr", "=", "a AND b) OR (c")),
    ("str_attr = \"it's; --\n/* */\"", C("str_attr", "=", "it's; --\n/* */")),
    ('str_attr = "日本 é 🙂"', C("str_attr", "=", "日本 é 🙂")),
    # precedence: AND binds tighter than OR; chains stay flat; parentheses group
    (
        "int_attr=1 OR int_attr=2 AND int_attr=3 OR int_attr=4",
        Or((C("int_attr", "=", 1), And((C("int_attr", "=", 2), C("int_attr", "=", 3))), C("int_attr", "=", 4))),
    ),
    (
        "int_attr=1 and int_attr=2 or int_attr=3",
        Or((And((C("int_attr", "=", 1), C("int_attr", "=", 2))), C("int_attr", "=", 3))),
    ),
    (
        "int_attr=1 AND (int_attr=2 OR int_attr=3)",
        And((C("int_attr", "=", 1), Or((C("int_attr", "=", 2), C("int_attr", "=", 3))))),
    ),
    (
        "(int_attr=1 AND int_attr=2) AND (int_attr=3 AND int_attr=4)",
        And(tuple(C("int_attr", "=", i) for i in (1, 2, 3, 4))),
    ),
    ("((((int_attr=1))))", C("int_attr", "=", 1)),
    (
        'str_attr="a"AND(int_attr=1)OR(int_attr=2)',
        Or((And((C("str_attr", "=", "a"), C("int_attr", "=", 1))), C("int_attr", "=", 2))),
    ),
]


@pytest.mark.parametrize("text, expected", PARSED)
def test_parser_builds_the_expected_ast(text, expected):
    assert parse_filter(text) == expected


def test_a_long_chain_parses_flat_and_compiles():
    text = " OR ".join(f"int_attr={i % 10}" for i in range(290))
    assert len(text) <= MAX_FILTER_LENGTH
    node = parse_filter(text)
    assert isinstance(node, Or) and len(node.operands) == 290
    compile_filter(text).compile(dialect=postgresql.dialect())


# ---- the compiled SQL against PostgreSQL, hand-written cases ----------------------------------------------

ROWS = {
    "p1": dict(int_attr=100, int_attr2=1, str_attr="value1"),
    "p2": dict(int_attr=1000, int_attr2=5, str_attr="value1", str_attr2="x"),
    "p3": dict(int_attr=5, int_attr2=3, str_attr="a", int_attr3=0),
    "p4": dict(),  # no attributes at all
    "p5": dict(int_attr=INT_MIN, str_attr='say "hi" \\ there', str_attr2="日本", int_attr4=-1),
    "p6": dict(int_attr=INT_MAX, str_attr="", str_attr2="b", int_attr3=7),
    "p7": dict(int_attr2=2, str_attr="b", str_attr3="'; DROP TABLE imagesearch.pictures; --"),
}
ALL = set(ROWS)

DB_CASES = [
    # filter.md examples
    ("int_attr>=100", {"p1", "p2", "p6"}),
    ('str_attr!="value1"', {"p3", "p4", "p5", "p6", "p7"}),  # != matches a missing value
    ('int_attr=1000 AND str_attr="value1"', {"p2"}),
    ('(int_attr>=10 OR int_attr2 in (1,2,3)) AND str_attr not in ("a","b")', {"p1", "p2", "p6"}),
    # NULL rule
    ("int_attr3 = 0", {"p3"}),
    ("int_attr3 != 0", ALL - {"p3"}),
    ("int_attr3 >= 0", {"p3", "p6"}),
    ("int_attr3 < 100", {"p3", "p6"}),
    ("int_attr3 in (0, 7)", {"p3", "p6"}),
    ("int_attr3 not in (0, 7)", ALL - {"p3", "p6"}),
    ("int_attr3 not in (12345)", ALL),
    ('str_attr2 not in ("x")', ALL - {"p2"}),
    ('str_attr2 = "日本"', {"p5"}),
    ('str_attr = ""', {"p6"}),  # the empty string is a value, not a missing one
    ('str_attr != ""', ALL - {"p6"}),
    # edges of the 32-bit range
    (f"int_attr = {INT_MIN}", {"p5"}),
    (f"int_attr <= {INT_MIN}", {"p5"}),
    (f"int_attr > {INT_MIN}", {"p1", "p2", "p3", "p6"}),
    (f"int_attr >= {INT_MAX}", {"p6"}),
    (f"int_attr < {INT_MAX}", {"p1", "p2", "p3", "p5"}),
    ("int_attr4 = -1", {"p5"}),
    # escapes reach the database unescaped; SQL-looking text is just a value
    (r'str_attr = "say \"hi\" \\ there"', {"p5"}),
    ('str_attr3 = "\'; DROP TABLE imagesearch.pictures; --"', {"p7"}),
    ('STR_ATTR3 NOT IN ("\'; DROP TABLE imagesearch.pictures; --")', ALL - {"p7"}),
    # precedence and grouping
    ('int_attr2 = 2 OR int_attr2 = 3 AND str_attr = "b"', {"p7"}),
    ('(int_attr2 = 2 OR int_attr2 = 3) AND str_attr = "a"', {"p3"}),
    ('int_attr = 5 OR str_attr = "value1" AND int_attr2 = 5 OR int_attr4 != -1', ALL - {"p5"}),
    ("int_attr > 0 AND int_attr < 1000 AND int_attr2 >= 1", {"p1", "p3"}),
    ("int_attr2 in (1, 2, 3, 4) and int_attr2 not in (2)", {"p1", "p3"}),
]


@pytest.fixture
def example_rows(instance_id, engine) -> int:
    with engine.begin() as conn:
        for product_id, attrs in ROWS.items():
            picture_store.upsert_many(
                conn,
                instance_id,
                [{"product_id": product_id, "pic_name": "pic", "category_id": 88888888, **attrs, "embedding": EMBEDDING}],
            )
    return instance_id


def test_examples_select_the_expected_rows(example_rows, engine):
    with engine.connect() as conn:
        for text, expected in DB_CASES:
            assert matching(conn, example_rows, text) == expected, text
            # and the reference evaluator agrees with the hand-written expectation
            assert {p for p, row in ROWS.items() if evaluate(text, row)} == expected, text


def test_deepest_allowed_nesting_runs(example_rows, engine):
    # Alternate AND / OR so that no level merges into its parent: the SQL really nests MAX_NESTING deep.
    text = "int_attr2 = 1"
    for level in range(MAX_NESTING):
        text = f"int_attr2 = {level + 2} {'AND' if level % 2 else 'OR'} ({text})"
    assert text.count("(") == MAX_NESTING
    with engine.connect() as conn:
        got = matching(conn, example_rows, text)
    assert got == {p for p, row in ROWS.items() if evaluate(text, row)}
    with pytest.raises(InvalidFilter, match="nested deeper than 64"):
        compile_filter(f"({text})")


def test_long_lists_and_chains_run(example_rows, engine):
    in_list = "int_attr2 in (" + ",".join(str(i) for i in range(3, 900)) + ")"  # 3,527 characters
    chain = " OR ".join(f"int_attr={i}" for i in range(90, 330))
    assert len(in_list) <= MAX_FILTER_LENGTH and len(chain) <= MAX_FILTER_LENGTH
    with engine.connect() as conn:
        assert matching(conn, example_rows, in_list) == {"p3", "p2"}
        assert matching(conn, example_rows, chain) == {"p1"}


def test_user_text_only_travels_as_parameters():
    hostile = "'; DROP TABLE imagesearch.pictures; --"
    escaped = hostile.replace("\\", "\\\\").replace('"', '\\"')
    text = f'str_attr = "{escaped}" OR str_attr2 in ("{escaped}", "x") OR int_attr != 7'
    compiled = (
        sa.select(pictures.c.product_id).where(compile_filter(text)).compile(dialect=postgresql.psycopg.dialect())
    )
    assert "DROP" not in str(compiled) and "7" not in str(compiled)
    assert hostile in compiled.params.values() and 7 in compiled.params.values()
    assert [hostile, "x"] in [list(v) for v in compiled.params.values() if isinstance(v, (list, tuple))]


# ---- errors ---------------------------------------------------------------------------------------------

ERRORS = [
    ("", 1, "empty"),
    ("  \t\n ", 1, "empty"),
    ("foo = 1", 1, "unknown field 'foo'; the fields are int_attr, int_attr2, int_attr3, int_attr4, str_attr"),
    ("int_attr5 = 1", 1, "unknown field 'int_attr5'"),
    ("int_attr = 1 OR custom_content = 1", 17, "unknown field 'custom_content'"),
    ("ınt_attr = 1", 1, "unknown field"),  # dotless i
    ('str_attr > "a"', 10, "after str_attr (a string field"),
    ('str_attr <= "a"', 10, "found '<='"),
    ("int_attr ~ 3", 10, "expected a comparison operator (>, >=, <, <=, =, !=, in, not in) after int_attr, found '~'"),
    ("int_attr == 1", 11, "expected an integer"),
    ("int_attr <> 1", 11, "found '>'"),
    ("int_attr", 9, "comparison operator"),
    ('int_attr = "5"', 12, "expected an integer after 'int_attr =' (int_attr is an integer field), found '\"5\"'"),
    ("str_attr = 5", 12, "expected a double-quoted string after 'str_attr ='"),
    ("str_attr = 'a'", 12, "strings are written in double quotes"),
    ('int_attr in (1, "2")', 17, "expected an integer in the list"),
    ('str_attr not in ("a", 2)', 23, "expected a double-quoted string in the list"),
    ("int_attr = 2147483648", 12, "out of the 32-bit range"),
    ("int_attr = -2147483649", 12, "out of the 32-bit range"),
    ("int_attr in (1, 99999999999999999999999999999)", 17, "out of the 32-bit range"),
    ("int_attr = 1.5", 12, "expected an integer"),
    ("int_attr = 1e3", 12, "found '1e3'"),
    ("int_attr = 0x10", 12, "found '0x10'"),
    ("int_attr = - 1", 12, "found '-'"),
    ("int_attr = １", 12, "expected an integer"),  # a full-width digit
    ('str_attr = "abc', 12, "unterminated string"),
    ('str_attr = "abc\\"', 12, "unterminated string"),
    ('str_attr = "a\\nb"', 14, "invalid escape '\\\\n'"),
    ('str_attr = "\\x41"', 13, "invalid escape"),
    ("(int_attr = 1", 14, "expected AND, OR or ')' to close the '(' at position 1, found the end of the filter"),
    ("((int_attr = 1)", 16, "to close the '(' at position 1"),
    ("int_attr = 1)", 13, "')' without a matching '('"),
    ("()", 2, "expected a field name"),
    ("int_attr = 1 int_attr2 = 2", 14, "expected AND, OR or the end of the filter, found 'int_attr2'"),
    ("int_attr = 1 AND", 17, "expected a field name"),
    ("int_attr = 1 OR OR int_attr = 2", 17, "expected a field name"),
    ("int_attr in ()", 14, "the list after 'int_attr in' is empty; it needs a value"),
    ("str_attr not in ( )", 19, "the list after 'str_attr not in' is empty"),
    ("int_attr in (1,)", 16, "expected an integer in the list"),
    ("int_attr in (1 2)", 16, "expected ',' or ')' in the list"),
    ("int_attr in 1", 13, "expected '(' to open the list"),
    ("int_attr not (1)", 14, "expected 'in' after 'int_attr not'"),
    ("int_attr notin (1)", 10, "comparison operator"),
    ("x" * (MAX_FILTER_LENGTH + 1), 4097, "longer than 4096 characters"),
    ("int_attr = 1" + " " * (MAX_FILTER_LENGTH - 11), 4097, "longer than 4096 characters"),
    ('str_attr = "a\x00b"', 14, "NUL"),
    ("\x00", 1, "NUL"),
    ('str_attr = "\ud800"', 13, "lone surrogate"),
    ("(" * (MAX_NESTING + 1) + "int_attr = 1" + ")" * (MAX_NESTING + 1), 65, "nested deeper than 64 levels"),
    ("(" * 2040 + "int_attr=1" + ")" * 2040, 65, "nested deeper than 64 levels"),
]


@pytest.mark.parametrize("text, position, fragment", ERRORS)
def test_errors_name_the_position_and_the_problem(text, position, fragment):
    message = raises_invalid(text)
    assert f"at position {position}," in message
    assert fragment in message


@pytest.mark.parametrize("value", [None, 42, b"int_attr = 1", ["int_attr = 1"]])
def test_a_filter_that_is_not_text_is_invalid(value):
    assert "expected the filter as text" in raises_invalid(value)


def test_the_longest_allowed_filter_parses():
    text = "int_attr = 1" + " " * (MAX_FILTER_LENGTH - 12)
    assert len(text) == MAX_FILTER_LENGTH
    assert parse_filter(text) == C("int_attr", "=", 1)


def test_ten_thousand_parentheses_fail_fast_without_recursion_error(monkeypatch):
    """Fast as in bounded work: an over-long text is refused before a token is read, and deep nesting
    once the parser holds MAX_NESTING levels (it reads the opening parenthesis past them and one more token)."""
    from imagesearch_pg.store import filters

    read = []
    next_token = filters.Lexer.next
    monkeypatch.setattr(filters.Lexer, "next", lambda lexer: read.append(1) or next_token(lexer))
    for text, tokens, position in (("(" * 10_000, 0, MAX_FILTER_LENGTH + 1),
                                   ("(" * 10_000 + "int_attr=1" + ")" * 10_000, 0, MAX_FILTER_LENGTH + 1),
                                   ("(" * 4096, MAX_NESTING + 2, MAX_NESTING + 1)):
        read.clear()
        message = raises_invalid(text)
        assert len(read) == tokens, text[:20]
        assert f"at position {position}," in message


# ---- hostile input ----------------------------------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE imagesearch.pictures; --",
    'str_attr = "a"; DROP TABLE imagesearch.pictures; --',
    "int_attr = 1; DELETE FROM imagesearch.pictures",
    "int_attr = 1 /* comment */",
    "/* */ int_attr = 1",
    "int_attr = 1 -- comment",
    "int_attr = 1 --",
    ";",
    "int_attr = 1 OR 1=1",
    'str_attr = "a" ) OR (1=1',
    'str_attr = "a" OR "1"="1"',
    "str_attr = 'a' OR 'x'='x'",
    "str_attr = E'\\x41'",
    'str_attr = "a" "b"',
    "int_attr = $1",
    "int_attr = $1 OR $2",
    "int_attr = :x",
    "int_attr = %(x)s",
    "int_attr = %s",
    "int_attr = ?",
    "int_attr = 1 UNION SELECT * FROM imagesearch.instances",
    "int_attr = (SELECT 1)",
    "int_attr IN (SELECT int_attr FROM imagesearch.pictures)",
    "int_attr = 1 AND pg_sleep(10) IS NULL",
    "int_attr IS NULL",
    "int_attr = NULL",
    "str_attr = NULL",
    "int_attr = 1 AND NOT int_attr2 = 2",
    "int_attr = 1 && int_attr2 = 2",
    "int_attr = 1 || int_attr2 = 2",
    '"str_attr" = "a"',
    "imagesearch.pictures.int_attr = 1",
    "int_attr::text = '1'",
    'str_attr = "a\\"',  # the backslash escapes the closing quote
    'str_attr = "a\\',  # backslash at the end
    "\\",
    'str_attr = "a" \\',
    "int_attr = 1\x00; DROP TABLE imagesearch.pictures",
    'str_attr = "\x00"',
    # unicode look-alikes
    "ѕtr_attr = \"a\"",  # Cyrillic dze
    "int_attr ＝ 1",  # full-width equals sign
    "int_attr = 1 ΟR int_attr = 2",  # Greek capital omicron
    "int_attr = 1 ＯＲ int_attr = 2",  # full-width OR
    "str_attr = “a”",  # typographic quotes
    "ｉｎｔ_attr = 1",
    "int_attr = 1 \u200b",  # zero-width space
    "int_attr\u00a0=\u00a01",  # no-break spaces
    "int_attr = 1 \u212aND int_attr = 2",  # Kelvin sign lower-cases to ASCII k
    'str_attr = "\udcff"',
    # size and depth
    "(" * 10_000,
    "(" * 10_000 + "int_attr=1" + ")" * 10_000,
    "(" * 2000 + "int_attr=1" + ")" * 2000,
    "x" * 4097,
    "int_attr = 1 OR " * 273 + "int_attr = 1",  # 4380 characters of valid-looking text
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filters_are_invalid(text):
    assert "at position " in raises_invalid(text)


def test_hostile_filters_leave_the_database_alone(example_rows, engine):
    with engine.connect() as conn:
        before = db_state(conn, example_rows)
    assert before == (len(ROWS), True, True)
    for text in HOSTILE:
        with pytest.raises(InvalidFilter):
            with engine.begin() as conn:
                matching(conn, example_rows, text)
    # Hostile strings that are well-formed values only ever match themselves.
    values = [
        "'; DROP TABLE imagesearch.pictures; --",
        '" OR "1"="1',
        "a') OR ('1'='1",
        "$1",
        "%(x)s",
        "%s",
        ":x",
        "/* */",
        "--",
        "\\",
        '\\"',
        ");",
        "ѕtr_attr",
    ]
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(sa.delete(pictures).where(pictures.c.instance_id == example_rows))
            insert_rows(conn, example_rows, [{"str_attr": v} for v in values])
            for i, value in enumerate(values):
                literal = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                assert matching(conn, example_rows, f"str_attr = {literal}") == {f"p{i}"}, value
                assert matching(conn, example_rows, f"str_attr in ({literal}, \"zz\")") == {f"p{i}"}, value
        finally:
            trans.rollback()
    with engine.connect() as conn:
        assert db_state(conn, example_rows) == before


# ---- property tests ---------------------------------------------------------------------------------------

INT_EDGES = [INT_MIN, INT_MIN + 1, -100, -1, 0, 1, 2, 100, INT_MAX - 1, INT_MAX]
STR_POOL = [
    "",
    "a",
    "A",
    "b",
    " a ",
    '"',
    "\\",
    'a"b',
    "a\\b",
    '\\"',
    "\\\\",
    "é",
    "e\u0301",
    "日本",
    "🙂",
    "a\nb",
    "'; DROP TABLE imagesearch.pictures; --",
    "$1",
    "NULL",
    "AND",
]
ints = st.one_of(st.sampled_from(INT_EDGES), st.integers(INT_MIN, INT_MAX))
strs = st.one_of(
    st.sampled_from(STR_POOL),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6),
)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {attr: st.one_of(st.none(), ints) for attr in INT_ATTRS}
        | {attr: st.one_of(st.none(), strs) for attr in STR_ATTRS}
    ),
    min_size=2,
    max_size=10,
)


def ast_strategy(int_literals, str_literals, max_leaves: int = 8):
    leaves = st.one_of(
        st.builds(Comparison, st.sampled_from(INT_ATTRS), st.sampled_from(INT_OPS), int_literals),
        st.builds(Comparison, st.sampled_from(STR_ATTRS), st.sampled_from(STR_OPS), str_literals),
        st.builds(Membership, st.sampled_from(INT_ATTRS), st.lists(int_literals, min_size=1, max_size=4).map(tuple),
                  st.booleans()),
        st.builds(Membership, st.sampled_from(STR_ATTRS), st.lists(str_literals, min_size=1, max_size=4).map(tuple),
                  st.booleans()),
    )

    def combine(children):
        operands = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.one_of(st.builds(And, operands), st.builds(Or, operands))

    return st.recursive(leaves, combine, max_leaves=max_leaves)


SPACES = ["", "", " ", " ", "  ", "\t", "\n", "\r\n", " \f\v "]


def _word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def render(draw, node) -> str:
    """Filter text for ``node`` with random spacing, keyword / field case, signs, zeros and parentheses."""
    tokens: list[str] = []

    def word(text: str) -> str:
        mask = draw(st.integers(0, 2 ** len(text) - 1))
        return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(text))

    def literal(value) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        sign = "-" if value < 0 else draw(st.sampled_from(["", "", "+"]))
        return sign + "0" * draw(st.sampled_from([0, 0, 0, 1, 3])) + str(abs(value))

    def emit(node, parent) -> None:
        needs_parens = isinstance(node, Or) and isinstance(parent, And)
        # Redundant parentheses now and then; nested same-kind groups may also be written flat.
        parens = needs_parens or (parent is not None and draw(st.integers(0, 3)) == 0)
        if parens:
            tokens.append("(")
        if isinstance(node, (And, Or)):
            for i, operand in enumerate(node.operands):
                if i:
                    tokens.append(word("and" if isinstance(node, And) else "or"))
                emit(operand, node)
        elif isinstance(node, Comparison):
            tokens.extend([word(node.field), node.op, literal(node.value)])
        else:
            tokens.append(word(node.field))
            if node.negated:
                tokens.append(word("not"))
            tokens.extend([word("in"), "("])
            for i, value in enumerate(node.values):
                if i:
                    tokens.append(",")
                tokens.append(literal(value))
            tokens.append(")")
        if parens:
            tokens.append(")")

    emit(node, None)
    text = draw(st.sampled_from(SPACES))
    for previous, token in zip([None, *tokens], tokens):
        space = draw(st.sampled_from(SPACES)) if previous is not None else ""
        if previous is not None and not space and _word_char(previous[-1]) and _word_char(token[0]):
            space = " "  # two words (or a word and a number) need white space between them
        text += space + token
    return text + draw(st.sampled_from(SPACES))


def normalized(node):
    """The AST the parser must produce for ``node``: nested ANDs (ORs) merged into their parent."""
    if isinstance(node, (And, Or)):
        operands = []
        for operand in map(normalized, node.operands):
            operands.extend(operand.operands if type(operand) is type(node) else (operand,))
        return type(node)(tuple(operands))
    return node


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_rendered_ast_parses_back(data):
    node = data.draw(ast_strategy(ints, strs))
    text = render(data.draw, node)
    assert parse_filter(text) == normalized(node), text


def _mostly(present: list, general: st.SearchStrategy) -> st.SearchStrategy:
    """Values from ``present`` two times in three, otherwise from ``general``."""
    if not present:
        return general
    return st.one_of(st.sampled_from(present), st.sampled_from(present), general)


@st.composite
def rows_and_filter(draw):
    rows = draw(rows_strategy)
    # Literals are mostly values present in the rows, so that filters select some rows and miss others.
    present_ints = sorted({r[a] for r in rows for a in INT_ATTRS if r[a] is not None})
    present_strs = sorted({r[a] for r in rows for a in STR_ATTRS if r[a] is not None})
    int_literals = _mostly(present_ints, ints)
    str_literals = _mostly(present_strs, strs)
    # Several filters per set of rows: the rows are inserted once for all of them.
    nodes = draw(st.lists(ast_strategy(int_literals, str_literals), min_size=1, max_size=3))
    return rows, [(node, render(draw, node)) for node in nodes]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=rows_and_filter())
def test_database_agrees_with_the_reference(instance_id, engine, case):
    rows, filters = case
    with engine.connect() as conn:
        trans = conn.begin()  # rolled back: every example starts from the same empty instance
        try:
            insert_rows(conn, instance_id, rows)
            for node, text in filters:
                expected = {f"p{i}" for i, row in enumerate(rows) if evaluate_node(node, row)}
                assert matching(conn, instance_id, text) == expected, text
        finally:
            trans.rollback()
