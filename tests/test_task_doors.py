"""The doors of background tasks: `imagesearch storage`, `batch`, `export` through click (on the test
database, as tests/test_cli.py), `imagesearch worker` as a real process stopped by SIGTERM mid-task, and
`imagesearch serve` running tasks with the worker it starts; each with its hostile cases."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from click.testing import CliRunner

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.cli import cli
from imagesearch_pg.tasks.batch_import import CHUNK_LINES
from tests.batch_folders import errors, exported, picture, run_to_end, wait_for, write_folder
from tests.serving import serving
from tests.task_runs import run_now
from tests.test_cli import table_rows

SDK_FIELDS = {"Id", "Status", "Code", "Msg", "ErrorUrl", "BucketName", "Path", "CallbackAddress", "UtcCreate",
              "UtcModified"}  # IncreaseList's item, as the SDK's model reads it
_names = itertools.count()


@pytest.fixture
def env(engine, settings) -> dict:
    return {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "IMAGESEARCH_HOME": str(settings.home)}


@pytest.fixture
def run(env):
    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def location(run, service, tmp_path):
    """A local storage location added with `imagesearch storage add`: (its name, its folder)."""
    name = f"cli-{os.getpid()}-{next(_names)}"
    added = run("storage", "add", name, str(tmp_path))
    assert added.exit_code == 0 and added.stdout == f"added {name}: {tmp_path.as_uri()}\n"
    yield name, tmp_path
    service.storage.remove(name)


def one_error(result, code: str = "InvalidParameter", says: str = "") -> None:
    """The command failed with exit status 1 and one line on stderr: error: CODE: ...says..."""
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {code}: ") and says in line, line


# ---- storage and batch -----------------------------------------------------------------------------------


def test_storage_and_a_batch_through_the_command(run, service, shop, location):
    name, root = location
    listed = {row["Name"]: row for row in json.loads(run("storage", "list", "--json").stdout)}
    assert listed[name] == {"Name": name, "Url": root.as_uri(), "Endpoint": None, "Region": None, "Profile": None,
                            "Instances": "*"}
    path = write_folder(root, [{"OperationType": "ADD", "ProductId": "a", "PicName": "1.jpg", "IntAttr": 4},
                               {"OperationType": "ADD", "ProductId": "b", "PicName": "2.jpg"}, "{broken"],
                        {"1.jpg": picture(1)})

    ran = run("batch", "run", shop, name, path, "--wait", "--json")
    assert ran.exit_code == 0, ran.output
    item = json.loads(ran.stdout)  # one JSON object, nothing else on stdout
    assert SDK_FIELDS - {"CallbackAddress"} <= set(item)  # a field without a value is left out
    assert (item["Status"], item["Code"], item["BucketName"], item["Path"], item.get("CallbackAddress")) == (
        "PARTIALLY_FAILED", "LinesFailed", name, path, None)
    assert "2 of 3 lines failed" in item["Msg"] and f"/downloads/errors/{item['Id']}?" in item["ErrorUrl"]
    assert item["UtcModified"] >= int(item["UtcCreate"]) > 1.7e12 and item["Progress"]["done"] == 3
    [again] = [i for i in json.loads(run("batch", "list", shop, "--json").stdout) if i["Id"] == item["Id"]]
    # a link is signed when it is listed, so its expiry may move on by a second between the two calls
    link = lambda url: url.split("?")[0]
    assert link(again.pop("ErrorUrl")) == link(item.pop("ErrorUrl")) and again == item
    report = run("batch", "errors", str(item["Id"]))
    assert report.exit_code == 0
    assert [json.loads(line) for line in report.stdout.splitlines()] == errors(service, service.tasks.get(item["Id"]))
    second, third = map(json.loads, report.stdout.splitlines())
    assert (second["line"], third["line"], third["content"]) == (2, 3, "{broken")
    assert "'2.jpg'" in second["reason"] and third["reason"].startswith("the line is not JSON")

    (root / path.lstrip("/") / "2.jpg").write_bytes(picture(2))
    resubmitted = run("batch", "resubmit", str(item["Id"]), "--wait", "--json")
    assert resubmitted.exit_code == 0, resubmitted.output
    redone = json.loads(resubmitted.stdout)
    assert redone["Id"] != item["Id"] and (redone["Status"], redone["Msg"]) == (
        "PARTIALLY_FAILED", "1 of 3 lines failed; the error report (ErrorUrl) lists them")
    assert service.describe_instance(shop).picture_count == 2

    good = write_folder(root, [{"OperationType": "DELETE", "ProductId": "b"}], {})
    succeeded = run("batch", "run", shop, name, good, "--wait", "--json")
    assert succeeded.exit_code == 0
    assert {k: json.loads(succeeded.stdout).get(k) for k in ("Status", "Code", "Msg", "ErrorUrl")} == {
        "Status": "SUCCEEDED", "Code": "0", "Msg": "success", "ErrorUrl": None}
    (root / "empty").mkdir()
    failed = run("batch", "run", shop, name, "/empty", "--wait", "--json")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["Code"] == "NoIncrementMeta"
    shown = run("batch", "run", shop, name, good, "--wait")  # without --json: a line a person reads
    assert shown.exit_code == 0 and shown.stdout.endswith("SUCCEEDED (1/1 lines) success\n")
    assert shown.stdout.count("\n") == 1 and "task" in shown.stderr  # the progress is on stderr


def test_batch_list_shows_people_the_lines_done_and_the_pictures_per_second(run, service, shop, location):
    """`batch list INSTANCE` without --json: lines done / total and pictures per second (README)."""
    name, root = location
    lines = [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"{i}.jpg", "Crop": False} for i in range(3)]
    path = write_folder(root, [*lines, "{broken"], {f"{i}.jpg": picture(i) for i in range(3)})
    task = service.tasks.submit_import(shop, name, path)

    def listed() -> dict:
        shown = run("batch", "list", shop)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.splitlines()[0].split() == ["Id", "Status", "BucketName", "Path", "Lines", "Pictures/s",
                                                        "Msg"]
        [row] = [row for row in table_rows(shown.stdout) if row["Id"] == str(task.id)]
        return row

    queued = listed()
    assert (queued["Status"], queued["BucketName"], queued["Path"], queued["Lines"], queued["Pictures/s"]) == (
        "QUEUED", name, path, "0/?", "")  # not counted yet
    final = run_now(service, task)
    done = listed()
    assert (done["Status"], done["Lines"]) == ("PARTIALLY_FAILED", "4/4")
    assert done["Pictures/s"] == str(final.progress["pictures_per_second"]) and float(done["Pictures/s"]) > 0
    assert done["Msg"] == "1 of 4 lines failed; the error report (ErrorUrl) lists them"


def test_the_batch_command_refuses_with_one_line_and_queues_nothing(run, service, shop, location):
    name, root = location
    before = service.tasks.list_imports(shop)[0]
    one_error(run("batch", "run", "no-such-instance", name, "/"), "InvalidInstance", "no instance named")
    one_error(run("batch", "run", shop, "no-such-location", "/"), says="unknown storage location 'no-such-location'")
    theirs = f"{name}-theirs"  # a location another instance only may read is unknown to this one
    assert run("storage", "add", theirs, str(root), "--instance", "someone-else").exit_code == 0
    try:
        one_error(run("batch", "run", shop, theirs, "/"), says=f"unknown storage location '{theirs}'")
    finally:
        service.storage.remove(theirs)
    one_error(run("batch", "run", shop, name, "/../etc"), says="must not contain '..' segments")
    one_error(run("batch", "run", shop, name, "relative"), says="Path must start with '/'")
    one_error(run("batch", "run", shop, name, "/", "--callback", "http://127.0.0.1:9/hook", "--wait"),
              says="resolves to 127.0.0.1, a loopback address")
    one_error(run("batch", "run", shop, name, "/", "--callback", "ftp://example.com/"), says="http or https")
    assert service.tasks.list_imports(shop)[0] == before
    one_error(run("batch", "list", "no-such-instance"), "InvalidInstance")
    one_error(run("batch", "list", shop, "--page-size", "101"), says="PageSize")
    one_error(run("batch", "errors", str(10**12)), says=f"there is no task {10**12}")
    one_error(run("batch", "resubmit", str(10**12)), says="there is no task")
    export = service.tasks.submit_export(shop)
    one_error(run("batch", "errors", str(export.id)), says=f"task {export.id} is an export, not a batch task")
    run_to_end(service, export)
    one_error(run("batch", "resubmit", str(export.id)), says=f"task {export.id} is an export, not a batch task")
    assert service.tasks.list_exports(shop)[0] == 1  # nothing resubmitted
    assert run("batch", "run", shop).exit_code == 2  # click's usage error


# ---- export ----------------------------------------------------------------------------------------------


def test_export_through_the_command(run, service, shop, tmp_path):
    service.add_image(shop, "p1", "a.jpg", picture(1), attributes=Attributes(int_attr=1, custom_content="c"))
    service.add_image(shop, "p2", "b.jpg", picture(2), attributes=Attributes(str_attr4="日本"))
    target = tmp_path / "out" / "meta.jsonl"
    target.parent.mkdir()
    written = run("export", shop, "--wait", "-o", str(target))
    assert written.exit_code == 0, written.output
    assert written.stdout == f"export {written.stdout.split()[1]} SUCCEEDED 2 pictures exported -> {target}\n"
    assert [json.loads(line) for line in target.read_text().splitlines()] == exported(service, shop)

    to_stdout = run("export", shop, "--wait", "-o", "-")
    assert to_stdout.exit_code == 0 and to_stdout.stderr == ""
    assert [json.loads(line) for line in to_stdout.stdout.splitlines()] == exported(service, shop)

    before = service.tasks.list_exports(shop)[0]
    usage = run("export", shop, "-o", str(tmp_path / "x.jsonl"))
    assert usage.exit_code == 2 and "-o needs --wait" in usage.stderr
    one_error(run("export", "no-such-instance", "--wait"), "InvalidInstance")
    assert service.tasks.list_exports(shop)[0] == before and not (tmp_path / "x.jsonl").exists()


# ---- the worker and the server as processes --------------------------------------------------------------


def long_folder(service, root, count: int = 256) -> tuple[str, str]:
    """A location over ``root`` with a folder of ``count`` ADDs: (location, Path)."""
    name = f"proc-{os.getpid()}-{next(_names)}"
    service.storage.add(name, str(root))
    lines = [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"{i}.jpg", "Crop": False} for i in range(count)]
    return name, write_folder(root, lines, {f"{i}.jpg": picture(i, 100) for i in range(count)})


def test_a_worker_process_gives_its_task_back_on_sigterm(env, service, shop, tmp_path):
    location, path = long_folder(service, tmp_path)
    try:
        task = service.tasks.submit_import(shop, location, path)
        worker = subprocess.Popen([sys.executable, "-m", "imagesearch_pg", "worker", "--lease-seconds", "2"],
                                  env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: worker.poll() is not None or (seen := service.tasks.get(task.id)).finished_at
                     or (seen.checkpoint or {}).get("line", 0) >= 64, 120, "a checkpoint")
            assert worker.poll() is None and service.tasks.get(task.id).finished_at is None, \
                worker.stderr.read().decode()[-3000:] if worker.poll() is not None else service.tasks.get(task.id)
            at_sigterm = service.tasks.get(task.id).checkpoint["line"]
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)  # only against a hang
        finally:
            if worker.poll() is None:
                worker.kill()
            stderr = worker.stderr.read().decode()
        assert worker.returncode == 128 + signal.SIGTERM, stderr[-2000:]
        given_back = service.tasks.get(task.id)
        assert (given_back.state, given_back.lease_owner, given_back.attempts) == ("running", None, 1)
        # Given back at its next step: no checkpoint once the stop is seen, so at most the chunk being committed
        # as the signal came (and one more, committed between the read above and the signal) got in after it.
        assert at_sigterm <= given_back.checkpoint["line"] <= at_sigterm + 2 * CHUNK_LINES, (at_sigterm, given_back)
        assert given_back.checkpoint["line"] < 256
        final = run_to_end(service, given_back)  # another worker, at once: no lease to wait for
        assert (final.state, final.progress["added"], final.progress["replaced"]) == ("succeeded", 256, 0)
        assert service.describe_instance(shop).picture_count == 256
    finally:
        service.storage.remove(location)


@pytest.mark.parametrize("option, value, says", [
    ("--concurrency", "0", "Invalid value for --concurrency: must be at least 1"),
    ("--lease-seconds", "0", "Invalid value for --lease-seconds: must be from 1 to 3600 seconds"),
    ("--lease-seconds", "86400", "must be from 1 to 3600 seconds"),
    ("--concurrency", "many", "'many' is not a valid integer"),
])
def test_the_worker_refuses_bad_options(run, option, value, says):
    refused = run("worker", option, value)
    assert refused.exit_code == 2 and says in refused.stderr


def test_serve_runs_tasks_with_its_own_worker_and_stops_it(env, service, shop, tmp_path):
    location, path = long_folder(service, tmp_path, 64)
    try:
        with serving(env, workers=1) as (server, _):
            children = psutil.Process(server.pid).children(recursive=True)
            assert any("worker" in child.cmdline() for child in children)
            task = service.tasks.submit_import(shop, location, path)
            final = wait_for(lambda: (seen := service.tasks.get(task.id)).finished_at and seen, 120, "the task's end")
            assert (final.state, final.progress["added"]) == ("succeeded", 64)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [] and len(gone) == len(children)
    finally:
        service.storage.remove(location)
