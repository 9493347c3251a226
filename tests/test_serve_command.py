"""`imagesearch serve` as the README describes it: 127.0.0.1:8080 and 2 gunicorn workers unless told otherwise,
and `--insecure-no-auth` accepting unsigned requests and saying so loudly in the log. The defaults are read
from the command as click parses it (starting on 8080 itself would clash with other servers on this
machine) and seen in one real start that names only its port."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from imagesearch_pg.cli import cli
from tests.serving import serving

WARNING = "AUTHENTICATION IS OFF (--insecure-no-auth)"


def test_serve_defaults_to_loopback_port_8080_and_2_workers():
    parsed = cli.commands["serve"].make_context("serve", []).params
    assert {name: parsed[name] for name in ("host", "port", "workers", "dev", "insecure_no_auth")} == {
        "host": "127.0.0.1", "port": 8080, "workers": 2, "dev": False, "insecure_no_auth": False}


@pytest.fixture(scope="module")
def insecure(engine, settings):
    """`imagesearch serve --port P --task-workers 0 --insecure-no-auth`: host and workers left to their
    defaults (no task worker: it would claim other tests' tasks). Yields (process, port)."""
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=None, extra=("--task-workers", "0", "--insecure-no-auth")) as (process, port):
        yield process, port


def unsigned_detail(address: str, instance: str) -> requests.Response:
    return requests.post(f"http://{address}/", data={"InstanceName": instance},
                         headers={"x-acs-action": "Detail", "x-acs-version": "2020-12-14"}, timeout=30)


def test_insecure_no_auth_serves_unsigned_requests_and_says_so(insecure, server, production_server, shop):
    process, port = insecure
    answer = unsigned_detail(f"127.0.0.1:{port}", shop)
    assert answer.status_code == 200 and answer.json()["Instance"]["Name"] == shop, answer.text
    stderr = process.logs.read()[1]
    assert [line for line in stderr.splitlines() if WARNING in line and "level=warning" in line], stderr[-3000:]

    refused = unsigned_detail(server, shop)  # the same request to a server started without the flag
    assert (refused.status_code, refused.json()["Code"]) == (403, "SignatureDoesNotMatch"), refused.text
    assert WARNING not in production_server[0].logs.read()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (the kernel's tables: IPv4 and IPv6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                assert len(address) == width
                found.add(address)
    return found


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while the table was read
            continue
        if int(fields[1]) == pid:  # the field after the state: the parent's pid
            out.append(int(stat.parent.name))
    return out


def test_a_start_naming_only_its_port_listens_on_loopback_alone_with_2_workers(insecure):
    process, port = insecure
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, in the kernel's byte order; no other address
    stderr = process.logs.read()[1]
    assert f"imagesearch-pg listening on http://127.0.0.1:{port} (2 workers)" in stderr, stderr[-3000:]
    # That line names the count the arbiter was given; the process table shows it forked that many (one after
    # another as it starts: the second may follow the first one's first answer by a moment).
    deadline = time.monotonic() + 60
    while len(workers := children(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == 2, workers


def test_a_reload_replaces_the_workers_and_they_serve(insecure, shop):
    """SIGHUP (gunicorn's reload, what a service manager's reload sends): the old workers exit and new ones
    answer the API and /metrics. A worker's exit must leave the master's shared state (the metrics folder,
    the database handle) alone."""

    process, port = insecure
    before = set(children(process.pid))
    os.kill(process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 120
    while (len(now := set(children(process.pid))) != 2 or now & before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(now) == 2 and not now & before, (before, now)
    for _ in range(4):  # new connections: each may reach either new worker
        answer = unsigned_detail(f"127.0.0.1:{port}", shop)
        assert answer.status_code == 200, answer.text
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 200
    assert "Traceback" not in process.logs.read()[1]
