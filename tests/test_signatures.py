"""What a signature must cover, tried as a hostile client with a valid key would: each case is a request
that a correct signature check refuses, and after which the pictures are as they were."""

from __future__ import annotations

import http.client
import json

import pytest

from flask_app import signature
from imagesearch_pg.errors import SignatureDoesNotMatch
from tests.http_requests import post, signed_request
from tests.pictures import encode, noise


@pytest.fixture
def stocked(service, shop):
    """An instance with pictures a-1, a-2 of product a and b-1 of product b."""
    for product, pic in (("a", "1"), ("a", "2"), ("b", "1")):
        service.add_image(shop, product, pic, encode(noise(120, 120, seed=hash((product, pic)) % 1000)))
    return shop


def pictures_of(service, name) -> int:
    return service.describe_instance(name).picture_count


def test_the_action_must_be_signed(server, credentials, service, stocked):
    body = f"InstanceName={stocked}&ProductId=a&PicName=1".encode()
    headers = signed_request(server, *credentials, body, action="CheckImageExists", unsigned=("x-acs-action",))
    headers["x-acs-action"] = "DeleteImage"
    status, answer = post(server, headers, body)
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch") and "x-acs-action" in answer["Message"]
    assert pictures_of(service, stocked) == 3


@pytest.mark.parametrize("left_out", ["host", "content-type", "x-acs-version", "x-acs-action"])
def test_host_content_type_and_every_acs_header_must_be_signed(server, credentials, stocked, left_out):
    body = f"InstanceName={stocked}".encode()
    status, answer = post(server, signed_request(server, *credentials, body, unsigned=(left_out,)), body)
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch") and left_out in answer["Message"]


def test_an_extra_unsigned_acs_header_is_refused(server, credentials, stocked):
    body = f"InstanceName={stocked}".encode()
    headers = {**signed_request(server, *credentials, body), "x-acs-security-token": "anything"}
    assert post(server, headers, body)[1]["Code"] == "SignatureDoesNotMatch"


def test_only_version_2020_12_14_is_served(server, credentials, stocked):
    body = f"InstanceName={stocked}".encode()
    status, answer = post(server, signed_request(server, *credentials, body, version="2017-01-01"), body)
    assert (status, answer["Code"]) == (400, "InvalidVersion") and "2020-12-14" in answer["Message"]


def test_query_keys_are_percent_encoded_in_the_canonical_form(server, credentials, service, stocked):
    # Signed to delete picture 1 of product a; sent with a key that decodes to "IsDeleteByFilter=&PicName".
    body = f"InstanceName={stocked}".encode()
    signed_query = "IsDeleteByFilter=&PicName=1&ProductId=a"
    headers = signed_request(server, *credentials, body, action="DeleteImage", query=signed_query)
    status, answer = post(server, headers, body, query="IsDeleteByFilter%3D%26PicName=1&ProductId=a")
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch")
    assert pictures_of(service, stocked) == 3
    assert signature.canonical_query("a%3D%26b=1") != signature.canonical_query("a=&b=1")
    assert signature.canonical_query("b=2&a=%E6%97%A5") == "a=%E6%97%A5&b=2"


def test_a_signed_header_sent_twice_is_refused(server, credentials, service, stocked):
    body = f"InstanceName={stocked}&ProductId=a&PicName=1".encode()
    headers = signed_request(server, *credentials, body, action="CheckImageExists")
    host, port = server.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("x-acs-action", "DeleteImage")  # a second value after the signed one
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert (response.status, answer["Code"]) == (403, "SignatureDoesNotMatch")
    assert "x-acs-action" in answer["Message"] and "more than once" in answer["Message"]
    assert pictures_of(service, stocked) == 3


@pytest.mark.parametrize("repeated,signed_headers,refused", [
    ({"accept"}, "accept;host;x-acs-action", True),  # any header the signature covers
    ({"x-acs-anything"}, "host", True),  # any x-acs-* header, signed or not
    ({"content-type"}, "host", True), ({"content-length"}, "host", True), ({"transfer-encoding"}, "host", True),
    ({"host"}, "", True), ({"authorization"}, "host", True),
    ({"accept", "cookie", "x-forwarded-for"}, "host;x-acs-action", False),  # neither signed nor deciding the read
])
def test_which_headers_must_be_sent_once(repeated, signed_headers, refused):
    authorization = f"ACS3-HMAC-SHA256 Credential=k,SignedHeaders={signed_headers},Signature={'0' * 64}"
    if refused:
        with pytest.raises(SignatureDoesNotMatch, match="more than once"):
            signature.refuse_repeated(repeated, authorization)
    else:
        signature.refuse_repeated(repeated, authorization)
    assert signature.repeated(["Host", "Accept", "host", "ACCEPT", "X-Acs-Date"]) == {"host", "accept"}


def test_a_server_that_does_not_report_repeated_headers_cannot_serve_signed_requests(settings, service, credentials,
                                                                                     stocked):
    from flask_app import create_app

    body = f"InstanceName={stocked}&ProductId=a".encode()
    client = create_app({"SETTINGS": settings, "SERVICE": service}).test_client()  # Werkzeug's test environ
    headers = signed_request("localhost", *credentials, body, action="DeleteImage")
    answer = client.post("/", data=body, headers=headers)
    assert (answer.status_code, answer.get_json()["Code"]) == (503, "ServiceUnavailable")
    assert "repeated headers" in answer.get_json()["Message"] and pictures_of(service, stocked) == 3


def test_a_parameter_given_twice_is_refused(server, credentials, service, stocked):
    body = f"InstanceName={stocked}&ProductId=a&ProductId=b".encode()
    status, answer = post(server, signed_request(server, *credentials, body, action="DeleteImage"), body)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "ProductId" in answer["Message"]
    body = f"InstanceName={stocked}&PicName=1".encode()
    headers = signed_request(server, *credentials, body, action="DeleteImage", query="ProductId=a")
    assert post(server, headers, body, query="ProductId=a")[0] == 200  # query and body together: fine
    assert pictures_of(service, stocked) == 2


def test_an_empty_instance_name_is_missing_not_forbidden(server, keys, stocked):
    limited = keys.create([stocked])
    body = b"InstanceName="
    status, answer = post(server, signed_request(server, *limited, body), body)
    assert (status, answer["Code"]) == (400, "MissingParameter") and "InstanceName" in answer["Message"]


def test_delete_by_filter_takes_no_product_id(server, credentials, service, stocked):
    body = f"InstanceName={stocked}&IsDeleteByFilter=true&Filter=int_attr%3E0&ProductId=a".encode()
    status, answer = post(server, signed_request(server, *credentials, body, action="DeleteImage"), body)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "ProductId" in answer["Message"]
    assert pictures_of(service, stocked) == 3


@pytest.mark.parametrize("field,value", [("Num", "١٠"), ("Num", " 5"), ("Num", "1_0"), ("Start", "٠"),
                                         ("ScoreThreshold", "nan"), ("ScoreThreshold", "٠.٥")])
def test_numbers_are_ascii_digits(server, credentials, stocked, field, value):
    from urllib.parse import quote

    body = f"InstanceName={stocked}&Filter=int_attr%3E0&{field}={quote(value)}".encode()
    action = "SearchImageByFilter" if field in ("Num", "Start") else "SearchImageByName"
    if action == "SearchImageByName":
        body += b"&ProductId=a&PicName=1"
    status, answer = post(server, signed_request(server, *credentials, body, action=action), body)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and field in answer["Message"]


def test_the_action_named_twice_differently_is_refused(server, credentials, service, stocked):
    """x-acs-action and the Action query parameter, both signed: a proxy reading one must not see another
    action than the one done."""
    body = f"InstanceName={stocked}&ProductId=a&PicName=1".encode()
    query = "Action=DeleteImage"
    headers = signed_request(server, *credentials, body, action="CheckImageExists", query=query)
    status, answer = post(server, headers, body, query=query)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "named twice" in answer["Message"]
    assert pictures_of(service, stocked) == 3
    same = "Action=CheckImageExists"  # the same action both ways is one action
    headers = signed_request(server, *credentials, body, action="CheckImageExists", query=same)
    assert post(server, headers, body, query=same)[0] == 200


def test_a_form_body_in_another_charset_is_refused(server, credentials, stocked):
    body = f"InstanceName={stocked}".encode()
    headers = signed_request(server, *credentials, body,
                             content_type="application/x-www-form-urlencoded; charset=utf-16")
    status, answer = post(server, headers, body)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "UTF-8" in answer["Message"]
    headers = signed_request(server, *credentials, body, content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert post(server, headers, body)[0] == 200


def test_a_body_the_server_cannot_read_whole_is_a_bad_request_not_a_server_error(server, credentials, stocked,
                                                                                 server_logs):
    """Chunks cut short by the client: 400 in the protocol's shape, not a 500 with a traceback."""
    import socket

    from tests.raw_http import request_bytes

    body = f"InstanceName={stocked}".encode()
    headers = [*signed_request(server, *credentials, body).items(), ("Transfer-Encoding", "chunked")]
    host, port = server.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request_bytes(headers, b"5\r\nInsta\r\n", length=False))
        sock.shutdown(socket.SHUT_WR)  # the rest never comes
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, answered = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and json.loads(answered)["Code"] == "InvalidParameter", answer[:300]
    assert "Traceback" not in server_logs()[1]
