"""A real S3-compatible server for the storage tests: moto's, run as a subprocess on a free loopback port.

It checks credentials as AWS does (moto's IAM authentication): every request must be signed with an access
key it issued, by a user or role allowed the action, so a wrong key or secret is refused with 403. The keys
are made through its IAM API before authentication is switched on (POST /moto-api/reset-auth with 0).
"""

from __future__ import annotations

import itertools
import json
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

from imagesearch_pg.storage.filesystems import S3Credentials, variable_names

_names = itertools.count()


def _policy(action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})


def _new_user(iam, action: str) -> S3Credentials:
    """A new IAM user allowed ``action`` on everything, and its access key."""
    name = f"user-{next(_names)}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="allowed", PolicyDocument=_policy(action))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return S3Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def _client(service: str, endpoint: str, credentials: S3Credentials):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=credentials.key,
                        aws_secret_access_key=credentials.secret, aws_session_token=credentials.token)


class S3Server:
    def __init__(self, endpoint: str, process: subprocess.Popen, log, credentials: S3Credentials):
        self.endpoint = endpoint
        self.credentials = credentials  # allowed everything, IAM included
        self._process = process
        self._log = log
        self.client = _client("s3", endpoint, credentials)
        self._iam = _client("iam", endpoint, credentials)

    def new_key(self) -> S3Credentials:
        """The access key of a new user allowed everything on S3."""
        return _new_user(self._iam, "s3:*")

    def session_credentials(self) -> S3Credentials:
        """Temporary credentials (a session token with them) of a new role allowed everything on S3."""
        role = f"role-{next(_names)}"
        trust = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        arn = self._iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        self._iam.put_role_policy(RoleName=role, PolicyName="allowed", PolicyDocument=_policy("s3:*"))
        given = _client("sts", self.endpoint, self.credentials).assume_role(
            RoleArn=arn, RoleSessionName="storage-tests")["Credentials"]
        return S3Credentials(given["AccessKeyId"], given["SecretAccessKey"], given["SessionToken"])

    def bucket(self) -> str:
        """A new, empty bucket. Made with boto3 without a location constraint: moto refuses the one s3fs
        sends for us-east-1."""
        name = f"bucket-{os.getpid()}-{next(_names)}"
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


def give_location(monkeypatch, location_name: str, credentials: S3Credentials) -> None:
    """Set the location's own credential variables (IMAGESEARCH_STORAGE_<NAME>_...) for the test."""
    for name, value in zip(variable_names(location_name), (credentials.key, credentials.secret, credentials.token)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def start(timeout: float = 30.0) -> S3Server:
    """moto_server on a free port, once it answers HTTP, with a first user's key made and authentication on."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except urllib.error.HTTPError:  # any HTTP answer means it is up
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.seek(0)
                raise RuntimeError(f"moto_server did not start on {endpoint}: {log.read().decode(errors='replace')}")
            time.sleep(0.1)
    try:
        # Until authentication is on, moto takes any signature: these placeholders only make boto3 sign.
        admin = _new_user(_client("iam", endpoint, S3Credentials("placeholder", "placeholder")), "*")
        switch_on = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                           headers={"Content-Type": "text/plain"})  # a form body is parsed away
        urllib.request.urlopen(switch_on, timeout=10).close()
    except BaseException:
        process.kill()
        process.wait()
        log.close()
        raise
    return S3Server(endpoint, process, log, admin)


@pytest.fixture(scope="session")
def s3_server():
    server = start()
    yield server
    server.stop()
