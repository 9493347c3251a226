"""The RPC signature check's rules, one at a time, on plain values (flask_app/rpc_signature.py): the end to
end tests (tests/test_rpc_signatures.py, the Node.js SDK's) go through the production server; these hold
each rule at its edge, with the server's clock given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from flask_app import rpc_signature
from imagesearch_pg.errors import (
    InvalidAccessKeyId,
    InvalidTimeStamp,
    MissingParameter,
    SignatureDoesNotMatch,
    TimeStampExpired,
)

NOW = datetime(2026, 12, 8, 12, 0, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Credential:
    secret: str


KEYS = {"k1": Credential("s3cret")}


def signed(method: str = "POST", **changes) -> dict[str, str]:
    parameters = {"Action": "Detail", "Version": "2020-12-14", "Format": "json", "InstanceName": "shop",
                  "Timestamp": "2026-12-08T12:00:00Z", "SignatureNonce": "n-1", "SignatureMethod": "HMAC-SHA1",
                  "SignatureVersion": "1.0", "AccessKeyId": "k1", **changes}
    parameters["Signature"] = rpc_signature.sign(KEYS.get(parameters["AccessKeyId"], Credential("x")).secret,
                                                 rpc_signature.string_to_sign(method, parameters))
    return parameters


def verify(parameters, method="POST", path="/", now=NOW):
    return rpc_signature.verify(method, path, parameters, KEYS.get, now=now)


def test_the_documented_example_signs_as_documented():
    """Alibaba Cloud's own example of an RPC signature (ECS DescribeRegions, key testid, secret testsecret)."""
    parameters = {"Timestamp": "2016-02-23T12:46:24Z", "Format": "XML", "AccessKeyId": "testid",
                  "Action": "DescribeRegions", "SignatureMethod": "HMAC-SHA1",
                  "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "Version": "2014-05-26",
                  "SignatureVersion": "1.0"}
    text = rpc_signature.string_to_sign("GET", parameters)
    assert text == ("GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3D"
                    "HMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
                    "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26")
    assert rpc_signature.sign("testsecret", text) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_a_signed_request_is_accepted_with_its_key_and_nonce():
    accepted = verify(signed())
    assert (accepted.key_id, accepted.nonce, accepted.credential) == ("k1", "n-1", KEYS["k1"])
    assert verify(signed("GET"), method="GET").nonce == "n-1"


def test_only_a_signature_parameter_makes_a_request_rpc():
    assert rpc_signature.is_rpc({"Signature": ""}) and not rpc_signature.is_rpc({"signature": "x", "Action": "x"})


@pytest.mark.parametrize("name", ["AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce",
                                  "SignatureVersion", "Timestamp", "Version", "Action"])
def test_each_signature_parameter_is_required(name):
    for missing in ({k: v for k, v in signed().items() if k != name}, {**signed(), name: ""}):
        with pytest.raises(MissingParameter, match=f"^a request signed in the RPC style needs {name}$"):
            verify(missing)


def test_every_missing_parameter_is_named():
    parameters = {k: v for k, v in signed().items() if k not in ("Timestamp", "Version")}
    with pytest.raises(MissingParameter, match="^a request signed in the RPC style needs Timestamp, Version$"):
        verify(parameters)


@pytest.mark.parametrize("change", [
    {"SignatureMethod": "HMAC-SHA256"}, {"SignatureMethod": "hmac-sha1"}, {"SignatureVersion": "1"},
    {"SignatureVersion": "2.0"},
])
def test_only_hmac_sha1_version_1_0(change):
    with pytest.raises(SignatureDoesNotMatch, match="SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0"):
        verify(signed(**change))


@pytest.mark.parametrize("path", ["", "/x", "//", "/%2F"])
def test_the_path_is_slash(path):
    with pytest.raises(SignatureDoesNotMatch, match=f"^a request signed in the RPC style is sent to the path /, "
                                                    f"not {path!r}$"):
        verify(signed(), path=path)


def test_messages_quote_at_most_64_characters_of_what_was_sent():
    with pytest.raises(SignatureDoesNotMatch) as refused:
        verify(signed(), path="/" + "p" * 100)
    assert refused.value.message.endswith(f"not {'/' + 'p' * 63!r}")
    with pytest.raises(InvalidAccessKeyId) as refused:
        verify(signed(AccessKeyId="k" * 100))
    assert refused.value.message == f"AccessKeyId {'k' * 64!r} is not an active key of this server"


@pytest.mark.parametrize("offset,accepted", [(timedelta(minutes=15), True), (-timedelta(minutes=15), True),
                                             (timedelta(minutes=15, seconds=1), False),
                                             (-timedelta(minutes=15, seconds=1), False)])
def test_the_timestamp_is_within_15_minutes_either_way(offset, accepted):
    request = signed()
    if accepted:
        assert verify(request, now=NOW + offset).key_id == "k1"
    else:
        with pytest.raises(TimeStampExpired, match="^Timestamp 2026-12-08T12:00:00Z is more than 15 minutes from "
                                                   "the server's time 2026-12-08T1"):
            verify(request, now=NOW + offset)


def test_the_servers_own_clock_is_read_when_none_is_given():
    now = datetime.now(timezone.utc)
    assert rpc_signature.verify("POST", "/", signed(Timestamp=f"{now:%Y-%m-%dT%H:%M:%SZ}"), KEYS.get).key_id == "k1"
    with pytest.raises(TimeStampExpired):
        rpc_signature.verify("POST", "/", signed(), KEYS.get)  # 2026-12-08T12:00:00Z, long ago or to come


@pytest.mark.parametrize("stamp", ["2026-12-08T12:00:00", "2026-12-08 12:00:00Z", "2026-12-08T12:00:00+00:00",
                                   "1796731200", "2026-12-08T12:00:00.000Z", "yesterday"])
def test_the_timestamp_is_utc_to_the_second(stamp):
    with pytest.raises(InvalidTimeStamp, match="^Timestamp must be the request's UTC time as YYYY-MM-DDThh:mm:ssZ$"):
        verify(signed(Timestamp=stamp))


def test_a_nonce_is_1_to_128_characters():
    assert verify(signed(SignatureNonce="n" * 128)).nonce == "n" * 128
    with pytest.raises(SignatureDoesNotMatch, match="^SignatureNonce must be 1-128 characters$"):
        verify(signed(SignatureNonce="n" * 129))


def test_an_unknown_key_is_refused_before_the_signature_is_computed():
    with pytest.raises(InvalidAccessKeyId, match="'nobody' is not an active key"):
        verify(signed(AccessKeyId="nobody"))


@pytest.mark.parametrize("change", [
    lambda p: {**p, "InstanceName": "other"}, lambda p: {**p, "Extra": ""},
    lambda p: {k: v for k, v in p.items() if k != "Format"}, lambda p: {**p, "Signature": p["Signature"].lower()},
    lambda p: {("instancename" if k == "InstanceName" else k): v for k, v in p.items()},
    lambda p: {**p, "Signature": p["Signature"] + "="},
])
def test_any_change_to_a_signed_parameter_is_refused(change):
    with pytest.raises(SignatureDoesNotMatch, match=r"^the signature does not match the request \(check the "
                                                    r"AccessKeySecret\)$"):
        verify(change(signed()))


def test_the_method_is_signed():
    with pytest.raises(SignatureDoesNotMatch, match="the signature does not match"):
        verify(signed("POST"), method="GET")


def test_another_secret_is_refused():
    request = signed()
    request["Signature"] = rpc_signature.sign("other", rpc_signature.string_to_sign("POST", request))
    with pytest.raises(SignatureDoesNotMatch):
        verify(request)
