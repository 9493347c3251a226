"""`imagesearch serve` as a real process on a free port: gunicorn and the front (flask_app/front.py), as users
run it. The suite's protocol tests share one such server (the `server` fixture in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class ServerLogs:
    """What the server wrote to stdout (the access log) and stderr (everything else). Files, not pipes: a
    pipe nobody reads would stop a long-running server once its buffer fills."""

    def __init__(self, folder: Path):
        self.out_path, self.err_path = folder / "stdout", folder / "stderr"

    def sizes(self) -> tuple[int, int]:
        return self.out_path.stat().st_size, self.err_path.stat().st_size

    def read(self, since: tuple[int, int] = (0, 0)) -> tuple[str, str]:
        return tuple(path.read_bytes()[start:].decode(errors="replace")
                     for path, start in zip((self.out_path, self.err_path), since))


@contextmanager
def serving(env: dict, *, workers: int | None = 1, extra: tuple = (),
            command: tuple = (sys.executable, "-m", "imagesearch_pg"), cwd: Path | None = None):
    """The server running with ``env`` added to this process's environment; yields (process, port).
    ``workers`` None leaves their number to serve's default; ``command`` runs imagesearch (an installed
    copy's script, say). Stopped with SIGTERM at the end; process.logs holds what it wrote, process.output is
    (stdout, stderr) after it stopped."""
    port = free_port()
    options = ("--port", str(port), *(() if workers is None else ("--workers", str(workers))), *extra)
    with tempfile.TemporaryDirectory(prefix="imagesearch-serve-") as folder:
        logs = ServerLogs(Path(folder))
        with open(logs.out_path, "wb") as out, open(logs.err_path, "wb") as err:
            process = subprocess.Popen([*command, "serve", *options], env={**os.environ, **env}, cwd=cwd,
                                       stdout=out, stderr=err)
        process.logs = logs
        try:
            _wait_until_healthy(process, port, logs)
            yield process, port
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.output = logs.read()


def _wait_until_healthy(process: subprocess.Popen, port: int, logs: ServerLogs, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if health(port)[0] == 200:
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"server did not come up: {logs.read()[1][-3000:]}")
        time.sleep(0.3)
