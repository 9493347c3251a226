"""The official Node.js SDK (@alicloud/imagesearch20201214, installed into tests/node by
tests/install-test-tools.sh) as the tests drive it: tests/node/client.js in one Node process, a JSON line per
call."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

FOLDER = Path(__file__).parent / "node"
STYLES = {"ACS3-HMAC-SHA256": {}, "ACS3-HMAC-SM3": {"signatureAlgorithm": "ACS3-HMAC-SM3"},
          "RPC": {"signatureAlgorithm": "v2"}}  # the Config each signature style takes


class NodeError(Exception):
    """An error the SDK threw: the server's Code, or the client's own (a response it could not read)."""

    def __init__(self, code: str, message: str, status: int | None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class NodeClient:
    def __init__(self):
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("Node.js and npm are not installed: the official Node.js SDK's tests need them")
        if not (FOLDER / "node_modules/@alicloud/imagesearch20201214").is_dir():
            pytest.fail("the Node.js SDK is not installed: run `bash tests/install-test-tools.sh`")
        self.process = subprocess.Popen(["node", str(FOLDER / "client.js")], cwd=FOLDER, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def _ask(self, order: dict) -> dict:
        self.process.stdin.write(json.dumps(order) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the Node.js client ended (exit status {self.process.poll()})")
        return json.loads(line)

    def call(self, config: dict, action: str, **request) -> dict:
        """``action`` (the SDK's method name, e.g. "addImage") with the request model's fields; the response
        body as the SDK's model gives it back (toMap), or NodeError."""
        answer = self._ask({"config": config, "action": action, "request": request})
        if "error" in answer:
            error = answer["error"]
            raise NodeError(error["code"], error["message"], error.get("statusCode"))
        return answer["body"]

    def declared_types(self, model: str) -> dict:
        """A response model's fields by wire name: "string", "number", "boolean", {nested}, [element]."""
        return self._ask({"types": model})["types"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def config(endpoint: str, key_id: str, secret: str, style: str) -> dict:
    return {"accessKeyId": key_id, "accessKeySecret": secret, "endpoint": endpoint, "protocol": "http",
            "regionId": "cn-shanghai", **STYLES[style]}
