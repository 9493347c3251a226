"""increment.meta reading: lines and their offsets over any bytes (resuming at any line's end gives the
rest), long lines cut but counted, and parsing of every field's type (hypothesis over the input space)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesearch_pg.tasks.increment_meta import MAX_LINE_BYTES, FIELDS, Add, Delete, Line, LineRefused, count_lines, lines, parse


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30), st.booleans())
def test_lines_cover_the_file_and_resume_at_any_line_end(parts, final_newline):
    raw = b"\n".join(parts) + (b"\n" if final_newline and parts else b"")
    found = list(lines(io.BytesIO(raw)))
    assert b"".join(line.raw for line in found) == raw
    assert [line.number for line in found] == list(range(1, len(found) + 1))
    assert count_lines(io.BytesIO(raw)) == len(found)
    for at, line in enumerate(found):
        rest = list(lines(io.BytesIO(raw), line.end, line.number))
        assert rest == found[at + 1:]


def test_a_line_over_the_limit_is_one_line_refused_and_the_next_is_read():
    long = b'{"x": "' + b"a" * (3 * MAX_LINE_BYTES) + b'"}\n'
    raw = long + b'{"OperationType": "DELETE", "ProductId": "p"}\n'
    first, second = lines(io.BytesIO(raw))
    assert (first.number, first.end) == (1, len(long)) and len(first.raw) == MAX_LINE_BYTES + 1
    with pytest.raises(LineRefused, match="over 64 KB"):
        parse(first)
    assert parse(second) == Delete("p", None)
    exactly = b'{"OperationType": "DELETE", "ProductId": "' + b"p" * (MAX_LINE_BYTES - 44) + b'"}'
    assert len(exactly) == MAX_LINE_BYTES and isinstance(parse(Line(1, exactly + b"\n", 0)), Delete)


def line(fields) -> Line:
    return Line(1, json.dumps(fields).encode(), 0)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), _JSON, max_size=8))
def test_any_object_is_an_operation_or_a_reason_never_a_crash(fields):
    try:
        parsed = parse(line(fields))
    except LineRefused as refused:
        assert refused.reason
        return
    assert isinstance(parsed, (Add, Delete))
    assert fields["OperationType"] in ("ADD", "DELETE") and isinstance(fields["ProductId"], str)
    assert set(fields) <= set(FIELDS)


def test_field_types():
    add = parse(line({"OperationType": "ADD", "ProductId": "p", "PicName": "a.jpg", "IntAttr": "-12",
                      "IntAttr3": 7, "CategoryId": "3", "Crop": "false", "StrAttr2": "s"}))
    assert (add.attributes.int_attr, add.attributes.int_attr3, add.category_id, add.crop, add.attributes.str_attr2) == (
        -12, 7, 3, False, "s")
    assert parse(line({"OperationType": "ADD", "ProductId": "p", "PicName": "a.jpg"})).crop is True
    for bad, reason in [({"IntAttr": "1e3"}, "IntAttr must be an integer"), ({"IntAttr": "١٢"}, "IntAttr"),
                        ({"CategoryId": 2.0}, "CategoryId"), ({"Crop": 1}, "Crop"), ({"Region": [1, 2]}, "Region"),
                        ({"CustomContent": {"k": 1}}, "CustomContent")]:
        with pytest.raises(LineRefused, match=reason):
            parse(line({"OperationType": "ADD", "ProductId": "p", "PicName": "a.jpg", **bad}))
    assert parse(Line(1, b"   \r\n", 0)) is None
