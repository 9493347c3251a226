"""Checks on request values, each failing with a typed error before anything is touched."""

from __future__ import annotations

import re

import numpy as np

from imagesearch_pg import categories
from imagesearch_pg.attributes import (
    INT32_MAX,
    INT32_MIN,
    INT_ATTRS,
    MAX_CUSTOM_CONTENT,
    MAX_STR_ATTR,
    STR_ATTRS,
    Attributes,
)
from imagesearch_pg.errors import (
    InvalidCategory,
    InvalidParameter,
    InvalidStartParameter,
    MissingParameter,
    OverflowMaxResultNum,
    OverflowMaxReturnNum,
)
from imagesearch_pg.service.models import public_name
from imagesearch_pg.service_types import SERVICE_TYPES

MAX_NUM, MAX_WINDOW = 100, 500
MAX_KEY_LENGTH = 512  # ProductId and PicName
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def text(name: str, value: str | None, *, max_len: int, required: bool = False, min_len: int = 0) -> str | None:
    if value is None or (required and value == ""):
        if required:
            raise MissingParameter(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{name} must be a string")
    if not (min_len <= len(value) <= max_len):
        raise InvalidParameter(f"{name} must be {min_len}-{max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidParameter(f"{name} must not contain NUL characters")
    return value


def picture_key(product_id: str, pic_name: str | None, *, pic_name_required: bool = True) -> None:
    """ProductId and PicName: 1-512 characters each (PicName may be left out where it is optional)."""
    text("ProductId", product_id, min_len=1, max_len=MAX_KEY_LENGTH, required=True)
    text("PicName", pic_name, min_len=1, max_len=MAX_KEY_LENGTH, required=pic_name_required)


def int32(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be an integer")
    if not (INT32_MIN <= value <= INT32_MAX):
        raise InvalidParameter(f"{name} must be a 32-bit signed integer ({INT32_MIN}..{INT32_MAX}), got {value}")
    return value


def attributes(given: Attributes) -> dict:
    """The attributes as column values, each checked."""
    values = given.as_dict()
    text(public_name("custom_content"), values["custom_content"], max_len=MAX_CUSTOM_CONTENT)
    for name in INT_ATTRS:
        int32(public_name(name), values[name])
    for name in STR_ATTRS:
        text(public_name(name), values[name], max_len=MAX_STR_ATTR)
    return values


def category(service_type: str, category_id: int | None) -> int | None:
    """A given CategoryId on an instance of a type with categories (product); None when none is given or
    the type has none (its pictures are all in Other, whatever a client sends)."""
    if category_id is None or not SERVICE_TYPES[service_type].categories:
        return None
    if isinstance(category_id, bool) or not isinstance(category_id, int) or category_id not in categories.CATEGORIES:
        raise InvalidCategory(
            f"CategoryId {category_id!r} is not a category; allowed: {', '.join(map(str, categories.CATEGORIES))}"
        )
    return category_id


def window(num: int, start: int) -> None:
    """Num 1-100, Start 0-499, Start+Num <= 500."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InvalidParameter(f"Num must be an integer from 1 to {MAX_NUM}, got {num!r}")
    if num > MAX_NUM:
        raise OverflowMaxReturnNum(f"Num is {num}; at most {MAX_NUM} results are returned per request")
    if isinstance(start, bool) or not isinstance(start, int) or not (0 <= start < MAX_WINDOW):
        raise InvalidStartParameter(f"Start must be an integer from 0 to {MAX_WINDOW - 1}, got {start!r}")
    if start + num > MAX_WINDOW:
        raise OverflowMaxResultNum(f"Start+Num is {start + num}; results beyond the first {MAX_WINDOW} are not served")


def score_threshold(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise InvalidParameter(f"ScoreThreshold must be a number from 0 to 1, got {value!r}")
    return float(value)


def instance_name(name: str) -> str:
    if not isinstance(name, str) or not INSTANCE_NAME.fullmatch(name):
        raise InvalidParameter(
            f"instance name {str(name)[:80]!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def service_type(value: str) -> str:
    if value not in SERVICE_TYPES:
        raise InvalidParameter(f"service type {value!r} is not one of {', '.join(SERVICE_TYPES)}")
    return value


def positive(name: str, value: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (1 <= value <= maximum):
        raise InvalidParameter(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
    return value


def query_vector(value, dim: int) -> np.ndarray:
    """A caller's query vector: ``dim`` finite numbers, not all zero; returned as float32 of unit length
    (stored embeddings are unit length, so scores stay cosine similarities)."""
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidParameter(f"the query vector must be a list of {dim} numbers") from None
    if vector.shape != (dim,):
        raise InvalidParameter(f"the query vector has shape {vector.shape}; the instance's vectors have {dim} numbers")
    if not np.all(np.isfinite(vector)):
        raise InvalidParameter("the query vector holds a NaN or an infinity; only finite numbers are allowed")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise InvalidParameter("the query vector is all zeros; a direction is needed")
    return vector / norm

