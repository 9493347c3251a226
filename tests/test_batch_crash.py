"""Crash safety: a real `imagesearch worker` process killed with SIGKILL at random points of a real batch
task leaves it to the next worker, which resumes from the last checkpoint; the final database equals an
uninterrupted run's, row by row (no line lost, none applied twice with another result, the count right)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.store.tables import partition
from imagesearch_pg.tasks.batch_import import CHUNK_LINES
from tests.batch_folders import errors, picture, run_to_end, write_folder
from tests.task_runs import claim, run_claimed, run_now

pytestmark = pytest.mark.slow
LEASE = 2.0  # the killed worker's lease: how long the next one waits


def meta_lines(count: int) -> tuple[list, dict]:
    """ADDs (some labelled, some re-adding a key), DELETEs of one picture and of a product, bad lines."""
    rng = random.Random(13)
    lines, pictures = [], {}
    for i in range(count):
        roll = rng.random()
        if roll < 0.08 and i > 10:
            lines.append({"OperationType": "DELETE", "ProductId": f"p{rng.randrange(i) // 3}"})
        elif roll < 0.14 and i > 10:
            lines.append({"OperationType": "DELETE", "ProductId": f"p{rng.randrange(i) // 3}", "PicName": f"{rng.randrange(i)}.jpg"})
        elif roll < 0.18:
            lines.append({"OperationType": "ADD", "ProductId": f"p{i // 3}", "PicName": f"absent{i}.jpg"})
        elif roll < 0.20:
            lines.append("{not json")
        else:
            key = rng.randrange(i) if roll < 0.28 and i else i  # sometimes the same key again
            lines.append({"OperationType": "ADD", "ProductId": f"p{key // 3}", "PicName": f"{key}.jpg",
                          "IntAttr": i, **({"CategoryId": 3} if i % 5 == 0 else {})})
            pictures[f"{key}.jpg"] = picture(i)  # a later ADD of the key reads the newer picture
    return lines, pictures


def snapshot(engine, service, name: str) -> dict:
    instance = service.instances.current(name)
    part = partition(instance.id)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(part).order_by(part.c.key_digest)).mappings().all()
    return {(r["product_id"], r["pic_name"]): {k: v for k, v in r.items()
                                               if k not in ("created_at", "updated_at", "instance_id")} for r in rows}


def worker_process(settings, engine) -> subprocess.Popen:
    env = {**os.environ, "IMAGESEARCH_HOME": str(settings.home),
           "IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    return subprocess.Popen([sys.executable, "-m", "imagesearch_pg", "worker", "--lease-seconds", str(LEASE)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _line(service, task) -> int:
    return (service.tasks.get(task.id).checkpoint or {}).get("line", 0)


def _wait_past(service, task, line: int, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    # Queued too: a worker just started may not have claimed the task yet (it loads its models first).
    while _line(service, task) <= line and service.tasks.get(task.id).state in ("queued", "running"):
        assert time.monotonic() < deadline and worker.poll() is None, "the worker stopped making progress"
        time.sleep(0.05)


def test_killed_workers_leave_the_same_database_as_a_clean_run(service, make_instance, settings, engine, tmp_path):
    location = f"crash-{os.getpid()}"
    service.storage.add(location, str(tmp_path))
    try:
        lines, pictures = meta_lines(400)  # about 7 chunks
        path = write_folder(tmp_path, lines, pictures)
        clean = make_instance("product").name
        clean_task = run_to_end(service, service.tasks.submit_import(clean, location, path))
        crashed = make_instance("product").name
        task = service.tasks.submit_import(crashed, location, path)
        seed = int(time.time())
        print(f"kill points drawn with random.Random({seed})")  # shown with any failure below
        rng = random.Random(seed)
        # Kill points: once early (loading, counting, inside the first chunk), then past a random line of three
        # different chunks (a checkpoint every CHUNK_LINES), each a random moment after the checkpoint passed
        # it (inside the next chunk's reads or write): three in one chunk would all be passed by its checkpoint.
        chunks = sorted(rng.sample(range(len(lines) // CHUNK_LINES - 1), 3))
        targets = [0, *(chunk * CHUNK_LINES + rng.randrange(1, CHUNK_LINES) for chunk in chunks)]
        kills = []
        for target in targets:
            worker = worker_process(settings, engine)
            if target == 0:
                time.sleep(rng.uniform(0.5, 2.5))
            else:
                _wait_past(service, task, target, worker)
                time.sleep(rng.uniform(0.0, 1.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills.append(_line(service, task))
            if service.tasks.get(task.id).state not in ("queued", "running"):
                break  # it finished before this kill
            time.sleep(LEASE)  # the dead worker's lease runs out
        final = run_to_end(service, service.tasks.get(task.id))
        assert len({line for line in kills if 0 < line < len(lines)}) >= 2, (kills, targets, f"seed {seed}")
    finally:
        service.storage.remove(location)

    assert (final.state, final.error_message) == (clean_task.state, clean_task.error_message)
    assert errors(service, final) == errors(service, clean_task)
    for name in ("total", "done", "failed", "added", "replaced", "deleted"):
        assert final.progress[name] == clean_task.progress[name], name
    expected, got = snapshot(engine, service, clean), snapshot(engine, service, crashed)
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        for column, value in row.items():
            if column in ("embedding", "silhouette") and value is not None:
                assert np.allclose(np.asarray(got[key][column]), np.asarray(value), atol=1e-6), (key, column)
            else:
                assert got[key][column] == value, (key, column)
    assert service.describe_instance(crashed).picture_count == len(expected)


def test_a_checkpoint_every_64_lines_is_written_with_those_lines(service, make_instance, engine, tmp_path):
    """README: the checkpoint comes every 64 lines, in the transaction that holds those lines' pictures and
    failed lines. The database refuses the task's second checkpoint (as a server going away would answer):
    what is left is the first 64 lines, whole, and the task resumes from there."""
    location = f"chunks-{os.getpid()}"
    service.storage.add(location, str(tmp_path))
    name = make_instance("generic").name
    lines = [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"{i}.jpg", "Crop": False} for i in range(150)]
    for broken in (9, 99):  # a failed line in the first chunk and one in the second (line numbers 10 and 100)
        lines[broken] = "{not json"
    path = write_folder(tmp_path, lines, {f"{i}.jpg": picture(i, 100) for i in range(150)})
    task = service.tasks.submit_import(name, location, path)
    trigger = f"refuse_second_checkpoint_{os.getpid()}"  # unique per run: the database may be shared
    refuse_second = f"""
        CREATE FUNCTION public.{trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = {task.id} AND OLD.checkpoint IS NOT NULL AND NEW.checkpoint IS DISTINCT FROM OLD.checkpoint THEN
                RAISE EXCEPTION 'the test refuses a second checkpoint' USING ERRCODE = '57P01';
            END IF;
            RETURN NEW;
        END $$"""
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(refuse_second))
            conn.execute(sa.text(f"CREATE TRIGGER {trigger} BEFORE UPDATE ON imagesearch.tasks "
                                 f"FOR EACH ROW EXECUTE FUNCTION public.{trigger}()"))
        try:
            run_claimed(service, claim(service, task))
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TRIGGER {trigger} ON imagesearch.tasks"))
                conn.execute(sa.text(f"DROP FUNCTION public.{trigger}()"))
        paused = service.tasks.get(task.id)
        assert (paused.state, paused.lease_owner) == ("running", None)  # given back, to resume later
        assert paused.checkpoint["line"] == 64 and paused.progress["done"] == 64
        assert (paused.progress["added"], paused.progress["failed"]) == (63, 1)
        assert service.describe_instance(name).picture_count == 63
        with engine.connect() as conn:
            stored = conn.execute(sa.select(partition(service.instances.current(name).id).c.product_id)).scalars().all()
        assert sorted(stored, key=lambda key: int(key[1:])) == [f"p{i}" for i in range(64) if i != 9]
        assert [e["line"] for e in errors(service, paused)] == [10]

        with engine.begin() as conn:  # its pause (after an outage) ends now rather than in 10 s
            conn.execute(sa.text("UPDATE imagesearch.tasks SET lease_expires_at = now() - interval '1 second' "
                                 "WHERE id = :id"), {"id": task.id})
        final = run_now(service, paused)
        assert (final.state, final.progress["done"], final.progress["added"], final.progress["failed"]) == (
            "partially_failed", 150, 148, 2)
        assert [e["line"] for e in errors(service, final)] == [10, 100]
        assert service.describe_instance(name).picture_count == 148
    finally:
        service.storage.remove(location)
