"""The suite's PostgreSQL server, chosen by IMAGESEARCH_TEST_POSTGRES:

- ``embedded`` (the default): the server in IMAGESEARCH_DATABASE_URL, else (an empty URL) a fresh embedded
  server under the suite's IMAGESEARCH_HOME;
- ``container``: a container started by testcontainers from IMAGESEARCH_TEST_POSTGRES_IMAGE (by default the
  public pgvector image; tests/build-postgres-image.sh builds one where no registry is reachable), on the
  host's network with the server listening on loopback alone, removed when the session ends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from testcontainers.community.postgres import PostgresContainer

from imagesearch_pg.store.embedded import TUNING
from tests.serving import free_port

DEFAULT_IMAGE = "pgvector/pgvector:pg17"
MAINTENANCE_WORK_MEM = TUNING["maintenance_work_mem"]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The suite's IMAGESEARCH_DATABASE_URL ("" for the embedded server)."""
    mode = os.environ.get("IMAGESEARCH_TEST_POSTGRES", "embedded")
    if mode == "embedded":
        yield os.environ.get("IMAGESEARCH_DATABASE_URL", "")
    elif mode != "container":
        raise pytest.UsageError(f"IMAGESEARCH_TEST_POSTGRES is 'embedded' or 'container', not {mode!r}")
    elif os.environ.get("IMAGESEARCH_DATABASE_URL"):
        raise pytest.UsageError("IMAGESEARCH_TEST_POSTGRES=container starts its own server: "
                                "unset IMAGESEARCH_DATABASE_URL")
    else:
        with postgres_container(os.environ.get("IMAGESEARCH_TEST_POSTGRES_IMAGE", DEFAULT_IMAGE)) as url:
            yield url


@contextmanager
def postgres_container(image: str) -> Iterator[str]:
    """A PostgreSQL container of ``image`` (the official image's POSTGRES_* conventions); yields its URL."""
    # A role not named "imagesearch": for one that is, the default search_path ("$user", public) finds the
    # product's schema before public.
    user, database, password, port = "postgres", "suite", secrets.token_hex(16), free_port()
    container = (
        PostgresContainer(image, username=user, password=password, dbname=database)
        # HNSW builds in memory, as on the embedded server; pgvector's parallel build keeps it in /dev/shm.
        .with_kwargs(network_mode="host", shm_size="2g")
        .with_env("PGPORT", str(port))  # the server's port, and the one testcontainers' readiness check uses
        .with_command(f"postgres -c listen_addresses=127.0.0.1 -c maintenance_work_mem={MAINTENANCE_WORK_MEM}")
    )
    container.ports.clear()  # PostgresContainer publishes 5432; a container on the host's network publishes none
    with container:
        yield f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
