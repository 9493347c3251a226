"""Plain result and argument objects of the service layer (Python names; the HTTP layer renames them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime


@dataclass(frozen=True)
class Attributes:
    """What a picture carries besides its vector."""

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
        return {f.name: getattr(self, f.name) for f in fields(self)}


ATTRIBUTE_NAMES = tuple(f.name for f in fields(Attributes))


def protocol_name(name: str) -> str:
    """int_attr2 -> IntAttr2: the protocol's spelling of a Python name."""
    return "".join(part.capitalize() for part in name.split("_"))


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


@dataclass(frozen=True)
class PicInfo:
    """What the service saw in a picture: its category and subject box(es)."""

    category_id: int
    region: str
    multi_region: list[str]


@dataclass(frozen=True)
class Auction:
    """One search result."""

    product_id: str
    pic_name: str
    category_id: int
    score: float | None  # None where there is no query (SearchImageByFilter, CheckImageExists)
    attributes: Attributes

    @property
    def sort_expr_values(self) -> str:
        return f"{self.score};0"


@dataclass(frozen=True)
class SearchResult:
    docs_found: int
    search_time_ms: int
    auctions: list[Auction]
    pic_info: PicInfo | None = None

    @property
    def docs_return(self) -> int:
        return len(self.auctions)


@dataclass(frozen=True)
class DeleteResult:
    pic_names: list[str] = field(default_factory=list)
