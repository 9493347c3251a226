"""Typed access to a request's parameters (form body and query string, all text on the wire).

Numbers are ASCII digits only: Python's int() and float() also read '١٢' (Arabic-Indic digits), ' 7 ',
'1_000' and 'nan', which no client means as a number.
"""

from __future__ import annotations

import re

from flask_app import protocol
from imagesearch_pg.attributes import ATTRIBUTE_NAMES, INT_ATTRS, Attributes
from imagesearch_pg.errors import InvalidParameter, MissingParameter
from imagesearch_pg.service.models import public_name


_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_NUMBER = re.compile(r"[+-]?([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][+-]?[0-9]{1,3})?")


class Params:
    def __init__(self, values: dict[str, str]):
        self.values = values

    @classmethod
    def of(cls, *sources) -> "Params":
        """The parameters of the query string and the form body (MultiDicts): each name once, in one of them."""
        values: dict[str, str] = {}
        for source in sources:
            for name, given in source.lists():
                if len(given) > 1 or name in values:
                    raise InvalidParameter(f"parameter {name[:64]!r} is given more than once; give each once")
                values[name] = given[0]
        return cls(values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def required(self, name: str) -> str:
        value = self.values.get(name)
        if value is None or value == "":
            raise MissingParameter(f"{name} is required")
        return value

    def picture(self, name: str) -> bytes:
        """A required picture, sent as base64."""
        return protocol.picture(self.required(name), name)

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if not _INTEGER.fullmatch(value):
            raise InvalidParameter(f"{name} must be an integer (ASCII digits), got {value[:32]!r}")
        return int(value)

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if not _NUMBER.fullmatch(value):
            raise InvalidParameter(f"{name} must be a decimal number, got {value[:32]!r}")
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise InvalidParameter(f"{name} must be true or false, got {value[:32]!r}")
        return lowered == "true"

    def attributes(self) -> Attributes:
        """CustomContent, IntAttr..IntAttr4, StrAttr..StrAttr4 (None where absent)."""
        values = {}
        for name in ATTRIBUTE_NAMES:
            wire = public_name(name)
            values[name] = self.int(wire) if name in INT_ATTRS else self.get(wire)
        return Attributes(**values)
