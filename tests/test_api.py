"""The HTTP protocol driven by Alibaba Cloud's official SDK against a live server on a free port, and the
signature checks with hand-made requests (tampered, replayed, stale, foreign key)."""

from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from alibabacloud_imagesearch20201214 import models as sdk
from alibabacloud_imagesearch20201214.client import Client
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

from flask_app import create_app, signature
from tests.http_requests import post, signed_request
from tests.pictures import encode, noise, sample_photos

PHOTOS = sample_photos()


def sdk_client(endpoint: str, key_id: str, secret: str) -> Client:
    config = utils_models.Config(
        access_key_id=key_id, access_key_secret=secret, endpoint=endpoint, protocol="http", region_id="cn-shanghai"
    )
    return Client(config)


@pytest.fixture(scope="module")
def client(server, credentials) -> Client:
    return sdk_client(server, *credentials)


def b64(picture: bytes) -> str:
    return base64.b64encode(picture).decode()


def code_of(call) -> str:
    with pytest.raises((ClientException, ServerException)) as raised:  # the SDK's 4xx and 5xx
        call()
    return raised.value.code


def test_every_picture_action_through_the_sdk(client, shop):
    coffee, cat = b64(encode(PHOTOS["coffee"])), b64(encode(PHOTOS["chelsea"]))
    added = client.add_image(sdk.AddImageRequest(
        instance_name=shop, product_id="mug", pic_name="1.png", pic_content=coffee, int_attr=3, str_attr="red",
        custom_content="a mug",
    )).body
    assert added.success and added.pic_info.category_id == 88888888 and added.pic_info.region
    client.add_image(sdk.AddImageRequest(instance_name=shop, product_id="cat", pic_name="1.png", pic_content=cat,
                                         int_attr=9, crop=False))

    found = client.search_image_by_pic(sdk.SearchImageByPicRequest(instance_name=shop, pic_content=coffee, num=2)).body
    assert found.auctions[0].product_id == "mug" and found.auctions[0].score > 0.99
    assert (found.head.docs_found, found.head.docs_return) == (2, 2) and found.pic_info.region
    assert found.auctions[0].int_attr == 3 and found.auctions[0].custom_content == "a mug"

    by_name = client.search_image_by_name(sdk.SearchImageByNameRequest(
        instance_name=shop, product_id="cat", pic_name="1.png", filter="int_attr>5", score_threshold=0.5,
        distinct_product_id=True,
    )).body
    assert [a.product_id for a in by_name.auctions] == ["cat"]

    listed = client.search_image_by_filter(sdk.SearchImageByFilterRequest(instance_name=shop, filter="int_attr>=0")).body
    assert [a.product_id for a in listed.auctions] == ["cat", "mug"]

    exists = client.check_image_exists(sdk.CheckImageExistsRequest(instance_name=shop, product_id="mug", pic_name="1.png")).body
    assert exists.exists is True and exists.auctions.str_attr == "red"
    absent = client.check_image_exists(sdk.CheckImageExistsRequest(instance_name=shop, product_id="mug", pic_name="2.png")).body
    assert absent.exists is False

    client.update_image(sdk.UpdateImageRequest(instance_name=shop, product_id="mug", pic_name="1.png", str_attr="blue"))
    exists = client.check_image_exists(sdk.CheckImageExistsRequest(instance_name=shop, product_id="mug", pic_name="1.png")).body
    assert exists.auctions.str_attr == "blue" and exists.auctions.int_attr == 3

    score = client.compare_similar_by_image(sdk.CompareSimilarByImageRequest(
        instance_name=shop, primary_pic_content=coffee, secondary_pic_content=cat)).body.score
    assert 0.0 <= score < 0.6

    detail = client.detail(sdk.DetailRequest(instance_name=shop)).body.instance
    assert (detail.name, detail.service_type, detail.total_count) == (shop, 1, 2)  # generic's code

    deleted = client.delete_image(sdk.DeleteImageRequest(instance_name=shop, is_delete_by_filter=True, filter="int_attr=9"))
    assert deleted.body.data.pic_names == ["1.png"]
    deleted = client.delete_image(sdk.DeleteImageRequest(instance_name=shop, product_id="mug"))
    assert deleted.body.data.pic_names == ["1.png"]
    assert client.detail(sdk.DetailRequest(instance_name=shop)).body.instance.total_count == 0


def test_errors_arrive_as_sdk_exceptions_with_the_protocols_codes(client, shop, make_instance):
    good = b64(encode(noise(160, 160)))
    assert code_of(lambda: client.detail(sdk.DetailRequest(instance_name="no-such-instance"))) == "InvalidInstance"
    assert code_of(lambda: client.add_image(sdk.AddImageRequest(
        instance_name=shop, product_id="p", pic_name="n", pic_content=b64(b"not a picture")))) == "InvalidImage"
    assert code_of(lambda: client.add_image(sdk.AddImageRequest(
        instance_name=shop, product_id="p", pic_name="n", pic_content="%%%"))) == "InvalidParameter"
    assert code_of(lambda: client.add_image(sdk.AddImageRequest(
        instance_name=shop, product_id="p", pic_name="n", pic_content=good, region="5,1,0,10"))) == "InvalidRegion"
    assert code_of(lambda: client.search_image_by_pic(sdk.SearchImageByPicRequest(
        instance_name=shop, pic_content=good, num=101))) == "OverflowMaxReturnNum"
    assert code_of(lambda: client.search_image_by_pic(sdk.SearchImageByPicRequest(
        instance_name=shop, pic_content=good, start=450, num=100))) == "OverflowMaxResultNum"
    assert code_of(lambda: client.search_image_by_name(sdk.SearchImageByNameRequest(
        instance_name=shop, product_id="p", pic_name="n"))) == "NoSpecifiedSearchPic"
    assert code_of(lambda: client.search_image_by_filter(sdk.SearchImageByFilterRequest(
        instance_name=shop, filter="int_attr >> 3"))) == "InvalidFilter"
    assert code_of(lambda: client.search_image_by_text(sdk.SearchImageByTextRequest(
        instance_name=shop, text="red shoes"))) == "InvalidParameter"
    assert code_of(lambda: client.dump_meta(sdk.DumpMetaRequest(instance_name="no-such-one"))) == "InvalidInstance"
    products = make_instance("product").name
    assert code_of(lambda: client.add_image(sdk.AddImageRequest(
        instance_name=products, product_id="p", pic_name="n", pic_content=good, category_id=12345))) == "InvalidCategory"
    assert code_of(lambda: client.search_image_by_pic(sdk.SearchImageByPicRequest(
        instance_name=shop, pic_content=good, crop="maybe"))) == "InvalidParameter"


# ---- signatures, with hand-made requests ------------------------------------------------------------


def test_hand_signed_request_passes_and_any_change_fails(server, credentials, shop):
    key_id, secret = credentials
    body = f"InstanceName={shop}".encode()
    status, answer = post(server, signed_request(server, key_id, secret, body), body)
    assert status == 200 and answer["Instance"]["Name"] == shop and answer["RequestId"]

    tampered = body.replace(b"InstanceName", b"InstanceNamf")
    status, answer = post(server, signed_request(server, key_id, secret, body), tampered)
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch")

    headers = signed_request(server, key_id, secret, body)
    headers["x-acs-version"] = "2020-12-15"  # a signed header changed after signing
    assert post(server, headers, body)[1]["Code"] == "SignatureDoesNotMatch"

    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert post(server, signed_request(server, key_id, wrong_secret, body), body)[1]["Code"] == "SignatureDoesNotMatch"
    assert post(server, signed_request(server, "LTAInobody", secret, body), body)[1]["Code"] == "InvalidAccessKeyId"

    query = "Num=5"
    headers = signed_request(server, key_id, secret, body, query=query)
    assert post(server, headers, body, query="Num=6")[1]["Code"] == "SignatureDoesNotMatch"
    assert post(server, headers, body, query=query)[0] == 200


def test_replays_stale_dates_and_unsigned_requests_fail(server, credentials, shop):
    key_id, secret = credentials
    body = f"InstanceName={shop}".encode()
    headers = signed_request(server, key_id, secret, body)
    assert post(server, headers, body)[0] == 200
    assert post(server, headers, body)[1]["Code"] == "SignatureNonceUsed"
    stale = datetime.now(timezone.utc) - signature.DATE_WINDOW - timedelta(minutes=1)
    assert post(server, signed_request(server, key_id, secret, body, date=stale), body)[1]["Code"] == "RequestExpired"
    future = datetime.now(timezone.utc) + signature.DATE_WINDOW + timedelta(minutes=1)
    assert post(server, signed_request(server, key_id, secret, body, date=future), body)[1]["Code"] == "RequestExpired"
    status, answer = post(server, {"x-acs-action": "Detail"}, body)
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch") and "Authorization" in answer["Message"]


def test_keys_are_limited_to_their_instances_and_can_be_revoked(server, keys, shop, make_instance):
    other = make_instance("generic").name
    key_id, secret = keys.create([shop])
    limited = sdk_client(server, key_id, secret)
    assert limited.detail(sdk.DetailRequest(instance_name=shop)).body.instance.name == shop
    assert code_of(lambda: limited.detail(sdk.DetailRequest(instance_name=other))) == "NoPermission"
    assert [k.instances for k in keys.listing() if k.id == key_id] == [[shop]]
    # A key no server process has looked up is refused from its revocation on. (One that a process
    # remembers, within 10 s: tests/test_concurrency.py, tests/test_access_key_cache.py.)
    unused_id, unused_secret = keys.create([shop])
    keys.revoke(unused_id)
    unused = sdk_client(server, unused_id, unused_secret)
    assert code_of(lambda: unused.detail(sdk.DetailRequest(instance_name=shop))) == "InvalidAccessKeyId"
    keys.revoke(key_id)
    revoked = {k.id: k.revoked_at is not None for k in keys.listing() if k.id in (key_id, unused_id)}
    assert revoked == {key_id: True, unused_id: True}


def test_unknown_action_and_oversized_body(server, credentials, shop):
    key_id, secret = credentials
    body = f"InstanceName={shop}".encode()
    status, answer = post(server, signed_request(server, key_id, secret, body, action="FlyToTheMoon"), body)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "AddImage" in answer["Message"]
    huge = b"PicContent=" + b"A" * (9 * 1024 * 1024)
    response = requests.post(f"http://{server}/", data=huge, headers={"x-acs-action": "AddImage"}, timeout=60)
    assert response.status_code == 413 and response.json()["Code"] == "InvalidParameter"


def test_insecure_mode_accepts_unsigned_requests(service, settings, shop):
    app = create_app({"SETTINGS": settings, "SERVICE": service, "INSECURE_NO_AUTH": True})
    answer = app.test_client().post("/", data={"InstanceName": shop}, headers={"x-acs-action": "Detail"})
    assert answer.status_code == 200 and answer.get_json()["Instance"]["Name"] == shop
    secure = create_app({"SETTINGS": settings, "SERVICE": service})
    refused = secure.test_client().post("/", data={"InstanceName": shop}, headers={"x-acs-action": "Detail"})
    assert refused.status_code == 403 and refused.get_json()["Code"] == "SignatureDoesNotMatch"


def test_a_fresh_worker_answers_a_signed_first_request(settings, credentials, shop):
    """A new process's first request opens the service and the key store together (once deadlocked)."""
    app = create_app({"SETTINGS": settings})  # no service yet, as in a fresh gunicorn worker
    body = f"InstanceName={shop}".encode()
    answers = []
    worker = threading.Thread(target=lambda: answers.append(app.test_client().post(
        "/", data=body, headers=signed_request("localhost", *credentials, body),
        environ_base={signature.REPEATED_HEADERS: frozenset()})))  # what a server reports: no header repeated
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the first request hung"
    assert answers[0].status_code == 200 and answers[0].get_json()["Instance"]["Name"] == shop
    app.config["SERVICE"].close()
