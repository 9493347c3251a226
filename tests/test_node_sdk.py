"""The official Node.js SDK (@alicloud/imagesearch20201214 4.4.0, typed models) as a shop's Node app uses it,
unchanged but for its endpoint: every action, in each signature style it offers (ACS3-HMAC-SHA256, its
default; ACS3-HMAC-SM3; the RPC style, signatureAlgorithm "v2"), errors included, against the production
server."""

from __future__ import annotations

import base64
import itertools
import os

import pytest

from tests.batch_folders import picture, run_to_end, write_folder
from tests.node_client import STYLES, NodeClient, NodeError, config
from tests.pictures import encode, sample_photos

_names = itertools.count()


@pytest.fixture(scope="module")
def node():
    client = NodeClient()
    yield client
    client.close()


@pytest.fixture
def location(service, tmp_path):
    name = f"node-{os.getpid()}-{next(_names)}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("style", STYLES)
def test_every_action_through_the_node_sdk(node, server, credentials, service, shop, location, style):
    sdk = config(server, *credentials, style)
    coffee, cat = b64(encode(sample_photos()["coffee"])), b64(encode(sample_photos()["chelsea"]))

    def call(action, **request):
        return node.call(sdk, action, instanceName=shop, **request)

    added = call("addImage", productId="mug", picName="1.png", picContent=coffee, intAttr=-3, strAttr="red",
                 customContent="a mug")
    assert added["Success"] is True and added["PicInfo"]["CategoryId"] == 88888888
    call("addImage", productId="cat", picName="1.png", picContent=cat, crop=False)
    found = call("searchImageByPic", picContent=coffee, num=2)
    assert [a["ProductId"] for a in found["Auctions"]] == ["mug", "cat"] and found["Auctions"][0]["Score"] > 0.99
    assert found["Auctions"][0]["IntAttr"] == -3 and found["Head"]["DocsReturn"] == 2
    by_name = call("searchImageByName", productId="mug", picName="1.png", num=1)
    assert by_name["Auctions"][0]["ProductId"] == "mug" and by_name["PicInfo"]["CategoryId"] == 88888888
    assert [a["ProductId"] for a in call("searchImageByFilter", filter='str_attr="red"')["Auctions"]] == ["mug"]
    assert call("checkImageExists", productId="mug", picName="1.png")["Exists"] is True
    call("updateImage", productId="mug", picName="1.png", intAttr=7)
    assert call("checkImageExists", productId="mug", picName="1.png")["Auctions"]["IntAttr"] == 7
    assert call("compareSimilarByImage", primaryPicContent=coffee, secondaryPicContent=coffee)["Score"] > 0.99
    detail = call("detail")["Instance"]
    assert (detail["Name"], detail["ServiceType"], detail["TotalCount"], detail["Capacity"]) == (shop, 1, 2, 100)
    assert int(detail["UtcCreate"]) > 0

    name, root = location
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": "b", "PicName": "1.jpg"}], {"1.jpg": picture(1)})
    submitted = call("increaseInstance", bucketName=name, path=path)["Data"]
    assert submitted["IncrementStatus"] == "QUEUED"
    run_to_end(service, service.tasks.get(int(submitted["Id"])))
    listed = call("increaseList", id=int(submitted["Id"]))["Data"]["Increments"]["Instance"]
    assert (listed[0]["Id"], listed[0]["Status"], listed[0]["Code"]) == (int(submitted["Id"]), "SUCCEEDED", "0")
    export = call("dumpMeta")["Data"]
    run_to_end(service, service.tasks.get(int(export["Id"])))
    dumped = call("dumpMetaList", id=int(export["Id"]))["Data"]["DumpMetaList"][0]
    assert dumped["Status"] == "SUCCEEDED" and dumped["MetaUrl"].startswith("http://")
    assert call("deleteImage", productId="cat")["Data"]["PicNames"] == ["1.png"]
    with pytest.raises(NodeError) as no_text:
        call("searchImageByText", text="a red mug")
    assert (no_text.value.code, no_text.value.status) == ("InvalidParameter", 400)


@pytest.mark.parametrize("style", STYLES)
def test_errors_arrive_with_the_protocols_codes(node, server, credentials, keys, shop, make_instance, style):
    def code_of(sdk, action, **request):
        with pytest.raises(NodeError) as raised:
            node.call(sdk, action, **request)
        return raised.value.code, raised.value.status

    sdk = config(server, *credentials, style)
    assert code_of(sdk, "detail", instanceName="no-such-instance") == ("InvalidInstance", 404)
    assert code_of(sdk, "searchImageByName", instanceName=shop, productId="x", picName="y") == (
        "NoSpecifiedSearchPic", 404)
    assert code_of(sdk, "searchImageByPic", instanceName=shop, picContent=b64(b"not a picture")) == (
        "InvalidImage", 400)
    assert code_of(config(server, credentials[0], "wrong", style), "detail", instanceName=shop) == (
        "SignatureDoesNotMatch", 403)
    assert code_of(config(server, "LTAInoSuchKey", "x", style), "detail", instanceName=shop) == (
        "InvalidAccessKeyId", 403)
    other = make_instance("generic").name
    limited = keys.create(instances=[other])
    assert code_of(config(server, *limited, style), "detail", instanceName=shop) == ("NoPermission", 403)
