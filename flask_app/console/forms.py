"""What the console's forms share: which field an error is about, and reading numbers and attributes."""

from __future__ import annotations

from flask_app.params import Params
from imagesearch_pg.attributes import Attributes, INT_ATTRS, STR_ATTRS
from imagesearch_pg.errors import ImageSearchError, InvalidParameter
from imagesearch_pg.storage import PathRefused, UnknownLocation

# An error's Code, or a word its message starts with, -> the form field it is about.
_BY_CODE = {
    "InvalidImage": "picture", "InvalidImageFormat": "picture", "InvalidImageSize": "picture",
    "InvalidFilter": "filter", "InvalidRegion": "region", "InvalidCategory": "category_id",
    "OverflowMaxReturnNum": "num", "InvalidStartParameter": "start", "OverflowMaxResultNum": "start",
    "NoSpecifiedSearchPic": "product_id", "InvalidInstance": "instance",
}
_BY_WORD = {
    "Num": "num", "Start": "start", "ProductId": "product_id", "PicName": "pic_name", "PicContent": "picture",
    "CategoryId": "category_id", "CustomContent": "custom_content", "ScoreThreshold": "score_threshold",
    "Region": "region", "Path": "path", "BucketName": "location", "CallbackAddress": "callback",
    "capacity": "capacity", "qps": "qps",
    **{name.replace("_", " ").title().replace(" ", ""): name for name in INT_ATTRS + STR_ATTRS},
}


def field_of(error: ImageSearchError, default: str = "form") -> str:
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    first = error.message.split(" ", 1)[0].rstrip(":,")
    return _BY_WORD.get(first, default)


def number(form, name: str, label: str, default: int | None = None) -> int | None:
    """A whole number as the API reads one (flask_app/params.py: ASCII digits, a bounded count of them, so
    that int() never sees thousands); ``default`` if the field is empty."""
    text = (form.get(name) or "").strip()
    if text == "":
        return default
    try:
        return Params({name: text}).int(name)
    except InvalidParameter:
        raise FieldError(name, f"{label} must be a whole number, got {text[:40]!r}") from None


def decimal(form, name: str, label: str, default: float) -> float:
    """A decimal number as the API reads one (no 'nan', 'inf' or digits other than ASCII ones)."""
    text = (form.get(name) or "").strip()
    if text == "":
        return default
    try:
        return Params({name: text}).float(name)
    except InvalidParameter:
        raise FieldError(name, f"{label} must be a decimal number, got {text[:40]!r}") from None


def attributes(form) -> Attributes:
    """The attribute fields of a form (empty ones are not given)."""
    values: dict = {}
    for name in INT_ATTRS:
        values[name] = number(form, name, name.replace("_", " ").title().replace(" ", ""))
    for name in STR_ATTRS + ("custom_content",):
        text = form.get(name, "")
        values[name] = text if text != "" else None
    return Attributes(**values)


class FieldError(InvalidParameter):
    """A value the form itself cannot read, named by its field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def error_field(error: ImageSearchError, default: str = "form") -> str:
    """The form field an error is about: a FieldError's own, a storage path's or location's, else by Code
    or by the first word of the message."""
    if isinstance(error, FieldError):
        return error.field
    if isinstance(error, PathRefused):
        return "path"
    if isinstance(error, UnknownLocation):
        return "location"
    return field_of(error, default)


def refused(error: ImageSearchError) -> int:
    """The HTTP status of a form the service refused. An outage is not the form's fault: it is raised
    again, for the console's 503 page."""
    from flask_app import protocol

    if error.code == "ServiceUnavailable":
        raise error
    return protocol.http_status(error)
