"""The client's side of request signing, as the official SDK signs a POST to ``/``: for tests and
benchmarks that make requests by hand."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

from flask_app.signature import ALGORITHM, sign, string_to_sign


def signed_headers(host: str, key_id: str, secret: str, body: bytes, *, action: str, query: str = "",
                   date: datetime | None = None, nonce: str | None = None, version: str = "2020-12-14",
                   content_type: str = "application/x-www-form-urlencoded",
                   unsigned: tuple[str, ...] = ()) -> dict[str, str]:
    """The headers to send with ``body``; those named in ``unsigned`` are sent but left out of the signature
    (as a hostile client would)."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": (date or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": content_type,
    }
    names = sorted(name for name in headers if name not in unsigned)
    text = string_to_sign("POST", "/", query, headers, names, headers["x-acs-content-sha256"])
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={key_id},SignedHeaders={';'.join(names)},Signature={sign(secret, text)}"
    )
    return headers
