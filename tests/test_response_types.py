"""Every field of every action's answer has the type the official SDKs' models declare, read from the
installed packages: the Python SDK's type hints (alibabacloud_imagesearch20201214) and the Node.js SDK's
types() (@alicloud/imagesearch20201214), which its clients enforce: a string where a number is declared
fails a typed client (Node, Java, Go, C#) on the spot. The answers are the production server's raw JSON,
one of each action, with every field the models declare filled in."""

from __future__ import annotations

import base64
import inspect
import itertools
import os
import sys
import typing
from urllib.parse import urlencode

import pytest
from alibabacloud_imagesearch20201214 import models as python_models
from darabonba.model import DaraModel

from tests.batch_folders import picture, run_to_end, write_folder
from tests.http_requests import post, signed_request
from tests.node_client import NodeClient
from tests.test_encoder_spec import colour_word_text_model, colour_word_tokenizer, mean_colour_model, write_spec

ACTIONS = ("AddImage", "CheckImageExists", "CompareSimilarByImage", "DeleteImage", "Detail", "DumpMeta",
           "DumpMetaList", "IncreaseInstance", "IncreaseList", "SearchImageByFilter", "SearchImageByName",
           "SearchImageByPic", "SearchImageByText", "UpdateImage")
# Declared, never sent: what Alibaba Cloud's access control (RAM) says when it denies a call.
NEVER_SENT = ("AccessDeniedDetail",)
_names = itertools.count()


def python_declared(model: type[DaraModel]) -> dict:
    """A Python SDK model's fields by wire name (its attribute's name in PascalCase), typed as Node's."""
    hints = typing.get_type_hints(model.__init__, vars(sys.modules[model.__module__]))
    return {"".join(part.capitalize() for part in name.split("_")): _python_type(hints[name])
            for name in inspect.signature(model.__init__).parameters if name != "self"}


def _python_type(hint):
    if typing.get_origin(hint) is list:
        return [_python_type(typing.get_args(hint)[0])]
    if inspect.isclass(hint) and issubclass(hint, DaraModel):
        return python_declared(hint)
    return {str: "string", int: "number", float: "number", bool: "boolean"}[hint]


def mismatches(value, declared, path: str) -> list[str]:
    """Where ``value`` (JSON) is not of the ``declared`` type: exact JSON types (a typed client tolerates some
    strings of digits; the protocol sends numbers)."""
    if isinstance(declared, dict):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, declared an object"]
        return [found for name, field in declared.items() if name in value
                for found in mismatches(value[name], field, f"{path}.{name}")]
    if isinstance(declared, list):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, declared an array"]
        return [found for item in value for found in mismatches(item, declared[0], f"{path}[]")]
    wanted = {"string": (str,), "number": (int, float), "boolean": (bool,)}[declared]
    if isinstance(value, wanted) and not (declared == "number" and isinstance(value, bool)):
        return []
    return [f"{path}: {type(value).__name__} {value!r:.40}, declared {declared}"]


def leaves(declared, path: str = "") -> set[str]:
    if isinstance(declared, dict):
        return {leaf for name, field in declared.items() for leaf in leaves(field, f"{path}.{name}")}
    if isinstance(declared, list):
        return leaves(declared[0], f"{path}[]")
    return {path}


def sent(value, path: str = "") -> set[str]:
    if isinstance(value, dict):
        return {leaf for name, field in value.items() for leaf in sent(field, f"{path}.{name}")}
    if isinstance(value, list):
        return {leaf for item in value for leaf in sent(item, f"{path}[]")}
    return {path}


@pytest.fixture(scope="module")
def node():
    client = NodeClient()
    yield client
    client.close()


@pytest.fixture(scope="module")
def declared(node) -> dict[str, dict]:
    """Each action's answer as the Node.js SDK's models declare it."""
    return {action: node.declared_types(f"{action}ResponseBody") for action in ACTIONS}


@pytest.fixture(scope="module")
def answers(server, credentials, service, tmp_path_factory) -> dict[str, dict]:
    """One answer of each action, with every declared field present: an instance of a text model (for
    SearchImageByText) that expires (UtcExpireTime), a picture with every attribute, a finished batch with
    failed lines (Code, ErrorUrl), a queued one with a CallbackAddress, a finished export (MetaUrl)."""
    folder = tmp_path_factory.mktemp("types")
    mean_colour_model(folder / "model.onnx")
    colour_word_text_model(folder / "text.onnx")
    colour_word_tokenizer(folder / "tokenizer.json")
    encoder = f"types-{os.getpid()}-{next(_names)}"
    service.register_encoder(write_spec(folder, name=encoder, text={
        "onnx": "text.onnx", "tokenizer": "tokenizer.json", "output": "summed", "max_length": 8,
        "input_name": "ids", "attention_mask": "mask"}))
    name = f"types-{os.getpid()}-{next(_names)}"
    service.create_instance(name, "generic", encoder=encoder)
    service.renew_instance(name, 30)
    location = f"types-{os.getpid()}-{next(_names)}"
    service.storage.add(location, str(folder))
    shot = base64.b64encode(picture(1)).decode()
    attributes = {"CustomContent": "a mug", "IntAttr": -3, "IntAttr2": 2, "IntAttr3": 3, "IntAttr4": 4,
                  "StrAttr": "red", "StrAttr2": "b", "StrAttr3": "c", "StrAttr4": "d"}
    key = {"ProductId": "mug", "PicName": "1.jpg"}

    def ask(action: str, **params) -> dict:
        body = urlencode({"InstanceName": name, **params}).encode()
        status, answer = post(server, signed_request(server, *credentials, body, action=action), body)
        assert status == 200, (action, answer)
        return answer

    try:
        got = {"AddImage": ask("AddImage", **key, PicContent=shot, **attributes)}
        got["UpdateImage"] = ask("UpdateImage", **key, StrAttr2="bb")
        got["CheckImageExists"] = ask("CheckImageExists", **key)
        got["SearchImageByPic"] = ask("SearchImageByPic", PicContent=shot)
        got["SearchImageByName"] = ask("SearchImageByName", **key)
        got["SearchImageByFilter"] = ask("SearchImageByFilter", Filter="int_attr2=2")
        got["SearchImageByText"] = ask("SearchImageByText", Text="red")
        got["CompareSimilarByImage"] = ask("CompareSimilarByImage", PrimaryPicContent=shot, SecondaryPicContent=shot)
        got["Detail"] = ask("Detail")
        path = write_folder(folder, [{"OperationType": "ADD", "ProductId": "a", "PicName": "2.jpg"},
                                     {"OperationType": "ADD", "ProductId": "b", "PicName": "missing.jpg"}],
                            {"2.jpg": picture(2)})
        got["IncreaseInstance"] = ask("IncreaseInstance", BucketName=location, Path=path)
        run_to_end(service, service.tasks.get(int(got["IncreaseInstance"]["Data"]["Id"])))
        got["DumpMeta"] = ask("DumpMeta")
        run_to_end(service, service.tasks.get(int(got["DumpMeta"]["Data"]["Id"])))
        # Left queued (nothing is sent to this receiver), last: an instance's tasks run in turn.
        ask("IncreaseInstance", BucketName=location, Path=path, CallbackAddress="http://8.8.8.8/hook")
        got["IncreaseList"] = ask("IncreaseList")
        got["DumpMetaList"] = ask("DumpMetaList")
        got["DeleteImage"] = ask("DeleteImage", **key)
        yield got
    finally:
        service.delete_instance(name)
        service.storage.remove(location)


def test_the_python_and_node_models_declare_the_same_types(declared):
    for action in ACTIONS:
        assert python_declared(getattr(python_models, f"{action}ResponseBody")) == declared[action], action


@pytest.mark.parametrize("action", ACTIONS)
def test_every_field_of_an_answer_has_its_declared_type(answers, declared, action):
    assert mismatches(answers[action], declared[action], action) == []


def test_the_answers_fill_every_declared_field(answers, declared):
    unsent = {leaf for action in ACTIONS for leaf in leaves(declared[action], action)
              if leaf.split(".")[1] not in NEVER_SENT} - {leaf for action in ACTIONS
                                                           for leaf in sent(answers[action], action)}
    assert unsent == set()

