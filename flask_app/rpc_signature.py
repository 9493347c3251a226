"""RPC-style request signatures (SignatureVersion 1.0, HMAC-SHA1), checked the way Alibaba Cloud's clients
make them: the Node and Java SDKs configured with `signatureAlgorithm: "v2"`, aliyun-python-sdk-core's
CommonRequest and the `aliyun` command-line tool.

Every parameter, from the query string and the form body alike, is signed, with the method; the path is
always "/":

canonical     = sorted parameters but Signature, as percent-encoded key=value joined by "&"
string to sign = METHOD + "&%2F&" + percent-encoded canonical
Signature     = base64(hmac_sha1(secret + "&", string to sign))

The signed set holds the action (Action), the version (Version), the key (AccessKeyId), the time
(Timestamp) and a nonce (SignatureNonce), so a captured request cannot be sent as another action, later or
twice. Plain values in, no Flask: the API blueprint passes the request's parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from flask_app.signature import SignedRequest, check_time, percent_encoded
from imagesearch_pg.errors import (
    InvalidAccessKeyId,
    InvalidTimeStamp,
    MissingParameter,
    SignatureDoesNotMatch,
    TimeStampExpired,
)

# What a client sends besides the action's parameters; each is required and signed.
SIGNATURE_PARAMETERS = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "SignatureVersion",
                        "Timestamp", "Version", "Action")
METHOD, VERSION = "HMAC-SHA1", "1.0"


def is_rpc(parameters: Mapping[str, str]) -> bool:
    """A request signed in this style carries its Signature among its parameters."""
    return "Signature" in parameters


def string_to_sign(method: str, parameters: Mapping[str, str]) -> str:
    # Sorted by code point, as aliyun-python-sdk-core and Java's TreeMap do (Node sorts UTF-16 code units:
    # the same order unless names mix U+E000-U+FFFF with characters beyond U+FFFF).
    canonical = "&".join(f"{percent_encoded(name)}={percent_encoded(value)}"
                         for name, value in sorted(parameters.items()) if name != "Signature")
    return f"{method}&{percent_encoded('/')}&{percent_encoded(canonical)}"


def sign(secret: str, text: str) -> str:
    digest = hmac.new(f"{secret}&".encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(method: str, path: str, parameters: Mapping[str, str], credential_of,
           now: datetime | None = None) -> SignedRequest:
    """Check a request's signature; ``parameters`` are the query string's and the form body's, each name
    given once (the caller refused the others); ``credential_of(key_id)`` gives the key's credential (with
    its ``secret``) or None. Returns the key id, nonce (the caller records it) and credential, or raises the
    protocol's error."""
    missing = [name for name in SIGNATURE_PARAMETERS if not parameters.get(name)]
    if missing:
        raise MissingParameter(f"a request signed in the RPC style needs {', '.join(missing)}")
    if path != "/":  # the string to sign names "/" whatever the path
        raise SignatureDoesNotMatch(f"a request signed in the RPC style is sent to the path /, not {path[:64]!r}")
    if parameters["SignatureMethod"] != METHOD or parameters["SignatureVersion"] != VERSION:
        raise SignatureDoesNotMatch(f"SignatureMethod must be {METHOD} and SignatureVersion {VERSION}")
    check_time(parameters["Timestamp"], "Timestamp", InvalidTimeStamp, TimeStampExpired, now)
    nonce = parameters["SignatureNonce"]
    if len(nonce) > 128:
        raise SignatureDoesNotMatch("SignatureNonce must be 1-128 characters")
    key_id = parameters["AccessKeyId"]
    credential = credential_of(key_id)
    if credential is None:
        raise InvalidAccessKeyId(f"AccessKeyId {key_id[:64]!r} is not an active key of this server")
    expected = sign(credential.secret, string_to_sign(method, parameters))
    if not hmac.compare_digest(expected.encode("ascii"), parameters["Signature"].encode("utf-8")):
        raise SignatureDoesNotMatch("the signature does not match the request (check the AccessKeySecret)")
    return SignedRequest(key_id, nonce, credential)
