"""Typed access to a request's parameters (form body and query string, all text on the wire)."""

from __future__ import annotations

from flask_app import protocol
from imagesearch_pg.attributes import ATTRIBUTE_NAMES, INT_ATTRS, Attributes
from imagesearch_pg.errors import InvalidParameter, MissingParameter
from imagesearch_pg.service.models import public_name


class Params:
    def __init__(self, values: dict[str, str]):
        self.values = values

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
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(f"{name} must be an integer, got {value[:32]!r}") from None

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise InvalidParameter(f"{name} must be a number, got {value[:32]!r}") from None
        if number != number:  # NaN
            raise InvalidParameter(f"{name} must be a number, got {value[:32]!r}")
        return number

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
