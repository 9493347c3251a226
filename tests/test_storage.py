"""Storage locations: the table and its checks, containment, reading and writing on a local folder and on a
real S3-compatible server (moto, tests/s3_server.py), the typed errors, and `imagesearch storage`. Which
credentials an S3 location signs with: tests/test_storage_credentials.py."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from imagesearch_pg.cli import cli
from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service.storage_locations import StorageLocations
from imagesearch_pg.storage import (
    FileTooLarge, Location, PathRefused, StorageNotFound, StoragePermissionDenied, StorageUnavailable,
    UnknownLocation,
)
from imagesearch_pg.storage.filesystems import S3Credentials, credentials, s3, variable_names
from tests import s3_server as moto

META = b'{"operation": "ADD", "n": 1}\n{"operation": "ADD", "n": 2}\n{"operation": "DELETE", "n": 3}\n'
FOUR_MB = 4 * 2**20
_names = itertools.count()


@pytest.fixture
def locations(database, settings):
    made = StorageLocations(database, settings)
    yield made
    for location in made.listing():
        if location.name.startswith(f"t{os.getpid()}-"):
            made.remove(location.name)


def fresh(prefix: str = "") -> str:
    return f"t{os.getpid()}-{prefix}{next(_names)}"


def s3_location(locations, server, monkeypatch, bucket: str, prefix: str = "") -> Location:
    name = fresh("s3-")
    moto.give_location(monkeypatch, name, server.credentials)
    return locations.add(name, f"s3://{bucket}{prefix}", endpoint=server.endpoint, region="us-east-1")


@pytest.fixture
def local(locations, tmp_path):
    root = tmp_path / "root"
    (root / "batch").mkdir(parents=True)
    (root / "batch" / "increment.meta").write_bytes(META)
    (root / "batch" / "a.jpg").write_bytes(b"picture a")
    return locations.add(fresh("local-"), str(root))


@pytest.fixture
def on_s3(locations, s3_server, monkeypatch):
    bucket = s3_server.bucket()
    s3_server.put(bucket, "imports/batch/increment.meta", META)
    s3_server.put(bucket, "imports/batch/a.jpg", b"picture a")
    s3_server.put(bucket, "outside.jpg", b"not under the prefix")
    return s3_location(locations, s3_server, monkeypatch, bucket, "/imports")


# ---- the table --------------------------------------------------------------------------------------------


def test_add_list_get_remove(locations, tmp_path):
    by_path, by_url, on_s3 = fresh(), fresh(), fresh()
    added = locations.add(by_path, str(tmp_path / "." / "x" / ".."))
    assert added.url == tmp_path.as_uri() and added.is_local
    (tmp_path / "a b").mkdir()
    assert locations.add(by_url, (tmp_path / "a b").as_uri()).url == tmp_path.as_uri() + "/a%20b"
    remote = locations.add(on_s3, "s3://my-bucket/some/prefix/", endpoint="http://127.0.0.1:9000/",
                           region="us-east-1", profile="minio")
    assert remote == Location(on_s3, "s3://my-bucket/some/prefix", "http://127.0.0.1:9000", "us-east-1", "minio")
    assert {by_path, by_url, on_s3} <= {location.name for location in locations.listing()}
    assert locations.get(on_s3) == remote

    with pytest.raises(InvalidParameter, match=f"location {by_path} exists"):
        locations.add(by_path, str(tmp_path))
    locations.remove(on_s3)
    with pytest.raises(UnknownLocation, match=rf"unknown storage location '{on_s3}'; the operator lists") as unknown:
        locations.get(on_s3)
    assert unknown.value.code == "InvalidParameter" and by_path not in unknown.value.message  # no names told

    # A location for some instances only is, to the others, no location at all.
    only = f"{by_path}-only"
    locations.add(only, str(tmp_path), instances=["shop-a", "shop-b"])
    assert locations.get(only).instances == ("shop-a", "shop-b") and locations.get(only, for_instance="shop-b")
    with pytest.raises(UnknownLocation, match="unknown storage location"):
        locations.get(only, for_instance="shop-c")
    with pytest.raises(InvalidParameter, match="instance name"):
        locations.add(f"{only}2", str(tmp_path), instances=["bad name!"])
    locations.remove(only)
    with pytest.raises(UnknownLocation):
        locations.remove(on_s3)
    with pytest.raises(UnknownLocation, match=r"'x{64}\.\.\.'"):  # user text is cut in messages
        locations.get("x" * 500)


@pytest.mark.parametrize("name, url, options, message", [
    ("", "/tmp", {}, "name must be 1-63 letters"),
    ("-x", "/tmp", {}, "starting with a letter or digit"),
    ("a" * 64, "/tmp", {}, "name must be 1-63"),
    ("a/b", "/tmp", {}, "name must be"),
    ("x\n", "/tmp", {}, "name must be"),
    ("ok", "relative/folder", {}, "must be file:///absolute/folder, /absolute/folder or s3://bucket"),
    ("ok", "http://example.com/x", {}, "must be file:///absolute/folder"),
    ("ok", "file://elsewhere/x", {}, "names a folder of this machine"),
    ("ok", "/no/such/folder", {}, "must exist"),
    ("ok", "/tmp/a\x00b", {}, "must not contain NUL"),
    ("ok", "s3://", {}, "bucket must be 3-63"),
    ("ok", "s3://Upper_Case", {}, "bucket must be 3-63"),
    ("ok", "s3://bucket/a/../b", {}, r"S3 prefix: .*'\.\.'"),
    ("ok", "s3://key:SECRET@bucket", {}, "must not carry credentials"),
    ("ok", "s3://bucket:9000", {}, "endpoint is given apart"),
    ("ok", "oss://bucket", {}, "OSS speaks S3, so use s3://"),
    ("ok", "s3://bucket", {"endpoint": "ftp://host"}, r"endpoint must be an http\(s\)://host"),
    ("ok", "s3://bucket", {"endpoint": "host:9000"}, "endpoint must be"),
    ("ok", "s3://bucket", {"endpoint": "http://host/path?x=1"}, "endpoint must be"),
    ("ok", "s3://bucket", {"endpoint": "http://host:99999"}, "endpoint must be"),
    ("ok", "s3://bucket", {"endpoint": "https://user:pw-SECRET@host"}, "through the environment"),
    ("ok", "s3://bucket", {"endpoint": "ftp://user:SECRET@host/x"}, "through the environment"),
    ("ok", "s3://bucket", {"region": "us east"}, "region must be"),
    ("ok", "s3://bucket", {"profile": "../x"}, "profile must be"),
    ("ok", "/tmp", {"endpoint": "http://host"}, "s3:// locations only"),
    ("ok", "/" + "x" * 600, {}, r"no folder '/x{63}\.\.\.' on this machine"),  # user text is cut
])
def test_add_refuses(locations, name, url, options, message):
    with pytest.raises(InvalidParameter, match=message) as refused:
        locations.add(name, url, **options)
    assert "SECRET" not in refused.value.message


def test_results_location(locations, settings, tmp_path):
    built_in = locations.results()  # the test settings name no results_location
    assert built_in.name == "results" and built_in.url == settings.results_dir.resolve().as_uri()
    assert settings.results_dir.is_dir() and "results" not in {l.name for l in locations.listing()}
    exports = locations.add(fresh(), str(tmp_path))
    configured = StorageLocations(locations.database, dataclasses.replace(settings, results_location=exports.name))
    assert configured.results() == exports
    with pytest.raises(UnknownLocation):
        StorageLocations(locations.database, dataclasses.replace(settings, results_location="gone")).results()


# ---- containment -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, message", [
    ("batch", "must start with '/'"), ("/a/../b", r"'\.\.'"), ("/..", r"'\.\.'"), ("/batch/..", r"'\.\.'"),
    ("/a\x00b", "NUL or control"), ("/a\nb", "control"), ("/a\\b", "backslashes"), ("/" + "a" * 1024, "1024"),
])
def test_folder_paths_refused(local, path, message):
    with pytest.raises(PathRefused, match=message) as refused:
        local.folder(path)
    assert refused.value.code == "InvalidParameter"


@pytest.mark.parametrize("name", ["../increment.meta", "sub/../../x", "/etc/passwd", "a\\b.jpg", "a\x00.jpg",
                                  "x" * 1025, "", "."])
def test_file_names_refused(local, name):
    with pytest.raises(PathRefused):
        local.folder("/batch").read(name, FOUR_MB)


def test_literal_names_and_links(local, tmp_path):
    root = tmp_path / "root"
    (root / "%2e%2e").mkdir()
    (root / "%2e%2e" / "x.jpg").write_bytes(b"literal")
    (root / "...").write_bytes(b"dots")
    assert local.folder("/").read("%2e%2e/x.jpg", 10) == b"literal"  # encoded dots are just a name
    assert local.folder("/").read("...", 10) == b"dots" and local.folder("/").exists("./batch/a.jpg")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"not exposed")
    (root / "out").symlink_to(outside)
    (root / "batch" / "leak.jpg").symlink_to(outside / "secret.jpg")
    (root / "batch" / "inner.jpg").symlink_to(root / "batch" / "a.jpg")
    (root / "in").symlink_to(root / "batch")
    with pytest.raises(PathRefused, match="outside its storage location"):
        local.folder("/out")
    for folder, name in [("/", "out/secret.jpg"), ("/batch", "leak.jpg")]:
        with pytest.raises(PathRefused):
            local.folder(folder).read(name, 100)
        with pytest.raises(PathRefused):
            local.folder(folder).exists(name)
    with pytest.raises(PathRefused):
        with local.writer("out/new.json"):
            pass
    assert local.folder("/batch").read("inner.jpg", 100) == b"picture a"
    assert local.folder("/in").read("a.jpg", 100) == b"picture a"


def test_s3_names_stay_under_the_prefix(on_s3):
    with pytest.raises(PathRefused):
        on_s3.folder("/../")
    with pytest.raises(PathRefused):
        on_s3.folder("/").read("../outside.jpg", 100)
    with pytest.raises(StorageNotFound):
        on_s3.folder("/").read("outside.jpg", 100)


# ---- reading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "on_s3"])
def test_reading(where, request):
    location = request.getfixturevalue(where)
    batch = location.folder("/batch/")
    with batch.open("increment.meta") as meta:
        first = meta.readline()
        offset = meta.tell()
    assert json.loads(first)["n"] == 1 and offset == len(first)
    with batch.open("increment.meta") as meta:  # a task resuming at its checkpoint
        meta.seek(offset)
        assert [json.loads(line)["n"] for line in meta] == [2, 3]
        assert meta.tell() == len(META)
    assert batch.read("a.jpg", FOUR_MB) == b"picture a" and location.folder("/").read("batch/a.jpg", 9)
    assert batch.exists("a.jpg") and not batch.exists("b.jpg") and not location.folder("/").exists("batch")

    with pytest.raises(FileTooLarge, match=f"picture 'a.jpg' in /batch of location {location.name} is over 8 bytes"):
        batch.read("a.jpg", 8)
    with pytest.raises(StorageNotFound, match=f"^no increment.meta file in /missing of location {location.name}$") \
            as missing:
        location.folder("/missing").open("increment.meta", what="increment.meta file")
    assert missing.value.code == "InvalidParameter"
    with pytest.raises(StorageNotFound, match="no picture 'b.jpg' in /batch"):
        batch.read("b.jpg", FOUR_MB)


def test_over_four_megabytes_is_refused_unread(local, tmp_path):
    (tmp_path / "root" / "batch" / "big.jpg").write_bytes(b"\0" * (FOUR_MB + 1))
    with pytest.raises(FileTooLarge, match="picture 'big.jpg' in /batch of location .* is over 4 MB") as refused:
        local.folder("/batch").read("big.jpg", FOUR_MB)
    assert refused.value.code == "InvalidImageSize"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_local_permission_denied(local, tmp_path):
    (tmp_path / "root" / "batch" / "increment.meta").chmod(0)
    with pytest.raises(StoragePermissionDenied, match="cannot read increment.meta file in /batch .*: permission"):
        local.folder("/batch").open("increment.meta", what="increment.meta file")


def test_s3_down_endpoint(locations, monkeypatch):
    nowhere = SimpleNamespace(endpoint=f"http://127.0.0.1:{moto.free_port()}",  # nothing listens there
                              credentials=S3Credentials("AKIAEXAMPLE", "down-endpoint-secret"))
    down = s3_location(locations, nowhere, monkeypatch, "any-bucket")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"cannot read file 'increment.meta' in /x of location .*: "
                                                 r"the store is unreachable \(Could not connect") as unavailable:
        down.folder("/x").open("increment.meta")
    assert unavailable.value.code == "ServiceUnavailable" and time.monotonic() - started < 15
    assert "down-endpoint-secret" not in unavailable.value.message + repr(down)


def test_s3_credential_variables(monkeypatch, s3_server):
    key_var, secret_var, token_var = variable_names("shop-s3.eu")
    assert key_var == "IMAGESEARCH_STORAGE_SHOP_S3_EU_ACCESS_KEY_ID" and token_var.endswith("_SESSION_TOKEN")
    monkeypatch.setenv(key_var, "AKID")
    monkeypatch.setenv(secret_var, "very-secret")
    monkeypatch.setenv(token_var, "session")
    fs = s3("shop-s3.eu", s3_server.endpoint, None, "ignored-profile")
    assert (fs.key, fs.secret, fs.token) == ("AKID", "very-secret", "session") and "profile" not in fs.kwargs
    assert "very-secret" not in repr(credentials("shop-s3.eu")) and "AKID" in repr(S3Credentials("AKID", "x"))
    monkeypatch.delenv(secret_var)
    with pytest.raises(StoragePermissionDenied, match=f"set both {key_var} and {secret_var}, or neither"):
        credentials("shop-s3.eu")


# ---- writing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "on_s3"])
def test_writer_reader_remove(where, request):
    location = request.getfixturevalue(where)
    big = b"0123456789abcdef" * (600 * 1024)  # 9.4 MB: more than one S3 part
    with location.writer("exports/task-1.json") as out:
        out.write(b'{"ProductId": "p"}\n')
        out.write(big)
    assert location.size("exports/task-1.json") == 19 + len(big)
    with location.reader("exports/task-1.json") as back:
        assert back.readline() == b'{"ProductId": "p"}\n' and back.read() == big
    with pytest.raises(StorageNotFound, match=f"no file 'exports' in location {location.name}"):
        location.size("exports")
    location.remove("exports/task-1.json")
    location.remove("exports/task-1.json")  # missing is fine
    with pytest.raises(StorageNotFound):
        location.reader("exports/task-1.json").__enter__()

    with pytest.raises(RuntimeError, match="export failed"):
        with location.writer("exports/task-2.json") as out:
            out.write(big)
            raise RuntimeError("export failed")
    with pytest.raises(StorageNotFound):
        location.size("exports/task-2.json")
    if location.is_local:
        assert os.listdir(location.url[len("file://"):] + "/exports") == []  # no temporary file left
    else:
        server, bucket = request.getfixturevalue("s3_server"), location.url.split("/")[2]
        assert server.uploads_under_way(bucket) == []
        assert not any(key.startswith("imports/exports") for key in server.keys(bucket))


# ---- the command -----------------------------------------------------------------------------------------


def test_cli(engine, settings, tmp_path, locations):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}

    def run(*args: str):
        return CliRunner().invoke(cli, ["storage", *args], env=env, catch_exceptions=False)

    name, remote = fresh(), fresh()
    added = run("add", name, str(tmp_path))
    assert added.exit_code == 0 and f"added {name}: {tmp_path.as_uri()}" in added.output
    on_s3 = run("add", remote, "s3://bucket-x/p", "--endpoint", "http://127.0.0.1:9000", "--region", "us-east-1")
    assert on_s3.exit_code == 0 and variable_names(remote)[0] in on_s3.output
    listed = {row["Name"]: row for row in json.loads(run("list", "--json").stdout)}
    assert listed[remote] == {"Name": remote, "Url": "s3://bucket-x/p", "Endpoint": "http://127.0.0.1:9000",
                              "Region": "us-east-1", "Profile": None, "Instances": "*"}
    assert name in run("list").stdout.split()
    assert run("remove", remote).exit_code == 0 and remote not in json.loads(run("list", "--json").stdout)[0].values()

    refused = run("add", "bad name", str(tmp_path))
    assert refused.exit_code == 1 and refused.stderr.startswith("error: InvalidParameter: storage location name")
    unknown = run("remove", remote)
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1 and "unknown" in unknown.stderr
