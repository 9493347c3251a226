"""A location's fsspec filesystem, and the S3 credentials it is built with.

Credentials are never stored: they are read when a location is used, first from the location's own
variables (IMAGESEARCH_STORAGE_<NAME>_ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _SESSION_TOKEN; NAME upper-cased,
every other character '_', so "shop-s3" and "shop_s3" share them), else from the location's profile of
the AWS config files, else from botocore's default chain (AWS_* variables, ~/.aws, instance roles).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
import fsspec

from imagesearch_pg.storage.errors import StoragePermissionDenied

ENV_PREFIX = "IMAGESEARCH_STORAGE_"
# botocore's "standard" retries (with backoff) for throttling and dropped connections; three attempts
# keep a task that meets a down endpoint from waiting long before it says so.
_RETRIES = {"mode": "standard", "max_attempts": 3}


@dataclass(frozen=True)
class S3Credentials:
    key: str
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def variable_names(location_name: str) -> tuple[str, str, str]:
    """The access key id, secret access key and session token variables of a location."""
    stem = ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", location_name.upper()) + "_"
    return stem + "ACCESS_KEY_ID", stem + "SECRET_ACCESS_KEY", stem + "SESSION_TOKEN"


def credentials(location_name: str) -> S3Credentials | None:
    """The location's own credentials, or None when neither key variable is set."""
    names = variable_names(location_name)
    key, secret, token = (os.environ.get(name) or None for name in names)
    if key is None and secret is None:
        return None
    if key is None or secret is None:
        raise StoragePermissionDenied(
            f"storage location {location_name}: set both {names[0]} and {names[1]}, or neither")
    return S3Credentials(key, secret, token)


def hidden(location_name: str) -> tuple[str, ...]:
    """What must never show in a message about the location: its secret and token, when set."""
    _, secret_name, token_name = variable_names(location_name)
    return tuple(value for value in (os.environ.get(secret_name), os.environ.get(token_name)) if value)


def local() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("file")


def s3(location_name: str, endpoint: str | None, region: str | None,
       profile: str | None) -> fsspec.AbstractFileSystem:
    """An S3FileSystem for the location. fsspec keeps one per distinct set of arguments (and thread), so this
    is cheap to call for every use. The location's own variables are arguments: new ones take effect at once.
    A profile's or the AWS defaults' keys are read by botocore when that filesystem first signs, and kept by
    it (refreshable ones, such as an instance role's, are refreshed): a changed file or AWS_* variable is
    certain to apply only after a restart."""
    import s3fs  # with aiobotocore: loaded only where a location is on S3

    found = credentials(location_name)
    options: dict = {
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": region} if region else {},
        "config_kwargs": {"retries": dict(_RETRIES)},
        # Listings are not cached: files appear in a location between tasks.
        "use_listings_cache": False,
    }
    if found is not None:
        options.update(key=found.key, secret=found.secret, token=found.token)
    elif profile:
        options["profile"] = profile
    return s3fs.S3FileSystem(**options)
