"""A real S3-compatible server for the storage tests: moto's, run as a subprocess on a free loopback port."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

# moto accepts any key pair (unless started with INITIAL_NO_AUTH_ACTION_COUNT, see start()).
TEST_KEY_ID, TEST_SECRET = "test-key-id", "test-secret-access-key"
_buckets = itertools.count()


class S3Server:
    def __init__(self, endpoint: str, process: subprocess.Popen, log):
        self.endpoint = endpoint
        self._process = process
        self._log = log
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=TEST_KEY_ID,
                                   aws_secret_access_key=TEST_SECRET, region_name="us-east-1")

    def bucket(self) -> str:
        """A new, empty bucket. Made with boto3 without a location constraint: moto refuses the one s3fs
        sends for us-east-1."""
        name = f"bucket-{os.getpid()}-{next(_buckets)}"
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str) -> list[str]:
        return [item["Key"] for item in self.client.list_objects_v2(Bucket=bucket).get("Contents", [])]

    def uploads_under_way(self, bucket: str) -> list[str]:
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(extra_env: dict[str, str] | None = None, timeout: float = 30.0) -> S3Server:
    """moto_server on a free port, once it answers HTTP. ``extra_env``: e.g. INITIAL_NO_AUTH_ACTION_COUNT=0
    makes it check credentials (and refuse every key, since it knows none)."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(extra_env or {})})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return S3Server(endpoint, process, log)
        except urllib.error.HTTPError:  # any HTTP answer means it is up
            return S3Server(endpoint, process, log)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.seek(0)
                raise RuntimeError(f"moto_server did not start on {endpoint}: {log.read().decode(errors='replace')}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server():
    server = start()
    yield server
    server.stop()
