"""ACS3 request signatures (ACS3-HMAC-SHA256, and ACS3-HMAC-SM3 where OpenSSL has SM3), checked the way
Alibaba Cloud's SDKs make them, and what every signature style shares (the date window, the nonce, headers
sent once); flask_app/rpc_signature.py checks the RPC style.

canonical request = METHOD \\n PATH \\n CANONICAL_QUERY \\n CANONICAL_HEADERS \\n SIGNED_HEADERS \\n HASHED_PAYLOAD
string to sign    = ALGORITHM + "\\n" + hex(hash(canonical request))
signature         = hex(hmac_hash(secret, string to sign))

with hash SHA-256 or SM3 as the algorithm names (the payload's hash too, sent as x-acs-content-sha256 either
way). Plain values in, no Flask: the API blueprint passes the request's parts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote

from imagesearch_pg.errors import InvalidAccessKeyId, RequestExpired, SignatureDoesNotMatch

ALGORITHM = "ACS3-HMAC-SHA256"
# Each ACS3 algorithm by its hash function, offered where this Python's OpenSSL has it (SM3: OpenSSL 1.1.1+,
# unless a build leaves it out).
ALGORITHMS = {name: digest for name, digest in ((ALGORITHM, "sha256"), ("ACS3-HMAC-SM3", "sm3"))
              if digest in hashlib.algorithms_available}
_HASH_NAMES = {ALGORITHM: "SHA-256", "ACS3-HMAC-SM3": "SM3 hash"}
# A request's x-acs-date may differ from the server's clock by this much either way; nonces are kept as
# long, so a replay is refused either for its nonce or for its date.
DATE_WINDOW = timedelta(minutes=15)
# Headers a signature must cover besides every x-acs-* header sent (the action and version among them) and,
# with a body, content-type (it decides how the body is read): without them a captured request could be
# sent again as another action, to another host, with a fresh nonce or date, or with another body.
REQUIRED_SIGNED = ("host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")
# Headers that decide how a request is read (its framing, its body's type, its key): like every header the
# signature covers and every x-acs-* header, each must be sent once. A server joins a repeated header's
# values or keeps one of them (WSGI has no way to pass both), so a signature would cover one reading while a
# proxy, or another part of the server, acts on another.
SENT_ONCE = ("authorization", "content-length", "content-type", "host", "transfer-encoding")
# The WSGI environ key under which this project's servers (flask_app/front.py, flask_app/server.py's
# RequestHandler) give the names of the headers a request sent more than once: what WSGI hides.
REPEATED_HEADERS = "imagesearch.repeated_headers"

_AUTHORIZATION = re.compile(
    r"^(?P<algorithm>ACS3-[A-Z0-9-]+) Credential=(?P<key>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]*),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_SIGNED_HEADERS = re.compile(r"SignedHeaders=(?P<headers>[^,\s]*)")


@dataclass(frozen=True)
class SignedRequest:
    key_id: str
    nonce: str
    credential: object  # what ``credential_of`` gave for the key


def parse_authorization(header: str | None) -> tuple[str, str, list[str], str]:
    """(algorithm, key id, signed header names, signature)."""
    match = _AUTHORIZATION.match((header or "").strip())
    if match is None:
        raise SignatureDoesNotMatch(
            f"the Authorization header must be '{ALGORITHM} Credential=<AccessKeyId>,SignedHeaders=<a;b>,"
            "Signature=<64 hex digits>'"
        )
    if match["algorithm"] not in ALGORITHMS:
        raise SignatureDoesNotMatch(f"the signature algorithm {match['algorithm'][:32]!r} is not one this server "
                                    f"checks: {', '.join(ALGORITHMS)}")
    return match["algorithm"], match["key"], [h for h in match["headers"].split(";") if h], match["signature"]


def repeated(names: Iterable[str]) -> frozenset[str]:
    """The header names (lower-cased) that occur more than once in ``names``, a request's headers in order."""
    counts = Counter(name.lower() for name in names)
    return frozenset(name for name, count in counts.items() if count > 1)


def refuse_repeated(repeated_names: Collection[str], authorization: str | None) -> None:
    """Refuse a request that sent more than once a header of SENT_ONCE, an x-acs-* header, or a header its
    Authorization names in SignedHeaders (read even where the rest of it does not parse)."""
    listed = _SIGNED_HEADERS.search(authorization or "")
    signed = set(listed["headers"].lower().split(";")) if listed else set()
    twice = sorted(name for name in repeated_names if name in SENT_ONCE or name.startswith("x-acs-") or name in signed)
    if twice:
        raise SignatureDoesNotMatch(
            f"the request sent {', '.join(twice)} more than once: each header the signature covers, each x-acs-* "
            "header and each of Authorization, Content-Length, Content-Type, Host and Transfer-Encoding must be "
            "sent once"
        )


def canonical_query(query_string: str) -> str:
    """Keys and values percent-encoded (RFC 3986 unreserved characters kept), sorted: 'a%3D%26b=1' and
    'a=&b=1' sign differently."""
    pairs = sorted(parse_qsl(query_string, keep_blank_values=True))
    return "&".join(f"{percent_encoded(key)}={percent_encoded(value)}" for key, value in pairs)


def percent_encoded(text: str) -> str:
    """UTF-8, every byte but RFC 3986's unreserved characters (letters, digits, - . _ ~) as %XX: both styles'
    canonical form (a space is %20, '*' is %2A)."""
    return quote(text, safe="~", encoding="utf-8")


def required_headers(headers: dict[str, str], body: bytes) -> list[str]:
    required = {*REQUIRED_SIGNED, *(name for name in headers if name.startswith("x-acs-"))}
    if body:
        required.add("content-type")
    return sorted(required)


def string_to_sign(method: str, path: str, query_string: str, headers: dict[str, str], signed: list[str],
                   payload_hash: str, algorithm: str = ALGORITHM) -> str:
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical = "\n".join([method, path or "/", canonical_query(query_string), canonical_headers, ";".join(signed),
                           payload_hash])
    return f"{algorithm}\n{hashlib.new(ALGORITHMS[algorithm], canonical.encode('utf-8')).hexdigest()}"


def sign(secret: str, text: str, algorithm: str = ALGORITHM) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), ALGORITHMS[algorithm]).hexdigest()


def check_time(text: str, name: str, malformed: type[Exception], expired: type[Exception],
               now: datetime | None = None) -> None:
    """A request's time (``text``, its field ``name``), in either style: a UTC time to the second within
    DATE_WINDOW of ``now`` (the server's clock), else the style's ``malformed`` or ``expired`` error."""
    try:
        stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise malformed(f"{name} must be the request's UTC time as YYYY-MM-DDThh:mm:ssZ") from None
    now = now or datetime.now(timezone.utc)
    if abs(now - stamp) > DATE_WINDOW:
        raise expired(
            f"{name} {stamp:%Y-%m-%dT%H:%M:%SZ} is more than {int(DATE_WINDOW.total_seconds() // 60)} minutes "
            f"from the server's time {now:%Y-%m-%dT%H:%M:%SZ}"
        )


def verify(method: str, path: str, query_string: str, headers: dict[str, str], body: bytes, credential_of,
           now: datetime | None = None) -> SignedRequest:
    """Check a request's signature; ``headers`` with lower-cased names, each sent once (refuse_repeated has
    refused the others); ``credential_of(key_id)`` gives the key's credential (with its ``secret``) or None.
    Returns the key id, nonce (the caller records it) and credential, or raises the protocol's error."""
    algorithm, key_id, signed, signature = parse_authorization(headers.get("authorization"))
    missing = [name for name in required_headers(headers, body) if name not in signed]
    if missing:
        raise SignatureDoesNotMatch(
            f"the signature must cover the headers {', '.join(missing)} (host, content-type with a body, and "
            "every x-acs-* header sent)"
        )
    payload_hash = hashlib.new(ALGORITHMS[algorithm], body).hexdigest()
    if headers.get("x-acs-content-sha256", "").strip().lower() != payload_hash:
        raise SignatureDoesNotMatch(f"x-acs-content-sha256 is not the {_HASH_NAMES[algorithm]} of the request body")
    check_time(headers.get("x-acs-date", "").strip(), "x-acs-date", RequestExpired, RequestExpired, now)
    nonce = headers.get("x-acs-signature-nonce", "").strip()
    if not 1 <= len(nonce) <= 128:
        raise SignatureDoesNotMatch("x-acs-signature-nonce must be 1-128 characters")
    credential = credential_of(key_id)
    if credential is None:
        raise InvalidAccessKeyId(f"AccessKeyId {key_id[:64]!r} is not an active key of this server")
    expected = sign(credential.secret, string_to_sign(method, path, query_string, headers, signed, payload_hash,
                                                      algorithm), algorithm)
    if not hmac.compare_digest(expected, signature):
        raise SignatureDoesNotMatch("the signature does not match the request (check the AccessKeySecret)")
    return SignedRequest(key_id, nonce, credential)

