"""Where a location is: its URL as the operator writes it, normalised for the table, and read back.

Local folders are kept as ``file:///abs/folder`` (percent-encoded), S3 ones as ``s3://bucket[/prefix]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.storage.errors import PathRefused, shown
from imagesearch_pg.storage.paths import folder_segments

ALLOWED_URLS = "file:///absolute/folder, /absolute/folder or s3://bucket[/prefix]"
# S3's bucket naming rules (which MinIO and OSS share): 3-63 lowercase letters, digits, '.' and '-'.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def normalised(url: str) -> str:
    """The URL to store; InvalidParameter saying what is allowed if it is none of ALLOWED_URLS."""
    if not isinstance(url, str) or not url:
        raise InvalidParameter(f"a storage URL is required: {ALLOWED_URLS}")
    if url.startswith("/"):
        return Path(_local_folder(url)).as_uri()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise InvalidParameter(f"a file URL names a folder of this machine: file:///absolute/folder, "
                                   f"got {shown(url)}")
        return Path(_local_folder(unquote(parts.path))).as_uri()
    if scheme == "s3":
        bucket, prefix = _s3_parts(url)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if scheme == "oss":
        raise InvalidParameter("oss:// URLs are not supported: OSS speaks S3, so use s3://bucket[/prefix] with "
                               "--endpoint https://oss-<region>.aliyuncs.com")
    raise InvalidParameter(f"storage URL must be {ALLOWED_URLS}, got {shown(url)}")


def local_root(url: str) -> str:
    """The folder of a stored file:// URL."""
    return unquote(urlsplit(url).path)


def s3_root(url: str) -> str:
    """``bucket[/prefix]`` of a stored s3:// URL, as fsspec names it."""
    return url[len("s3://"):]


def endpoint(url: str | None) -> str | None:
    """An S3 endpoint: http(s)://host[:port], no user or password in it (credentials come from the
    environment)."""
    if url is None:
        return None
    allowed = "an http(s)://host[:port] URL without user, path, query or fragment"
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is not None and "@" in parts.netloc:  # never echoed: what precedes '@' may be a secret
        raise InvalidParameter(f"endpoint must be {allowed}: give credentials through the environment")
    if parts is None or not _plain_http(parts):
        raise InvalidParameter(f"endpoint must be {allowed}, got {shown(str(url))}")
    return f"{parts.scheme}://{parts.netloc}"


def _plain_http(parts: SplitResult) -> bool:
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or over 65535
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok and not parts.query
            and not parts.fragment and parts.path in ("", "/"))


def _local_folder(path: str) -> str:
    if not os.path.isabs(path):
        raise InvalidParameter(f"a local folder must be an absolute path, got {shown(path)}")
    if "\x00" in path:
        raise InvalidParameter("a local folder's path must not contain NUL characters")
    folder = os.path.normpath(path)  # the operator's own choice: '..' in it is just resolved
    if not os.path.isdir(folder):
        raise InvalidParameter(f"no folder {shown(folder)} on this machine: a local location's folder must exist")
    return folder


def _s3_parts(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if "@" in parts.netloc:  # never echoed: what precedes '@' may be a secret
        raise InvalidParameter("an S3 URL must not carry credentials: give them through the environment")
    if parts.query or parts.fragment or ":" in parts.netloc:
        raise InvalidParameter(f"an S3 URL is s3://bucket[/prefix] (the endpoint is given apart), got {shown(url)}")
    if not _BUCKET.fullmatch(parts.netloc):
        raise InvalidParameter(f"S3 bucket must be 3-63 lowercase letters, digits, '.' or '-', got "
                               f"{shown(parts.netloc)}")
    try:
        prefix = folder_segments(parts.path or "/")
    except PathRefused as exc:
        raise InvalidParameter(f"S3 prefix: {exc.message}") from None
    return parts.netloc, "/".join(prefix)
