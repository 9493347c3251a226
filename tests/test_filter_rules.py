"""Rules of the filter compiler (imagesearch_pg/store/filters.py) that tests/test_filters.py leaves open:
how a long token is shown in a message, messages at the edges of strings and words, nesting counted after a
group closes, and that a filter compiled for a given table refers to that table alone at every level of
AND, OR and the comparisons under them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imagesearch_pg.errors import InvalidFilter
from imagesearch_pg.store.filters import FIELDS, MAX_NESTING, compile_filter, parse_filter
from imagesearch_pg.store.tables import pictures


@pytest.mark.parametrize("length,shown", [(40, "w" * 40), (41, "w" * 40 + "...")])
def test_a_token_is_shown_whole_up_to_40_characters(length, shown):
    with pytest.raises(InvalidFilter) as refused:
        parse_filter("w" * length + " = 1")
    assert refused.value.message == (f"Filter: at position 1, unknown field {shown!r}; the fields are "
                                     f"{', '.join(FIELDS)}")


def refusal(text: str) -> str:
    with pytest.raises(InvalidFilter) as refused:
        parse_filter(text)
    return refused.value.message


@pytest.mark.parametrize("text,message", [
    ("int_attr = 1\x00 \x00", "Filter: at position 13, NUL characters (U+0000) are not allowed in a filter"),
    # a backslash before the last character escapes it, or is refused for it, as anywhere else
    ('str_attr = "ab\\x', "Filter: at position 15, invalid escape '\\\\x' in the string starting at position 12; "
                         'only \\" (a quote) and \\\\ (a backslash) are allowed'),
    ('str_attr = "\\X"', "Filter: at position 13, invalid escape '\\\\X' in the string starting at position 12; "
                         'only \\" (a quote) and \\\\ (a backslash) are allowed'),
    ("X1 = 1", f"Filter: at position 1, unknown field 'X1'; the fields are {', '.join(FIELDS)}"),
])
def test_messages_at_the_edges_of_strings_and_words(text, message):
    assert refusal(text) == message


def test_nesting_is_counted_afresh_after_a_group_closes():
    deepest = "(" * MAX_NESTING + "int_attr = 2" + ")" * MAX_NESTING
    parse_filter(f"(int_attr = 1) AND {deepest} OR ((int_attr = 3))")
    too_deep = "(" * (MAX_NESTING + 1) + "int_attr = 2" + ")" * (MAX_NESTING + 1)
    assert "nested deeper than 64 levels" in refusal(f"((int_attr = 1)) AND {too_deep}")


@pytest.mark.parametrize("text", [
    "int_attr = 1",
    'int_attr = 1 AND str_attr = "a"',
    'int_attr = 1 OR str_attr != "a"',
    'int_attr >= 1 AND (str_attr = "a" OR int_attr2 in (1, 2)) AND str_attr2 not in ("x") OR int_attr3 != 4',
])
def test_a_filter_compiled_for_a_table_reads_that_table_alone(text):
    elsewhere = pictures.alias("elsewhere")
    statement = sa.select(sa.literal(1)).select_from(elsewhere).where(compile_filter(text, elsewhere))
    assert statement.get_final_froms() == [elsewhere]
    assert sa.select(sa.literal(1)).where(compile_filter(text)).get_final_froms() == [pictures]
