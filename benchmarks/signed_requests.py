"""The client's side of request signing, as the official SDKs sign a call to ``/`` in the ACS3 and the RPC
style: for tests and benchmarks that make requests by hand."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

from flask_app import rpc_signature
from flask_app.signature import ALGORITHM, percent_encoded, sign, string_to_sign


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


def rpc_signed(key_id: str, secret: str, action: str, params: dict[str, str], *, method: str = "POST",
               timestamp: datetime | None = None, nonce: str | None = None,
               version: str = "2020-12-14") -> tuple[dict[str, str], dict[str, str]]:
    """(query, form) of a request signed in the RPC style as the Node.js SDK sends it: the common parameters
    and the Signature in the query string, the action's own parameters in the form body."""
    query = {"Action": action, "Format": "json", "Version": version,
             "Timestamp": (timestamp or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "SignatureNonce": nonce or uuid.uuid4().hex, "SignatureMethod": "HMAC-SHA1",
             "SignatureVersion": "1.0", "AccessKeyId": key_id}
    query["Signature"] = rpc_signature.sign(secret, rpc_signature.string_to_sign(method, {**query, **params}))
    return query, dict(params)


def form_encoded(pairs) -> str:
    """Pairs (or a dict) as a query string or form body, every byte but the unreserved ones escaped."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return "&".join(f"{percent_encoded(name)}={percent_encoded(value)}" for name, value in items)
