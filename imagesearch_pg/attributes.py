"""What a picture carries besides its vectors: the attribute names and their limits, written once.

The store's columns, the filter language, validation, the HTTP parameters and the CLI all read these.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Attributes:
    custom_content: str | None = None
    int_attr: int | None = None
    int_attr2: int | None = None
    int_attr3: int | None = None
    int_attr4: int | None = None
    str_attr: str | None = None
    str_attr2: str | None = None
    str_attr3: str | None = None
    str_attr4: str | None = None

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in ATTRIBUTE_NAMES}


ATTRIBUTE_NAMES = tuple(f.name for f in fields(Attributes))
INT_ATTRS = tuple(name for name in ATTRIBUTE_NAMES if name.startswith("int_attr"))
STR_ATTRS = tuple(name for name in ATTRIBUTE_NAMES if name.startswith("str_attr"))

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the integer attributes are PostgreSQL integers
MAX_CUSTOM_CONTENT = 4096
MAX_STR_ATTR = 128
