"""The signature check's rules (flask_app/signature.py), called in this process: requests signed by the
official SDK's own ACS3-HMAC-SHA256 signer (an implementation independent of ours), checked against the
real key store, with the server's clock given."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from alibabacloud_tea_openapi.utils import Utils as Sdk, get_canonical_query_string

from flask_app import signature
from imagesearch_pg.errors import InvalidAccessKeyId, RequestExpired, SignatureDoesNotMatch

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)  # the server's clock in these tests
BODY = b"InstanceName=shop&ProductId=a&PicName=1"


def sdk_signed(key_id, secret, body=BODY, *, query=None, path="/", method="POST", date=NOW, nonce=None,
               unsigned=(), **changed) -> dict[str, str]:
    """Headers (lower-case names) as the SDK sends them: it signs every header it sends; those named in
    ``unsigned`` are added after signing."""
    headers = {
        "host": "search.example",
        "x-acs-action": "DeleteImage",
        "x-acs-version": "2020-12-14",
        "x-acs-date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex if nonce is None else nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
    }
    headers.update({name.replace("_", "-"): value for name, value in changed.items() if value is not None})
    for name in [name for name, value in changed.items() if value is None]:
        del headers[name.replace("_", "-")]
    request = SimpleNamespace(pathname=path, method=method, query=query or {},
                              headers={name: value for name, value in headers.items() if name not in unsigned})
    authorization = Sdk.get_authorization(request, "ACS3-HMAC-SHA256", hashlib.sha256(body).hexdigest(), key_id,
                                          secret)
    return {**headers, "authorization": authorization}


def query_string(query: dict[str, str]) -> str:
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in query.items())


def verify(keys, headers, body=BODY, *, query=None, path="/", method="POST", now=NOW):
    return signature.verify(method, path, query_string(query or {}), headers, body, keys.credential, now=now)


@pytest.mark.parametrize("body,query,path,extra", [
    (BODY, {}, "/", {}),
    (b"", {}, "/", {}),  # no body: content-type need not be signed (the SDK signs it anyway)
    (BODY, {"ProductId": "a b+c/d~e", "PicName": "日本", "Empty": ""}, "/", {}),
    (BODY, {}, "", {}),  # an empty path is signed as '/'
    (BODY, {}, "/", {"content_type": "  application/x-www-form-urlencoded ", "x_acs_action": "\tDeleteImage "}),
])
def test_a_request_the_sdk_signed_is_accepted(keys, credentials, body, query, path, extra):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, body, query=query, path=path, nonce="n-" + uuid.uuid4().hex, **extra)
    signed = verify(keys, headers, body, query=query, path=path)
    assert (signed.key_id, signed.nonce) == (key_id, headers["x-acs-signature-nonce"])
    assert signed.credential == keys.credential(key_id) and signed.credential.secret == secret


def test_outer_white_space_around_the_checked_values_is_ignored(keys, credentials):
    key_id, secret = credentials
    digest = hashlib.sha256(BODY).hexdigest()
    headers = sdk_signed(key_id, secret, x_acs_content_sha256=f" {digest.upper()} ", nonce=" abc ",
                         x_acs_date=f" {NOW:%Y-%m-%dT%H:%M:%SZ} ")
    headers["authorization"] = f"  {headers['authorization']}\t"
    assert verify(keys, headers).nonce == "abc"


@pytest.mark.parametrize("changed", [
    {"body": b"InstanceName=shop&ProductId=a&PicName=2"},
    {"query": {"ProductId": "b"}},
    {"path": "/other"},
    {"method": "GET"},
])
def test_the_signature_covers_the_method_path_query_and_body(keys, credentials, changed):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret)
    body = changed.get("body", BODY)
    if "body" in changed:  # the body's hash must still be right, or that check refuses it first
        headers["x-acs-content-sha256"] = hashlib.sha256(body).hexdigest()
    mismatch = r"^the signature does not match the request \(check the AccessKeySecret\)$"
    with pytest.raises(SignatureDoesNotMatch, match=mismatch):
        verify(keys, headers, body, query=changed.get("query"), path=changed.get("path", "/"),
               method=changed.get("method", "POST"))


@pytest.mark.parametrize("name", ["host", "x-acs-action", "x-acs-version", "content-type"])
def test_the_signature_covers_each_signed_header(keys, credentials, name):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret)
    headers[name] += "x"
    with pytest.raises(SignatureDoesNotMatch, match="does not match the request"):
        verify(keys, headers)


def test_another_secret_or_an_unknown_key_is_refused(keys, credentials):
    key_id, secret = credentials
    with pytest.raises(SignatureDoesNotMatch, match=r"check the AccessKeySecret"):
        verify(keys, sdk_signed(key_id, secret[:-1] + ("a" if secret[-1] != "a" else "b")))
    unknown = "LTAI" + "x" * 100
    with pytest.raises(InvalidAccessKeyId) as refused:
        verify(keys, sdk_signed(unknown, secret))
    assert repr(unknown[:64]) in refused.value.message and unknown[:65] not in refused.value.message


@pytest.mark.parametrize("left_out", ["host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce",
                                      "x-acs-action", "content-type"])
def test_what_the_signature_must_cover(keys, credentials, left_out):
    key_id, secret = credentials
    cover = f"^the signature must cover the headers {left_out} \\(host, content-type with a body, and every x-acs-"
    with pytest.raises(SignatureDoesNotMatch, match=cover + "\\* header sent\\)$"):
        verify(keys, sdk_signed(key_id, secret, unsigned=(left_out,)))


def test_all_that_is_missing_from_the_signature_is_named_in_order(keys, credentials):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, unsigned=("x-acs-date", "host", "x-acs-version"))
    with pytest.raises(SignatureDoesNotMatch, match="must cover the headers host, x-acs-date, x-acs-version "):
        verify(keys, headers)
    assert signature.required_headers({"x-acs-b": "", "x-acs-a": "", "accept": ""}, b"") == [
        "host", "x-acs-a", "x-acs-b", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce"]
    assert "content-type" in signature.required_headers({}, b"x")


def test_the_body_hash_must_be_the_bodys(keys, credentials):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, x_acs_content_sha256=hashlib.sha256(b"another body").hexdigest())
    with pytest.raises(SignatureDoesNotMatch, match="^x-acs-content-sha256 is not the SHA-256 of the request body$"):
        verify(keys, headers)


@pytest.mark.parametrize("left_out,refusal", [
    ("accept", None),  # read as empty, as the SDK signs an empty header
    ("x-acs-content-sha256", (SignatureDoesNotMatch, "is not the SHA-256 of the request body")),
    ("x-acs-date", (RequestExpired, "must be the request's UTC time")),
    ("x-acs-signature-nonce", (SignatureDoesNotMatch, "must be 1-128 characters")),
])
def test_a_signed_header_that_was_not_sent_reads_as_empty(keys, credentials, left_out, refusal):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, **{left_out.replace("-", "_"): ""})
    del headers[left_out]
    if refusal is None:
        verify(keys, headers)
    else:
        with pytest.raises(refusal[0], match=refusal[1]):
            verify(keys, headers)


@pytest.mark.parametrize("offset,accepted", [
    (timedelta(minutes=15), True), (-timedelta(minutes=15), True),
    (timedelta(minutes=15, seconds=1), False), (-timedelta(minutes=15, seconds=1), False),
])
def test_a_request_may_be_dated_15_minutes_either_side_of_the_servers_clock(keys, credentials, offset, accepted):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, date=NOW + offset)
    if accepted:
        verify(keys, headers)
    else:
        with pytest.raises(RequestExpired, match="is more than 15 minutes from the server's time 2024-05-06T07:08:09Z"):
            verify(keys, headers)


def test_without_a_clock_given_the_servers_own_is_read(keys, credentials):
    key_id, secret = credentials
    verify(keys, sdk_signed(key_id, secret, date=datetime.now(timezone.utc)), now=None)
    with pytest.raises(RequestExpired):
        verify(keys, sdk_signed(key_id, secret), now=None)  # dated NOW, long past


@pytest.mark.parametrize("date", ["", "2024-05-06 07:08:09", "2024-05-06T07:08:09", "06/05/2024 07:08:09Z"])
def test_a_date_in_another_form_is_refused(keys, credentials, date):
    key_id, secret = credentials
    with pytest.raises(RequestExpired, match="^x-acs-date must be the request's UTC time as YYYY-MM-DDThh:mm:ssZ$"):
        verify(keys, sdk_signed(key_id, secret, x_acs_date=date))


@pytest.mark.parametrize("nonce,accepted", [("", False), ("  ", False), ("n", True), ("n" * 128, True),
                                            ("n" * 129, False)])
def test_the_nonce_holds_1_to_128_characters(keys, credentials, nonce, accepted):
    key_id, secret = credentials
    headers = sdk_signed(key_id, secret, nonce=nonce)
    if accepted:
        assert verify(keys, headers).nonce == nonce
    else:
        with pytest.raises(SignatureDoesNotMatch, match="^x-acs-signature-nonce must be 1-128 characters$"):
            verify(keys, headers)


@pytest.mark.parametrize("authorization", [
    None, "", "ACS3-HMAC-SHA256",
    "HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=" + "0" * 64,
    "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=" + "0" * 63,
    "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=" + "A" * 64,
    "ACS3-HMAC-SHA256 SignedHeaders=host,Signature=" + "0" * 64,
])
def test_a_malformed_authorization_is_refused_with_its_form(authorization):
    with pytest.raises(SignatureDoesNotMatch) as refused:
        signature.parse_authorization(authorization)
    assert refused.value.message == ("the Authorization header must be 'ACS3-HMAC-SHA256 Credential=<AccessKeyId>,"
                                     "SignedHeaders=<a;b>,Signature=<64 hex digits>'")


def test_the_authorization_header_is_read_into_key_headers_and_signature():
    digits = "0123456789abcdef" * 4
    spaced = f" ACS3-HMAC-SHA256 Credential=k1,  SignedHeaders=a;;b;,Signature={digits}\n"
    assert signature.parse_authorization(spaced) == ("ACS3-HMAC-SHA256", "k1", ["a", "b"], digits)
    assert signature.parse_authorization(f"ACS3-HMAC-SHA256 Credential=k1,SignedHeaders=,Signature={digits}")[2] == []
    assert signature.parse_authorization(f"ACS3-HMAC-SM3 Credential=k1,SignedHeaders=,Signature={digits}")[0] == (
        "ACS3-HMAC-SM3")


@pytest.mark.parametrize("algorithm", ["ACS3-HMAC-SHA1", "ACS3-RSA-SHA256", "ACS3-HMAC-SHA256X"])
def test_an_algorithm_the_server_does_not_check_is_refused_by_name(algorithm):
    digits = "0123456789abcdef" * 4
    with pytest.raises(SignatureDoesNotMatch, match=f"the signature algorithm '{algorithm}' is not one this server "
                                                    "checks: ACS3-HMAC-SHA256, ACS3-HMAC-SM3"):
        signature.parse_authorization(f"{algorithm} Credential=k1,SignedHeaders=host,Signature={digits}")


def test_the_canonical_query_is_the_sdks():
    query = {"b": "2", "a": "x y+z/~*日é", "c": "", "A": "1"}  # the SDK encodes values only: plain keys
    assert signature.canonical_query(query_string(query)) == get_canonical_query_string(query)
    assert signature.canonical_query("a=2&a=1&b") == "a=1&a=2&b="  # pairs sorted; a blank value kept
    assert signature.canonical_query("") == ""


@pytest.mark.parametrize("repeated,signed_headers,refused", [
    ({"accept"}, "Accept;host", ["accept"]),  # a header the signature covers, named in any case
    ({"x-acs-anything", "content-type", "authorization"}, "host", ["authorization", "content-type", "x-acs-anything"]),
    ({"cookie"}, "host", []),
])
def test_a_repeated_header_is_refused_by_name(repeated, signed_headers, refused):
    authorization = f"ACS3-HMAC-SHA256 Credential=k,SignedHeaders={signed_headers},Signature={'0' * 64}"
    if refused:
        with pytest.raises(SignatureDoesNotMatch) as refusal:
            signature.refuse_repeated(repeated, authorization)
        assert refusal.value.message == (
            f"the request sent {', '.join(refused)} more than once: each header the signature covers, each x-acs-* "
            "header and each of Authorization, Content-Length, Content-Type, Host and Transfer-Encoding must be "
            "sent once")
    else:
        signature.refuse_repeated(repeated, authorization)
    signature.refuse_repeated({"accept"}, None)  # with no Authorization, only the headers that decide the read
    with pytest.raises(SignatureDoesNotMatch):
        signature.refuse_repeated({"accept"}, "garbage SignedHeaders=accept garbage")


def test_repeated_names_are_those_sent_twice_in_any_case():
    names = ["Host", "Accept", "host", "ACCEPT", "X-Acs-Date", "a", "A", "A"]
    assert signature.repeated(names) == {"host", "accept", "a"}
    assert signature.repeated(["host", "date"]) == frozenset()
