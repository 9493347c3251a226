"""The errors of storage locations, and the one place where filesystem and S3 exceptions become them.

Messages are shown to whoever submitted a task: they name the file and the location, never a secret.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterable, Iterator

from imagesearch_pg.errors import ImageSearchError, InvalidImageSize, InvalidParameter

SHOWN_CHARS = 64  # user text quoted in a message is cut to this


class PathRefused(InvalidParameter):
    """A Path or file name that could leave its location (``..``, a link pointing out) or is malformed."""


class UnknownLocation(InvalidParameter):
    """A storage location name the operator has not added."""


class StorageNotFound(ImageSearchError):
    """The file (or the bucket) is not there. InvalidParameter: the caller named it."""

    code = "InvalidParameter"


class StoragePermissionDenied(ImageSearchError):
    """The server may not read or write there, or has no usable credentials for the location. NoPermission
    (403): the operator grants access, the caller cannot fix it by retrying."""

    code = "NoPermission"


class StorageUnavailable(ImageSearchError):
    """The store cannot be reached or failed (endpoint down, timeout, 5xx, disk error or full). ServiceUnavailable
    (503): a state, worth retrying later."""

    code = "ServiceUnavailable"


class FileTooLarge(InvalidImageSize):
    """A picture over the size limit, refused before it is read whole. InvalidImageSize, as AddImage says."""


def shown(text: str) -> str:
    """User text quoted for a message, cut to SHOWN_CHARS."""
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def megabytes(size: int) -> str:
    return f"{size // 2**20} MB" if size % 2**20 == 0 else f"{size} bytes"


# Errors of one file (a symlink loop, a socket or device, an S3 object the store will not serve as asked).
_THIS_FILE_ONLY = {errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EINVAL, errno.ENOTDIR, errno.EISDIR}


@contextmanager
def guarded(action: str, what: str, where: str, hidden: Iterable[str] = ()) -> Iterator[None]:
    """Turn what reading or writing raises into the typed errors above: "cannot {action} {what} in {where}".

    ``hidden``: strings (the location's credentials) to blank out of any reason quoted from a library.
    """
    try:
        yield
    except ImageSearchError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise StorageNotFound(f"no {what} in {where}") from None
    except PermissionError:
        raise StoragePermissionDenied(f"cannot {action} {what} in {where}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise PathRefused(f"cannot {action} {what} in {where}: the name is too long for the store") from None
        if exc.errno in _THIS_FILE_ONLY:  # the file's own trouble, not the store's: trying later cannot help
            raise StorageNotFound(f"cannot {action} {what} in {where}: {_reason(exc, hidden)}") from None
        raise StorageUnavailable(f"cannot {action} {what} in {where}: {_reason(exc, hidden)}") from None
    except Exception as exc:
        kind = _botocore_kind(exc)
        if kind is None:  # anything else is a bug: let it show as one
            raise
        if kind == "credentials":
            raise StoragePermissionDenied(
                f"cannot {action} {what} in {where}: no usable credentials ({_reason(exc, hidden)})") from None
        raise StorageUnavailable(
            f"cannot {action} {what} in {where}: the store is unreachable ({_reason(exc, hidden)})") from None


def _botocore_kind(exc: Exception) -> str | None:
    """"credentials", "unreachable" or None. botocore is imported only once an S3 call has failed: local
    locations never load it."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from botocore import exceptions as boto

    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError,
                        boto.ProfileNotFound, boto.UnknownCredentialError)):
        return "credentials"
    if isinstance(exc, (boto.ConnectionError, boto.HTTPClientError)):
        return "unreachable"
    return None


def _reason(exc: BaseException, hidden: Iterable[str]) -> str:
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    for secret in hidden:
        if secret:
            reason = reason.replace(secret, "***")
    return reason[:200]
