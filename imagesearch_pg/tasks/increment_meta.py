"""increment.meta: the JSON lines of a batch task (../shared/spec/batch.md), read with their byte offsets
and parsed into operations.

Parsing checks the shape of a line (JSON object, known fields, types); the limits of the values are the
service's (Pictures.check_add and check_delete), as for AddImage and DeleteImage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from imagesearch_pg.attributes import INT_ATTRS, STR_ATTRS, Attributes
from imagesearch_pg.service.models import public_name

FILE_NAME = "increment.meta"
MAX_LINE_BYTES = 64 * 1024  # a line with every field at its limit is under 10 KB
_KEPT_CHARACTERS = 2048  # of a failed line, in the error report

_INT_FIELDS = {public_name(name): name for name in INT_ATTRS}
_TEXT_FIELDS = {public_name(name): name for name in (*STR_ATTRS, "custom_content")}
FIELDS = ("OperationType", "ProductId", "PicName", "CategoryId", "Crop", "Region", *_INT_FIELDS, *_TEXT_FIELDS)
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")


class LineRefused(Exception):
    """A line that cannot be applied; ``reason`` says why, in the error report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Line:
    number: int  # from 1
    raw: bytes
    end: int  # the byte offset just after it: where a resumed task goes on

    def content(self) -> str:
        """The line as the error report shows it (NUL, which a database text cannot hold, as U+FFFD)."""
        text = self.raw.rstrip(b"\r\n").decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return text if len(text) <= _KEPT_CHARACTERS else text[:_KEPT_CHARACTERS] + "..."


@dataclass(frozen=True)
class Add:
    product_id: str
    pic_name: str
    category_id: int | None
    crop: bool
    region: str | None
    attributes: Attributes


@dataclass(frozen=True)
class Delete:
    product_id: str
    pic_name: str | None  # None: every picture of the product


def lines(file: BinaryIO, start_offset: int = 0, start_number: int = 0) -> Iterator[Line]:
    """The file's lines from ``start_offset`` (a Line.end, or 0), numbered after ``start_number``. A line
    over MAX_LINE_BYTES comes whole in number and offset, cut short in content (parse refuses it)."""
    file.seek(start_offset)
    offset, number = start_offset, start_number
    while True:
        raw = file.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        length = len(raw)
        if length > MAX_LINE_BYTES and not raw.endswith(b"\n"):  # skip to the end of the long line
            while rest := file.readline(MAX_LINE_BYTES):
                length += len(rest)
                if rest.endswith(b"\n"):
                    break
        number += 1
        offset += length
        yield Line(number, raw, offset)


def count_lines(file: BinaryIO) -> int:
    count, last = 0, b"\n"
    file.seek(0)
    while block := file.read(1 << 20):
        count += block.count(b"\n")
        last = block[-1:]
    return count + (last != b"\n")


def parse(line: Line) -> Add | Delete | None:
    """The line's operation; None for a blank line. Raises LineRefused."""
    if len(line.raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
        raise LineRefused(f"the line is over {MAX_LINE_BYTES // 1024} KB")
    try:
        text = line.raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise LineRefused("the line is not UTF-8 text") from None
    if not text:
        return None
    try:
        fields = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise LineRefused(f"the line is not JSON: {exc}") from None
    except RecursionError:
        raise LineRefused("the line nests too deep to be one of increment.meta's objects") from None
    if not isinstance(fields, dict):
        raise LineRefused("the line must be a JSON object")
    for value in (*fields, *(value for value in fields.values() if isinstance(value, str))):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a \ud800 escape: JSON allows it, text cannot hold it
            raise LineRefused("the line holds an unpaired surrogate escape (such as \\ud800): not Unicode text") from None
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise LineRefused(f"unknown field {unknown[0][:64]!r}; the fields are {', '.join(FIELDS)}")
    operation = fields.get("OperationType")
    product_id = _text(fields, "ProductId")
    if product_id is None:
        raise LineRefused("ProductId is required")
    pic_name = _text(fields, "PicName")
    if operation == "DELETE":
        extra = [name for name in fields if name not in ("OperationType", "ProductId", "PicName")]
        if extra:
            raise LineRefused(f"a DELETE takes OperationType, ProductId and PicName only, not {extra[0]}")
        return Delete(product_id, pic_name)
    if operation != "ADD":
        raise LineRefused(f"OperationType must be ADD or DELETE, got {str(operation)[:32]!r}")
    if pic_name is None:
        raise LineRefused("PicName is required on an ADD: it names the picture file in the folder")
    return Add(
        product_id,
        pic_name,
        _integer(fields, "CategoryId"),
        _boolean(fields, "Crop", True),
        _text(fields, "Region"),
        Attributes(**{column: _integer(fields, name) for name, column in _INT_FIELDS.items()},
                   **{column: _text(fields, name) for name, column in _TEXT_FIELDS.items()}),
    )


def _unique_keys(pairs: list) -> dict:
    found = {}
    for name, value in pairs:
        if name in found:
            raise LineRefused(f"field {name[:64]!r} is given twice")
        found[name] = value
    return found


def _text(fields: dict, name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise LineRefused(f"{name} must be a string, got {json.dumps(value)[:32]}")
    return value


def _integer(fields: dict, name: str) -> int | None:
    """A JSON integer, or a string of ASCII digits (what the form protocol sends)."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LineRefused(f"{name} must be an integer, got {json.dumps(value)[:32]}")
    return value


def _boolean(fields: dict, name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise LineRefused(f"{name} must be true or false, got {json.dumps(value)[:32]}")
