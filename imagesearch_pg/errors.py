"""One exception hierarchy: each error carries the protocol's Code and HTTP status.

The HTTP layer maps these to responses; it never inspects messages.
"""

from __future__ import annotations


class ImageSearchError(Exception):
    code = "InternalError"
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidParameter(ImageSearchError):
    code, http_status = "InvalidParameter", 400


class MissingParameter(ImageSearchError):
    code, http_status = "MissingParameter", 400


class InvalidImage(ImageSearchError):
    code, http_status = "InvalidImage", 400


class InvalidImageFormat(ImageSearchError):
    code, http_status = "InvalidImageFormat", 400


class InvalidImageSize(ImageSearchError):
    code, http_status = "InvalidImageSize", 400


class InvalidFilter(ImageSearchError):
    code, http_status = "InvalidFilter", 400


class InvalidCategory(ImageSearchError):
    code, http_status = "InvalidCategory", 400


class InvalidRegion(ImageSearchError):
    code, http_status = "InvalidRegion", 400


class OverflowMaxReturnNum(ImageSearchError):
    code, http_status = "OverflowMaxReturnNum", 400


class OverflowMaxResultNum(ImageSearchError):
    code, http_status = "OverflowMaxResultNum", 400


class InvalidStartParameter(ImageSearchError):
    code, http_status = "InvalidStartParameter", 400


class InvalidInstance(ImageSearchError):
    code, http_status = "InvalidInstance", 404


class InstanceStatusError(ImageSearchError):
    code, http_status = "InstanceStatusError", 409


class NoSpecifiedSearchPic(ImageSearchError):
    code, http_status = "NoSpecifiedSearchPic", 404


class SchemaOutOfDate(ImageSearchError):
    """The configured database's schema is not the one this version needs (an operator's task)."""

    code, http_status = "ServiceUnavailable", 503


class InvalidAccessKeyId(ImageSearchError):
    code, http_status = "InvalidAccessKeyId", 403


class SignatureDoesNotMatch(ImageSearchError):
    code, http_status = "SignatureDoesNotMatch", 403


class RequestExpired(ImageSearchError):
    code, http_status = "RequestExpired", 403


class SignatureNonceUsed(ImageSearchError):
    code, http_status = "SignatureNonceUsed", 403


class NoPermission(ImageSearchError):
    code, http_status = "NoPermission", 403


class ActionNotAvailable(ImageSearchError):
    """An action of the protocol this version does not serve yet."""

    code, http_status = "ActionNotAvailable", 501


class Throttling(ImageSearchError):
    code, http_status = "Throttling", 429
