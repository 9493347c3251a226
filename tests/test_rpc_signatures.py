"""The RPC signature style (SignatureVersion 1.0, HMAC-SHA1: aliyun-python-sdk-core's CommonRequest, the
aliyun CLI, SDKs configured with signatureAlgorithm "v2") beside ACS3, under the same rules: every
parameter covered, a nonce used once (in the same durable table as ACS3's), a Timestamp within 15 minutes,
keys and their instances, errors as the protocol's JSON. Against the production server."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone

import pytest
import requests
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.signed_requests import form_encoded, rpc_signed
from flask_app import rpc_signature
from tests.http_requests import signed_request
from tests.pictures import encode, noise

PICTURE = encode(noise(150, 150, seed=11))


def call(server, credentials, action: str, params: dict, *, method="POST", query_extra=(), form_extra=(),
         headers=None, **signing) -> requests.Response:
    """A request signed in the RPC style as the Node.js SDK sends it, then changed by ``*_extra`` (pairs
    added after signing) as a hostile client would."""
    query, form = rpc_signed(*credentials, action, params, method=method, **signing)
    return requests.request(method, f"http://{server}/?{form_encoded([*query.items(), *query_extra])}",
                            data=form_encoded([*form.items(), *form_extra]),
                            headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
                            timeout=30)


def refused(response: requests.Response) -> tuple[int, str]:
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["RequestId"] and answer.get("Message"), answer
    return response.status_code, answer["Code"]


# The string to sign of aliyun-python-sdk-core, an implementation apart from the server's.
_core_string_to_sign = getattr(rpc_signature_composer, "__compose_string_to_sign")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), min_size=1, max_size=8),
       st.sampled_from(["GET", "POST"]))
def test_the_string_to_sign_is_the_sdks(parameters, method):
    parameters.pop("Signature", None)
    assert rpc_signature.string_to_sign(method, parameters) == _core_string_to_sign(method, parameters)


def test_a_signed_call_is_answered_by_post_and_by_get(server, credentials, shop):
    for method in ("POST", "GET"):
        answer = call(server, credentials, "Detail", {"InstanceName": shop}, method=method)
        assert answer.status_code == 200 and answer.json()["Instance"]["Name"] == shop, answer.text


def test_aliyun_python_sdk_cores_common_request(server, credentials, shop):
    host, port = server.split(":")
    client = AcsClient(*credentials, "cn-shanghai", port=int(port), auto_retry=False)

    def common(action: str, method: str, **body) -> dict:
        request = CommonRequest(domain=host, version="2020-12-14", action_name=action)
        request.set_protocol_type("http")
        request.set_method(method)
        request.add_query_param("InstanceName", shop)
        for name, value in body.items():
            request.add_body_params(name, value)
        return json.loads(client.do_action_with_exception(request))

    assert common("Detail", "GET")["Instance"]["Name"] == shop
    added = common("AddImage", "POST", ProductId="core", PicName="1.png", PicContent=base64.b64encode(PICTURE).decode(),
                   StrAttr="a b+c*~")
    assert added["Success"] is True
    found = common("SearchImageByName", "POST", ProductId="core", PicName="1.png")
    assert found["Auctions"][0]["StrAttr"] == "a b+c*~"
    with pytest.raises(ServerException) as error:
        common("SearchImageByName", "POST", ProductId="core", PicName="none.png")
    assert (error.value.get_http_status(), error.value.get_error_code()) == (404, "NoSpecifiedSearchPic")


def test_a_nonce_is_used_once_across_both_styles(server, credentials, shop):
    nonce = f"rpc-{os.getpid()}-{datetime.now(timezone.utc).timestamp()}"
    assert call(server, credentials, "Detail", {"InstanceName": shop}, nonce=nonce).status_code == 200
    assert refused(call(server, credentials, "Detail", {"InstanceName": shop}, nonce=nonce)) == (
        403, "SignatureNonceUsed")
    body = form_encoded({"InstanceName": shop}).encode()
    headers = signed_request(server, *credentials, body, nonce=nonce)
    answer = requests.post(f"http://{server}/", data=body, headers=headers, timeout=30)
    assert refused(answer) == (403, "SignatureNonceUsed")  # the same table for both styles


@pytest.mark.parametrize("minutes,expected", [(14, 200), (-14, 200), (16, 400), (-16, 400)])
def test_the_timestamp_is_within_15_minutes(server, credentials, shop, minutes, expected):
    stamp = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    answer = call(server, credentials, "Detail", {"InstanceName": shop}, timestamp=stamp)
    assert answer.status_code == expected
    if expected == 400:
        assert refused(answer) == (400, "InvalidTimeStamp.Expired")


def test_keys_and_their_instances(server, credentials, keys, shop, make_instance):
    other = make_instance("generic").name
    limited = keys.create(instances=[other])
    assert refused(call(server, limited, "Detail", {"InstanceName": shop})) == (403, "NoPermission")
    assert call(server, limited, "Detail", {"InstanceName": other}).status_code == 200
    assert refused(call(server, (limited[0], "wrong-secret"), "Detail", {"InstanceName": other})) == (
        403, "SignatureDoesNotMatch")
    assert refused(call(server, ("LTAInoSuchKey", "x"), "Detail", {"InstanceName": other})) == (
        403, "InvalidAccessKeyId")


def _changed_query(server, credentials, shop, change):
    query, form = rpc_signed(*credentials, "UpdateImage", {"InstanceName": shop, "ProductId": "p", "PicName": "1.png",
                                                           "IntAttr": "5"})
    query, form, headers = change(dict(query), dict(form), {})
    return requests.post(f"http://{server}/?{form_encoded(query)}", data=form_encoded(form),
                         headers={"content-type": "application/x-www-form-urlencoded", **headers}, timeout=30)


# Each: a change to a signed call, and the refusal it gets.
CHANGES = {
    "value-changed": (lambda q, f, h: (q, {**f, "IntAttr": "6"}, h), (403, "SignatureDoesNotMatch")),
    "parameter-added": (lambda q, f, h: (q, {**f, "StrAttr": "x"}, h), (403, "SignatureDoesNotMatch")),
    "parameter-removed": (lambda q, f, h: (q, {k: v for k, v in f.items() if k != "IntAttr"}, h),
                          (403, "SignatureDoesNotMatch")),
    "name-recased": (lambda q, f, h: (q, {("intattr" if k == "IntAttr" else k): v for k, v in f.items()}, h),
                     (403, "SignatureDoesNotMatch")),
    "signature-changed": (lambda q, f, h: ({**q, "Signature": "A" + q["Signature"][1:]}, f, h),
                          (403, "SignatureDoesNotMatch")),
    "timestamp-changed": (lambda q, f, h: ({**q, "Timestamp": q["Timestamp"][:-2] + "9Z"}, f, h),
                          (403, "SignatureDoesNotMatch")),
    "timestamp-malformed": (lambda q, f, h: ({**q, "Timestamp": "yesterday"}, f, h), (400, "InvalidTimeStamp.Format")),
    "nonce-missing": (lambda q, f, h: ({k: v for k, v in q.items() if k != "SignatureNonce"}, f, h),
                      (400, "MissingParameter")),
    "method-sha256": (lambda q, f, h: ({**q, "SignatureMethod": "HMAC-SHA256"}, f, h), (403, "SignatureDoesNotMatch")),
    "action-in-the-form": (lambda q, f, h: ({k: v for k, v in q.items() if k != "Action"}, {**f, "Action": q["Action"]},
                                            h), (400, "MissingParameter")),
    "other-action-header": (lambda q, f, h: (q, f, {"x-acs-action": "DeleteImage"}), (400, "InvalidParameter")),
    "also-authorization": (lambda q, f, h: (q, f, {"Authorization": "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,"
                                                   "Signature=" + "0" * 64}), (403, "SignatureDoesNotMatch")),
    "other-version": (lambda q, f, h: (q, f, {"x-acs-version": "2019-03-25"}), (400, "InvalidVersion")),
}


@pytest.mark.parametrize("change", CHANGES, ids=str)
def test_a_changed_call_is_refused_and_changes_nothing(server, credentials, service, shop, change):
    service.add_image(shop, "p", "1.png", PICTURE, crop=False)
    edit, expected = CHANGES[change]
    assert refused(_changed_query(server, credentials, shop, edit)) == expected
    assert service.check_image_exists(shop, "p", "1.png").attributes.int_attr is None


def test_a_parameter_given_twice_is_refused(server, credentials, service, shop):
    service.add_image(shop, "p", "1.png", PICTURE, crop=False)
    params = {"InstanceName": shop, "ProductId": "p", "PicName": "1.png", "IntAttr": "5"}
    for extra in ({"query_extra": [("IntAttr", "5")]}, {"form_extra": [("IntAttr", "6")]},
                  {"query_extra": [("SignatureNonce", "again")]}):
        assert refused(call(server, credentials, "UpdateImage", params, **extra)) == (400, "InvalidParameter"), extra
    assert service.check_image_exists(shop, "p", "1.png").attributes.int_attr is None


def test_format_other_than_json_is_refused_and_a_path_is_signed(server, credentials, shop):
    query, form = rpc_signed(*credentials, "Detail", {"InstanceName": shop, "Format": "XML"})
    query.pop("Format")
    answer = requests.post(f"http://{server}/?{form_encoded(query)}", data=form_encoded(form),
                           headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert refused(answer) == (400, "InvalidParameter") and "JSON" in answer.json()["Message"]
    query, form = rpc_signed(*credentials, "Detail", {"InstanceName": shop})
    answer = requests.post(f"http://{server}/%2F?{form_encoded(query)}", data=form_encoded(form),
                           headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert refused(answer) == (403, "SignatureDoesNotMatch")


def test_calls_of_both_styles_share_the_instances_throttle(server, credentials, engine, service, make_instance):
    """The QPS plan counts a call however it was signed: two ACS3 searches and one RPC search fill a plan
    of 3 a second, and the next of either style is Throttling."""
    from tests.rate_windows import call as acs3_call
    from tests.rate_windows import in_one_second

    name = make_instance("generic", qps=3).name
    service.add_image(name, "p", "1.png", PICTURE, crop=False)

    def rpc_call() -> str:
        answer = call(server, credentials, "CheckImageExists", {"InstanceName": name, "ProductId": "p",
                                                                "PicName": "1.png"})
        return "OK" if answer.status_code == 200 else f"{answer.status_code} {answer.json()['Code']}"

    def burst():
        acs3 = lambda: acs3_call(server, credentials, "CheckImageExists", name, ProductId="p", PicName="1.png")
        return [acs3(), rpc_call(), acs3(), rpc_call(), acs3()]

    assert in_one_second(engine, burst) == ["OK"] * 3 + ["429 Throttling"] * 2
