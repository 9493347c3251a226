"""Which credentials an S3 storage location signs with, end to end against a server that refuses wrong ones
(tests/s3_server.py: moto checking every signature).

The documented order (README, "Locations"; imagesearch_pg/storage/filesystems.py): the location's own
variables IMAGESEARCH_STORAGE_<NAME>_*, else the location's profile of the AWS files, else the AWS defaults
(the AWS_* variables, then the [default] profile of the shared credentials file). Each pair of sources is
tried both ways: the earlier one's key valid and the later one's wrong reads the picture; the earlier one's
wrong and the later one's valid is refused (no falling back). A reversed or merged order fails one of them.
A refused key gives the product's NoPermission error, and no secret shows in it or in the logs.
"""

from __future__ import annotations

import configparser
import itertools
import logging
import os
import secrets

import pytest
import s3fs

from imagesearch_pg.storage import StoragePermissionDenied
from imagesearch_pg.storage.filesystems import S3Credentials
from tests import s3_server as moto
from tests.batch_folders import errors, picture, run_to_end

ORDER = ("location", "profile", "variables", "file")  # earliest first
PAIRS = list(itertools.combinations(ORDER, 2))
PICTURE = picture(7)
_AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def wrong(key: S3Credentials) -> S3Credentials:
    """The same access key id with another secret: only the secret decides, so a refusal proves which was sent."""
    return S3Credentials(key.key, secrets.token_urlsafe(30), key.token)


class Sources:
    """Puts keys where the AWS defaults and the product look for them, in temporary files and the test's
    environment only."""

    def __init__(self, tmp_path, monkeypatch):
        self._monkeypatch = monkeypatch
        self._file = tmp_path / "aws-credentials"
        self._profiles = configparser.ConfigParser()
        for name in _AWS_CREDENTIAL_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(self._file))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))  # never written: no profile there
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask on this machine

    def give(self, source: str, key: S3Credentials, location: str, profile: str) -> None:
        if source == "location":
            moto.give_location(self._monkeypatch, location, key)
        elif source == "variables":
            self._monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.key)
            self._monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key.secret)
            if key.token:
                self._monkeypatch.setenv("AWS_SESSION_TOKEN", key.token)
            else:
                self._monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        else:
            self._profiles[profile if source == "profile" else "default"] = {
                "aws_access_key_id": key.key, "aws_secret_access_key": key.secret,
                **({"aws_session_token": key.token} if key.token else {})}
            with self._file.open("w") as out:
                self._profiles.write(out)


@pytest.fixture
def sources(tmp_path, monkeypatch):
    # fsspec keeps each S3 filesystem (with the credentials it resolved) for its arguments, as a running
    # server would: each test starts as a new process does, with none kept.
    s3fs.S3FileSystem.clear_instance_cache()
    yield Sources(tmp_path, monkeypatch)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def located(service, s3_server, sources):
    """located(keys by source) -> the name of a new location over a bucket holding a.jpg, whose sources hold
    those keys; its profile is ``profile``, else one of its own when "profile" is a source. Removed after the
    test."""
    made = []

    def make(keys: dict[str, S3Credentials], profile: str | None = None) -> str:
        name, profile = fresh("s3-auth"), profile or (fresh("profile") if "profile" in keys else None)
        bucket = s3_server.bucket()
        s3_server.put(bucket, "a.jpg", PICTURE)
        for source, key in keys.items():
            sources.give(source, key, name, profile)
        service.storage.add(name, f"s3://{bucket}", endpoint=s3_server.endpoint, region="us-east-1", profile=profile)
        made.append(name)
        return name

    yield make
    for name in made:
        service.storage.remove(name)


@pytest.fixture
def logs(caplog):
    """What a server would log: INFO and above from every library, everything from the product."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="imagesearch_pg")
    return caplog


def read(service, name: str) -> bytes:
    return service.storage.get(name).folder("/").read("a.jpg", 4 * 2**20)


def assert_refused(service, name: str, logs, keys: list[S3Credentials]) -> None:
    """Reading is refused with the product's NoPermission, and none of ``keys``' secrets shows."""
    with pytest.raises(StoragePermissionDenied) as refused:
        read(service, name)
    assert refused.value.message == f"cannot read picture 'a.jpg' in / of location {name}: permission denied"
    assert refused.value.code == "NoPermission"
    assert_never_shown(keys, str(refused.value), repr(refused.value), logs=logs)


def assert_never_shown(keys: list[S3Credentials], *texts: str, logs=None) -> None:
    shown = [*texts, *([] if logs is None else [logs.text, *(str(vars(r)) for r in logs.records)])]
    for key in keys:
        for secret in filter(None, (key.secret, key.token)):
            assert not any(secret in text for text in shown), "a secret was shown"


@pytest.mark.parametrize("earlier, later", PAIRS, ids=[f"{a}-before-{b}" for a, b in PAIRS])
def test_the_earlier_source_is_used(service, s3_server, located, earlier, later):
    valid = s3_server.new_key()
    reads = located({earlier: valid, later: wrong(valid)})
    assert read(service, reads) == PICTURE


@pytest.mark.parametrize("earlier, later", PAIRS, ids=[f"{a}-before-{b}" for a, b in PAIRS])
def test_a_wrong_earlier_source_is_not_passed_over(service, s3_server, located, logs, earlier, later):
    valid = s3_server.new_key()
    refused_key = wrong(valid)
    assert_refused(service, located({earlier: refused_key, later: valid}), logs, [valid, refused_key])


@pytest.mark.parametrize("source", ORDER)
def test_each_source_alone_with_a_session_token(service, s3_server, located, logs, source):
    """Temporary credentials read only with their token: so each source's token is sent too."""
    temporary = s3_server.session_credentials()
    assert read(service, located({source: temporary})) == PICTURE
    s3fs.S3FileSystem.clear_instance_cache()  # or the AWS defaults resolved for the first read are kept
    assert_refused(service, located({source: S3Credentials(temporary.key, temporary.secret)}), logs, [temporary])


def test_no_credentials_anywhere(service, located):
    nowhere = located({})
    with pytest.raises(StoragePermissionDenied, match=rf"^cannot read picture 'a.jpg' in / of location {nowhere}: "
                                                      r"no usable credentials \(Unable to locate credentials\)$"):
        read(service, nowhere)


def test_a_profile_missing_from_the_files_is_not_passed_over(service, s3_server, located):
    valid = s3_server.new_key()
    missing = located({"variables": valid, "file": valid}, profile=fresh("missing"))
    with pytest.raises(StoragePermissionDenied, match=r"no usable credentials \(The config profile \(missing-.*\) "
                                                      r"could not be found\)"):
        read(service, missing)


def test_a_batch_import_with_a_wrong_secret(service, instance, s3_server, located, logs):
    """Through a task: it fails with NoPermission naming the location (the profile's and the AWS variables'
    valid key are not tried), and neither its report, its message nor the logs show either secret."""
    valid = s3_server.new_key()
    refused_key = wrong(valid)
    name = located({"location": refused_key, "profile": valid, "variables": valid})
    s3_server.put(service.storage.get(name).url.removeprefix("s3://"), "increment.meta",
                  b'{"OperationType": "ADD", "ProductId": "p", "PicName": "a.jpg"}\n')
    task = run_to_end(service, service.tasks.submit_import(instance.name, name, "/"))
    assert (task.state, task.error_code) == ("failed", "NoPermission")
    assert task.error_message == f"cannot read increment.meta in / of location {name!r}: permission denied"
    assert_never_shown([valid, refused_key], repr(task), *map(str, errors(service, task)), logs=logs)
    assert any(name in record.getMessage() for record in logs.records)  # the failure was logged, so looked at
