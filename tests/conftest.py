"""Shared fixtures: a real PostgreSQL (the one in IMAGESEARCH_DATABASE_URL, else a fresh embedded server
in a temporary home), migrated to head, and the service layer over it with the real default encoder."""

from __future__ import annotations

import itertools
import os

import pytest

from imagesearch_pg.config import Settings
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.service.access_keys import AccessKeys
from imagesearch_pg.store import schema
from imagesearch_pg.store.database import Database, create_engine
from imagesearch_pg.vision.encoders import EncoderRegistry
from tests.databases import database_url  # noqa: F401
from tests.s3_server import s3_server  # noqa: F401
from tests.serving import serving
from tests.sql_logins import Logins


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    # The encoder cache is shared across test runs to avoid rebuilding the ONNX model every time.
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def settings(home, database_url) -> Settings:
    return Settings.from_env({
        "IMAGESEARCH_HOME": str(home),
        "IMAGESEARCH_DATABASE_URL": database_url,
    })


@pytest.fixture(scope="session")
def database(settings):
    database = Database.connect(settings)
    schema.upgrade(database.engine)
    yield database
    database.close()


@pytest.fixture(scope="session")
def engine(database):
    """The tests' own statements, as a user's: the server's default search_path (the service's connections
    search pg_catalog alone, store/database.py)."""
    own = create_engine(database.engine.url, search_path=None)
    yield own
    own.dispose()


@pytest.fixture(scope="session")
def encoders(settings) -> EncoderRegistry:
    return EncoderRegistry(settings.model_cache, settings.onnx_threads)


@pytest.fixture(scope="session")
def service(database, encoders, settings) -> ImageSearch:
    return ImageSearch(database, encoders, settings)


@pytest.fixture(scope="module")
def logins(engine):
    """LOGIN roles made with ``logins.make(kind, *granted_roles)``, dropped after the module."""
    made = Logins(engine)
    yield made
    made.drop_all()


_names = itertools.count()


@pytest.fixture
def make_instance(service):
    """Create instances with unique names; they are deleted after the test."""
    created = []

    def make(service_type: str = "generic", **options):
        name = f"t{os.getpid()}-{next(_names)}"
        created.append(name)
        return service.create_instance(name, service_type, **options)

    yield make
    for name in created:
        service.delete_instance(name)


@pytest.fixture
def instance(make_instance):
    return make_instance("generic")


@pytest.fixture
def shop(make_instance):
    return make_instance("generic").name


# ---- the HTTP API as users run it: `imagesearch serve` (gunicorn and the front) on a free port, once per run ----


@pytest.fixture(scope="session")
def production_server(engine, settings):
    """The server process, sharing the tests' database and home (so it reads the keys the tests make).
    Its task worker is off: the tests that need one run their own."""
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=2, extra=("--task-workers", "0")) as (process, port):
        yield process, port


@pytest.fixture(scope="session")
def server(production_server) -> str:
    """host:port of the production server."""
    return f"127.0.0.1:{production_server[1]}"


@pytest.fixture
def server_logs(production_server):
    """Reads what the server logged since the test began: ``server_logs()`` -> (access log, error log)."""
    logs = production_server[0].logs
    since = logs.sizes()
    return lambda: logs.read(since)


@pytest.fixture(scope="session")
def keys(service) -> AccessKeys:
    return service.access_keys


@pytest.fixture(scope="session")
def credentials(keys):
    return keys.create()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (rep_setup, rep_call ...), for fixtures that act on failures
    (tests/browser.py saves a screenshot)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
