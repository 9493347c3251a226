"""The HTTP app: the health endpoint in-process, and `imagesearch serve` as a real gunicorn server."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from flask_app import create_app
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.store import schema
from imagesearch_pg.store.database import Database, create_engine
from tests.serving import health, serving


@pytest.fixture
def client(settings, service):
    return create_app({"SETTINGS": settings, "SERVICE": service, "TESTING": True}).test_client()


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["schema"] == schema.head_revision()
    assert body["database"] in ("embedded", "external")


@pytest.fixture
def unreachable_client(settings, encoders):
    """The app over a service whose database refuses connections (nothing listens on port 1)."""
    database = Database(create_engine("postgresql://nobody@127.0.0.1:1/none"))
    service = ImageSearch(database, encoders, settings)
    yield create_app({"SETTINGS": settings, "SERVICE": service, "INSECURE_NO_AUTH": True, "TESTING": True}).test_client()
    service.close()


def test_an_unreachable_database_is_a_503_not_a_bug(unreachable_client):
    response = unreachable_client.post("/", data={"InstanceName": "shop"}, headers={"x-acs-action": "Detail"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["Code"] == "ServiceUnavailable" and "database is unavailable" in body["Message"]
    health = unreachable_client.get("/health")
    assert health.status_code == 503 and health.get_json()["database"] == "unreachable"


def test_the_library_never_imports_the_http_layer():
    # Every module of imagesearch_pg, the CLI included; `serve` reaches flask_app by entry point only.
    code = (
        "import sys, pkgutil, importlib, imagesearch_pg\n"
        "for m in pkgutil.walk_packages(imagesearch_pg.__path__, 'imagesearch_pg.'):\n"
        "    if m.name != 'imagesearch_pg.__main__': importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'flask_app'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_serving_process_never_imports_onnxruntime():
    # gunicorn forks workers from it; onnxruntime imported before a fork makes the children hang on exit.
    code = "import sys, imagesearch_pg.cli, flask_app.server; print('onnxruntime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_serve_runs_gunicorn_workers(engine, settings, service):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=2) as (server, port):
        assert health(port) == (200, {"status": "ok", "database": "external", "schema": schema.head_revision()})

        # The protocol through the workers, signed with a key made here (same home, same secret key file),
        # and the metrics of all workers in one scrape.
        from alibabacloud_imagesearch20201214 import models as sdk
        from alibabacloud_imagesearch20201214.client import Client
        from alibabacloud_tea_openapi import utils_models

        key_id, secret = service.access_keys.create()
        client = Client(utils_models.Config(access_key_id=key_id, access_key_secret=secret,
                                            endpoint=f"127.0.0.1:{port}", protocol="http"))
        instance = f"gunicorn-{port}"
        service.create_instance(instance, "generic")
        try:
            for _ in range(6):
                assert client.detail(sdk.DetailRequest(instance_name=instance)).body.instance.name == instance
        finally:
            service.delete_instance(instance)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped = response.read().decode()
        counted = [line for line in scraped.splitlines()
                   if line.startswith('imagesearch_requests_total{action="Detail",code="OK"}')]
        assert counted and float(counted[0].split()[-1]) == 6.0, scraped[:2000]
        assert "imagesearch_request_seconds_bucket" in scraped
    stdout, stderr = server.output
    assert server.returncode == 0, stderr[-2000:]
    assert '"GET /health HTTP/1.1" 200' in stdout  # the access log
    assert f"listening on http://127.0.0.1:{port} (2 workers)" in stderr  # the start-up line
    assert f"web console: http://127.0.0.1:{port}/ (" in stderr
