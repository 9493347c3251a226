"""`imagesearch serve` as a real process on a free port, for the tests that need the real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager


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


@contextmanager
def serving(env: dict, *, workers: int = 1, extra: tuple = ()):
    """The server running with ``env`` added to this process's environment; yields (process, port).
    Stopped with SIGTERM at the end; its output is on process.output (stdout, stderr) afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imagesearch_pg", "serve", "--port", str(port), "--workers", str(workers), *extra],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if health(port)[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"server did not come up: {process.communicate()[1][-3000:]}")
            time.sleep(0.3)
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
        process.output = process.communicate(timeout=60)
