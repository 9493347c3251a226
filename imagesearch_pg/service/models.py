"""Plain result objects of the service layer, with Python names.

``public_name`` gives the names users see for their fields in every door (the HTTP API, the CLI's tables
and --json, the console): the protocol's names, written here once. Envelopes, statuses and encodings of
the protocol live in flask_app/protocol.py.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import datetime

from imagesearch_pg.attributes import ATTRIBUTE_NAMES, Attributes

# The fields whose public name is not their Python name in PascalCase.
_PUBLIC_NAMES = {"picture_count": "TotalCount", "created_at": "UtcCreate", "expires_at": "UtcExpireTime",
                 "updated_at": "UtcModified", "location": "BucketName"}


def public_name(name: str) -> str:
    """int_attr2 -> IntAttr2, picture_count -> TotalCount."""
    return _PUBLIC_NAMES.get(name) or "".join(part.capitalize() for part in name.split("_"))


def public_record(values: dict) -> dict:
    """A record under its public names, times as milliseconds since the epoch (as the protocol has them)."""
    return {
        public_name(key): int(value.timestamp() * 1000) if isinstance(value, datetime) else value
        for key, value in values.items()
    }


@dataclass(frozen=True)
class Instance:
    name: str
    service_type: str
    capacity: int
    qps: int
    region: str
    tags: dict
    status: str
    encoder: str
    embedding_dim: int
    created_at: datetime
    expires_at: datetime | None
    picture_count: int
    id: int = 0  # the console's ID column; never part of the protocol's answers (as_dict)
    shard: str | None = None  # the server holding its pictures (docs/scaling.md); None: the database itself

    def as_dict(self) -> dict:
        """What every door shows of an instance."""
        shown = ("name", "service_type", "region", "capacity", "qps", "picture_count", "encoder", "created_at",
                 "expires_at")
        return {name: getattr(self, name) for name in shown}


# A row's attribute columns in Attributes' field order (positional: a search shapes up to 500 rows).
_attribute_values = operator.attrgetter(*ATTRIBUTE_NAMES)


@dataclass(frozen=True)
class PicInfo:
    """What the service saw in a picture: its category and subject box(es), as x1,x2,y1,y2 text."""

    category_id: int
    region: str
    multi_region: list[str]


@dataclass(frozen=True)
class Match:
    """One picture found: a search result (with its score) or a listed or checked picture (score None)."""

    product_id: str
    pic_name: str
    category_id: int
    score: float | None
    attributes: Attributes

    @classmethod
    def from_row(cls, row, score: float | None) -> "Match":
        """A stored picture's result columns (store.pictures.RESULT_COLUMNS) as a Match."""
        return cls(row.product_id, row.pic_name, row.category_id, score, Attributes(*_attribute_values(row)))

    def as_dict(self) -> dict:
        """Key, score (when there is one), category and every attribute (None where it has no value)."""
        shown = {"product_id": self.product_id, "pic_name": self.pic_name, "category_id": self.category_id}
        if self.score is not None:
            shown["score"] = self.score
        return {**shown, **self.attributes.as_dict()}


@dataclass(frozen=True)
class SearchResult:
    docs_found: int  # how many pictures match, counted up to the 500-result window
    search_time_ms: int
    matches: list[Match]
    pic_info: PicInfo | None = None  # searches with a picture only

    @property
    def docs_return(self) -> int:
        return len(self.matches)


@dataclass(frozen=True)
class DeleteResult:
    pic_names: list[str] = field(default_factory=list)
