"""Checks on request values, each failing with the protocol's error before anything is touched."""

from __future__ import annotations

import re

from imagesearch_pg.errors import (
    InvalidParameter,
    InvalidStartParameter,
    MissingParameter,
    OverflowMaxResultNum,
    OverflowMaxReturnNum,
)

INT32 = (-(2**31), 2**31 - 1)
MAX_NUM, MAX_WINDOW = 100, 500
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SERVICE_TYPES = ("product", "generic", "fabric", "trademark")


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


def int32(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be an integer")
    if not (INT32[0] <= value <= INT32[1]):
        raise InvalidParameter(f"{name} must be a 32-bit signed integer ({INT32[0]}..{INT32[1]}), got {value}")
    return value


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
