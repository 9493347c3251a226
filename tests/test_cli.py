"""The `imagesearch` command, on the test database (and, once, on its own embedded server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from imagesearch_pg.cli import cli
from imagesearch_pg.store import schema
from tests.pictures import encode, sample_photos


@pytest.fixture
def run(engine, settings):
    env = {
        "IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "IMAGESEARCH_HOME": str(settings.home),
    }

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def table_rows(text: str) -> list[dict[str, str]]:
    """A table the command printed for people, as {column: cell}: cells are cut at the header's columns
    (a cell may be empty, so splitting at the gaps would shift the cells after it)."""
    header, *lines = text.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    return [{name: line[start:end].strip() for name, start, end in zip(names, starts, [*starts[1:], None])}
            for line in lines]


@pytest.fixture
def photo_dir(tmp_path):
    for key, photo in sample_photos().items():
        (tmp_path / f"{key}.png").write_bytes(encode(photo))
    (tmp_path / "notes.txt").write_text("not a picture")  # skipped when walking a folder
    return tmp_path


def test_add_search_delete(run, service, photo_dir, tmp_path_factory):
    name = "cli-" + tmp_path_factory.mktemp("c").name[-8:].replace("_", "-")
    assert run("instance", "create", name, "--type", "generic", "--capacity", "1000", "--qps", "5").exit_code == 0
    try:
        added = run("add", name, str(photo_dir))
        assert added.exit_code == 0, added.output
        assert "added 8 of 8 pictures" in added.output

        found = run("search", name, str(photo_dir / "rocket.png"), "--num", "3", "--json")
        assert found.exit_code == 0, found.output
        results = json.loads(found.stdout)
        assert [r["ProductId"] for r in results][0] == "rocket" and len(results) == 3
        assert results[0]["PicName"] == "rocket.png" and results[0]["Score"] > 0.99
        assert {"CategoryId", "IntAttr", "StrAttr4", "CustomContent"} <= set(results[0])

        table = run("search", name, str(photo_dir / "coffee.png"), "--num", "2")
        assert table.stdout.splitlines()[1].startswith("coffee ")

        one = run("add", name, str(photo_dir / "chelsea.png"), "--product-id", "cat-42")
        assert one.exit_code == 0
        assert json.loads(run("search", name, str(photo_dir / "chelsea.png"), "--json", "--num", "2").stdout)[0][
            "ProductId"] in {"chelsea", "cat-42"}

        deleted = run("delete", name, "--product-id", "rocket")
        assert deleted.exit_code == 0 and "rocket.png" in deleted.output
        after = json.loads(run("search", name, str(photo_dir / "rocket.png"), "--json").stdout)
        assert "rocket" not in [r["ProductId"] for r in after]

        shown = json.loads(run("instance", "show", name).stdout)
        assert shown["TotalCount"] == 8 and shown["ServiceType"] == "generic" and shown["Qps"] == 5

        distinct = json.loads(run("search", name, str(photo_dir / "chelsea.png"), "--json", "--num", "8",
                                  "--distinct-product-id", "--score-threshold", "0.1").stdout)
        assert len({r["ProductId"] for r in distinct}) == len(distinct) and all(r["Score"] >= 0.1 for r in distinct)
        listed = json.loads(run("list", name, "--filter", "int_attr != 1", "--json").stdout)
        assert [r["ProductId"] for r in listed] == sorted(r["ProductId"] for r in listed) and "Score" not in listed[0]
        assert run("delete", name).exit_code != 0  # neither --product-id nor --filter
        by_filter = run("delete", name, "--filter", "int_attr != 1")
        assert by_filter.exit_code == 0 and "deleted 8 picture(s)" in by_filter.output
        assert run("add", name, str(photo_dir / "coffee.png")).exit_code == 0
        assert run("instance", "clear", name, "--yes").exit_code == 0
        assert json.loads(run("instance", "show", name).stdout)["TotalCount"] == 0
    finally:
        service.delete_instance(name)


def test_errors_are_one_line_and_non_zero(run, instance, photo_dir, tmp_path):
    missing = run("search", "no-such-instance", str(photo_dir / "rocket.png"))
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines() == ["error: InvalidInstance: no instance named 'no-such-instance'"]

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    refused = run("add", instance.name, str(bad))
    assert refused.exit_code == 1 and "InvalidImage" in refused.stderr

    too_many = run("search", instance.name, str(photo_dir / "rocket.png"), "--num", "101")
    assert too_many.exit_code == 1 and "OverflowMaxReturnNum" in too_many.stderr

    usage = run("instance", "create", "x", "--type", "video")
    assert usage.exit_code == 2 and "video" in usage.stderr


def _postgres_processes_for(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_embedded_server_is_shared_and_stopped(tmp_path):
    """No IMAGESEARCH_DATABASE_URL: the CLI starts its own server, a second process adopts it,
    and when the last one exits no server process is left behind."""
    env = {k: v for k, v in os.environ.items() if k != "IMAGESEARCH_DATABASE_URL"}
    env["IMAGESEARCH_HOME"] = str(tmp_path / "home")
    pgdata = tmp_path / "home" / "pgdata"
    hold = (
        "import sys; from pathlib import Path; from imagesearch_pg.store.embedded import start_embedded_server;"
        f"s = start_embedded_server(Path({str(pgdata)!r})); print(s.get_pid(), s.get_uri(), flush=True);"
        "sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid_text, uri = holder.stdout.readline().split()
        pid = int(pid_text)
        upgraded = subprocess.run([sys.executable, "-m", "imagesearch_pg", "db", "upgrade"], env=env,
                                  capture_output=True, text=True, timeout=120)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"schema at {schema.head_revision()}" in upgraded.stdout
        assert psutil.pid_exists(pid), "the second process must not stop the server the first one uses"
        with psycopg.connect(uri) as conn:
            tuned = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('maintenance_work_mem', 'max_parallel_maintenance_workers')").fetchall())
        assert tuned == {"maintenance_work_mem": str(1024 * 1024), "max_parallel_maintenance_workers": "2"}
        assert [p.pid for p in _postgres_processes_for(pgdata) if p.ppid() == 1 or p.pid == pid][:1] == [pid]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    deadline = time.monotonic() + 20
    while _postgres_processes_for(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_processes_for(pgdata) == []


@pytest.mark.parametrize(
    "url,message",
    [("mysql://x@localhost/db", "must look like postgresql://"),
     ("postgresql://nobody@127.0.0.1:1/none", "the database is unavailable")],
)
def test_database_problems_are_one_line(url, message, tmp_path):
    result = CliRunner().invoke(cli, ["instance", "list"],
                                env={"IMAGESEARCH_DATABASE_URL": url, "IMAGESEARCH_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_keys_create_list_revoke(run):
    created = run("keys", "create", "--instance", "shop-a", "--instance", "shop-b", "--json")
    assert created.exit_code == 0, created.output
    pair = json.loads(created.stdout)
    assert pair["AccessKeyId"].startswith("LTAI") and len(pair["AccessKeySecret"]) >= 24
    listed = json.loads(run("keys", "list", "--json").stdout)
    mine = [k for k in listed if k["AccessKeyId"] == pair["AccessKeyId"]]
    assert mine == [{**mine[0], "Instances": "shop-a,shop-b", "State": "active"}]
    assert pair["AccessKeySecret"] not in run("keys", "list").stdout
    assert run("keys", "revoke", pair["AccessKeyId"]).exit_code == 0
    assert [k["State"] for k in json.loads(run("keys", "list", "--json").stdout) if k["AccessKeyId"] == pair["AccessKeyId"]] == ["revoked"]
    again = run("keys", "revoke", pair["AccessKeyId"])
    assert again.exit_code == 1 and "InvalidParameter" in again.output
    bad = run("keys", "create", "--instance", "no spaces allowed")
    assert bad.exit_code == 1 and "instance name" in bad.output


def test_duplicates_and_db_url(run, service, make_instance, photo_dir):
    made = make_instance()
    for key in ("rocket", "coffee"):
        service.add_image(made.name, f"{key}-1", "a.png", (photo_dir / f"{key}.png").read_bytes())
    service.add_image(made.name, "rocket-copy", "b.png", (photo_dir / "rocket.png").read_bytes())
    listed = run("duplicates", made.name, "--min-score", "0.98", "--json")
    assert listed.exit_code == 0, listed.output
    pairs = json.loads(listed.stdout)
    assert [(p["ProductIdA"], p["ProductIdB"]) for p in pairs] in ([("rocket-1", "rocket-copy")],
                                                                 [("rocket-copy", "rocket-1")])
    assert pairs[0]["Score"] > 0.999
    refused = run("duplicates", made.name, "--min-score", "1.5")
    assert refused.exit_code != 0 and "min_score must be a number from 0 to 1, got 1.5" in refused.output
    assert "no instance named 'nope'" in run("duplicates", "nope").output

    url = run("db", "url").stdout.strip()
    assert url.startswith("postgresql://")
    with psycopg.connect(url) as conn:  # libpq parses it, as psql does
        found = conn.execute("SELECT count(*) FROM imagesearch.instance_list WHERE name = %s", (made.name,))
        assert found.fetchone()[0] == 1


def test_instance_plan_and_renew(run, service, make_instance):
    made = make_instance(capacity=10)
    changed = run("instance", "plan", made.name, "--capacity", "50", "--qps", "4")
    assert changed.exit_code == 0 and "capacity 50, qps 4" in changed.output
    assert run("instance", "renew", made.name, "--days", "30").exit_code == 0
    assert service.describe_instance(made.name).expires_at is not None
    assert "expires never" in run("instance", "renew", made.name, "--never").output
    refused = {
        ("plan", made.name): "give a new capacity, a new QPS, or both",
        ("plan", made.name, "--capacity", "0"): "capacity must be an integer from 1",
        ("plan", made.name, "--qps", "100001"): "qps must be an integer from 1 to 100000",
        ("plan", "no-such-instance", "--qps", "2"): "no instance named 'no-such-instance'",
        ("renew", made.name, "--days", "0"): "days must be an integer from 1 to 3650",
        ("renew", made.name): "give --days N or --never",
        ("renew", made.name, "--days", "3", "--never"): "give --days N or --never",
    }
    for args, words in refused.items():
        result = run("instance", *args)
        assert result.exit_code != 0 and words in result.output, (args, result.output)
    assert (service.describe_instance(made.name).capacity, service.describe_instance(made.name).qps) == (50, 4)


def test_the_listings_people_read(run, service, make_instance, photo_dir, engine):
    """The README's other commands, as printed for people: `encoder list`, `db current`, `instance list`,
    and `delete --pic-name` (one picture of a product, the others kept)."""
    encoders = {row["Name"]: row for row in table_rows(run("encoder", "list").stdout)}
    for name in ("efficientnet-lite0", "efficientnet-lite0-gem", "efficientnet-lite0-gem-shape",
                 "efficientnet-lite0-gem-texture", "efficientnet-lite0-trademark"):
        assert encoders[name] == {"Name": name, "Dim": "1280", "Model": "built-in"}

    current = run("db", "current")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT version_num FROM imagesearch.alembic_version")).scalar_one()
    assert current.exit_code == 0 and current.stdout == f"{stored}\n" and stored == schema.head_revision()

    made = make_instance("generic", capacity=77, qps=3)
    for pic_name in ("a.png", "b.png"):
        service.add_image(made.name, "p1", pic_name, (photo_dir / "rocket.png").read_bytes())
    listed = run("instance", "list")
    assert listed.exit_code == 0 and listed.stdout.splitlines()[0].split() == [
        "Name", "ServiceType", "TotalCount", "Capacity", "Qps", "Region"]
    assert [row for row in table_rows(listed.stdout) if row["Name"] == made.name] == [
        {"Name": made.name, "ServiceType": "generic", "TotalCount": "2", "Capacity": "77", "Qps": "3", "Region": "local"}]
    [shown] = [i for i in json.loads(run("instance", "list", "--json").stdout) if i["Name"] == made.name]
    assert (shown["TotalCount"], shown["Capacity"], shown["Qps"], shown["ServiceType"]) == (2, 77, 3, "generic")

    deleted = run("delete", made.name, "--product-id", "p1", "--pic-name", "a.png")
    assert deleted.exit_code == 0 and deleted.stdout == "deleted 1 picture(s): a.png\n"
    assert service.check_image_exists(made.name, "p1", "a.png") is None
    assert service.check_image_exists(made.name, "p1", "b.png") is not None
    assert service.describe_instance(made.name).picture_count == 1
    none_left = run("delete", made.name, "--product-id", "p1", "--pic-name", "a.png")
    assert none_left.exit_code == 0 and none_left.stdout == "deleted 0 picture(s)\n"
