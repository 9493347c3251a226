"""The README's size limits at their edges, through the production server (`imagesearch serve`): a picture of
at most 4 MB (4 * 1024 * 1024 bytes) and a request body of at most 8 MB (8 * 1024 * 1024 bytes), each
accepted at the limit and refused one byte past it. The numbers are written here, not read from the code."""

from __future__ import annotations

import base64

import pytest
from alibabacloud_imagesearch20201214 import models as sdk
from alibabacloud_imagesearch20201214.client import Client
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.raw_http import exchange, request_bytes

PICTURE_LIMIT = 4 * 1024 * 1024
BODY_LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def client(server, credentials) -> Client:
    # A 4 MB picture is about 5.6 MB of base64: more time to send and encode than the SDK's default allows.
    return Client(utils_models.Config(access_key_id=credentials[0], access_key_secret=credentials[1],
                                      endpoint=server, protocol="http", region_id="cn-shanghai",
                                      connect_timeout=10_000, read_timeout=120_000))


def picture_of(size: int) -> bytes:
    """A BMP of noise padded with trailing bytes (which decoders ignore) to exactly ``size`` bytes."""
    bmp = encode(noise(1180, 1180, seed=11), "BMP")  # 1180 * 1180 * 3 + 54 bytes: just under 4 MB
    assert len(bmp) <= size
    return bmp + b"\0" * (size - len(bmp))


def test_a_picture_of_4_mb_is_stored_and_one_byte_more_is_invalid_image_size(client, service, shop):
    client.add_image(sdk.AddImageRequest(instance_name=shop, product_id="at-limit", pic_name="1.bmp",
                                         pic_content=base64.b64encode(picture_of(PICTURE_LIMIT)).decode()))
    found = client.check_image_exists(sdk.CheckImageExistsRequest(instance_name=shop, product_id="at-limit",
                                                                  pic_name="1.bmp")).body
    assert found.exists is True

    with pytest.raises(ClientException) as refused:
        client.add_image(sdk.AddImageRequest(instance_name=shop, product_id="past-limit", pic_name="1.bmp",
                                             pic_content=base64.b64encode(picture_of(PICTURE_LIMIT + 1)).decode()))
    assert (refused.value.code, refused.value.status_code) == ("InvalidImageSize", 400)
    assert "4 MB" in refused.value.message
    assert service.check_image_exists(shop, "past-limit", "1.bmp") is None
    assert service.describe_instance(shop).picture_count == 1


def body_of(size: int, shop: str) -> bytes:
    """An AddImage form body of exactly ``size`` bytes whose PicContent is valid base64 (no character that
    form encoding changes) of more than 4 MB: read whole, it can only be refused as InvalidImageSize."""
    for pad in range(1, 5):
        head = f"InstanceName={shop}&ProductId={'p' * pad}&PicName=1&PicContent=".encode()
        if (size - len(head)) % 4 == 0:
            return head + b"A" * (size - len(head))
    raise AssertionError("unreachable: four paddings cover every remainder")


def chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[at:at + 1_000_000]), body[at:at + 1_000_000])
                    for at in range(0, len(body), 1_000_000)) + b"0\r\n\r\n"


def test_a_body_of_8_mb_is_read_whole_with_content_length(server, credentials, shop):
    body = body_of(BODY_LIMIT, shop)
    headers = list(signed_request(server, *credentials, body, action="AddImage").items())
    status, answer = exchange(server, request_bytes(headers, body), timeout=120)
    assert (status, answer["Code"]) == (400, "InvalidImageSize"), answer


def test_a_body_of_8_mb_is_read_whole_when_chunked(server, credentials, shop):
    body = body_of(BODY_LIMIT, shop)
    headers = [*signed_request(server, *credentials, body, action="AddImage").items(),
               ("Transfer-Encoding", "chunked")]
    status, answer = exchange(server, request_bytes(headers, length=False) + chunked(body), timeout=120)
    assert (status, answer["Code"]) == (400, "InvalidImageSize"), answer


def test_a_content_length_one_byte_over_8_mb_is_refused_before_the_body_is_sent(server, credentials, shop):
    body = body_of(BODY_LIMIT, shop) + b"A"
    headers = [*signed_request(server, *credentials, body, action="AddImage").items(),
               ("Content-Length", str(BODY_LIMIT + 1))]
    status, answer = exchange(server, request_bytes(headers, length=False))  # the head alone
    assert (status, answer["Code"]) == (413, "InvalidParameter") and "8 MB" in answer["Message"], answer


def test_a_chunked_body_one_byte_over_8_mb_is_refused(server, credentials, shop):
    """The chunks stop at the byte past the limit: the front has read everything sent when it refuses."""
    body = body_of(BODY_LIMIT, shop) + b"A"
    headers = [*signed_request(server, *credentials, body, action="AddImage").items(),
               ("Transfer-Encoding", "chunked")]
    unfinished = request_bytes(headers, length=False) + chunked(body)[:-len(b"\r\n0\r\n\r\n")]
    status, answer = exchange(server, unfinished, timeout=120)
    assert (status, answer["Code"]) == (413, "InvalidParameter") and "8 MB" in answer["Message"], answer
