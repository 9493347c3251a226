"""One exception hierarchy: each error carries its Code (the protocol's error codes, which every door
reports) and a message that says what was wrong and what is allowed.

Doors map codes to their own outcomes (the HTTP layer to statuses, the CLI to an exit status); none
inspects messages.
"""

from __future__ import annotations


class ImageSearchError(Exception):
    code = "InternalError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidParameter(ImageSearchError):
    code = "InvalidParameter"


class InvalidVersion(ImageSearchError):
    """A request for an API version other than the one served."""

    code = "InvalidVersion"


class MissingParameter(ImageSearchError):
    code = "MissingParameter"


class InvalidImage(ImageSearchError):
    code = "InvalidImage"


class InvalidImageFormat(ImageSearchError):
    code = "InvalidImageFormat"


class InvalidImageSize(ImageSearchError):
    code = "InvalidImageSize"


class InvalidFilter(ImageSearchError):
    code = "InvalidFilter"


class InvalidCategory(ImageSearchError):
    code = "InvalidCategory"


class InvalidRegion(ImageSearchError):
    code = "InvalidRegion"


class OverflowMaxReturnNum(ImageSearchError):
    code = "OverflowMaxReturnNum"


class OverflowMaxResultNum(ImageSearchError):
    code = "OverflowMaxResultNum"


class InvalidStartParameter(ImageSearchError):
    code = "InvalidStartParameter"


class InvalidInstance(ImageSearchError):
    code = "InvalidInstance"


class InstanceStatusError(ImageSearchError):
    code = "InstanceStatusError"


class InstanceBusy(InstanceStatusError):
    """A change of an instance could not get a lock it needs in time: another transaction that read or wrote
    the instance's pictures is still open. Nothing was changed; the same change may be tried again."""


class NoSpecifiedSearchPic(ImageSearchError):
    code = "NoSpecifiedSearchPic"


class DatabaseUnavailable(ImageSearchError):
    """The database cannot be reached (down, restarting, or refusing connections): a state, not a bug."""

    code = "ServiceUnavailable"


class SchemaOutOfDate(ImageSearchError):
    """The configured database's schema is not the one this version needs (an operator's task)."""

    code = "ServiceUnavailable"


class UntrustedNames(ImageSearchError):
    """Untrusted roles may create, or have made, functions where a migration looks names up: the upgrade could
    run one of theirs with the migrating user's rights (an operator's task: revoke and drop them first)."""

    code = "ServiceUnavailable"


class HeadersNotReported(ImageSearchError):
    """The HTTP server in front of the app does not say which headers a request sent more than once, so its
    signed requests cannot be checked (an operator's task: serve with `imagesearch serve`)."""

    code = "ServiceUnavailable"


class InvalidAccessKeyId(ImageSearchError):
    code = "InvalidAccessKeyId"


class SignatureDoesNotMatch(ImageSearchError):
    code = "SignatureDoesNotMatch"


class RequestExpired(ImageSearchError):
    code = "RequestExpired"


class InvalidTimeStamp(ImageSearchError):
    """An RPC-style request's Timestamp is not a UTC time (ACS3's x-acs-date answers RequestExpired)."""

    code = "InvalidTimeStamp.Format"


class TimeStampExpired(ImageSearchError):
    """An RPC-style request's Timestamp is outside the window."""

    code = "InvalidTimeStamp.Expired"


class SignatureNonceUsed(ImageSearchError):
    code = "SignatureNonceUsed"


class NoPermission(ImageSearchError):
    code = "NoPermission"


class Throttling(ImageSearchError):
    code = "Throttling"


def from_code(code: str, message: str) -> ImageSearchError:
    """The error a Code names (as the SQL surface raises them, the Code in the DETAIL): the class of that
    Code, or an InternalError carrying it."""
    pending = [ImageSearchError]
    while pending:
        kind = pending.pop()
        if kind.code == code:
            return kind(message)
        pending.extend(kind.__subclasses__())
    return ImageSearchError(f"{code}: {message}")
