"""Bearer links are never logged: the access log of `imagesearch serve` (flask_app/front.py) and of the
development server (flask_app/server.py) show a download's path, never its signature or any query value."""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from flask_app import create_app
from flask_app.front import logged_target
from flask_app.server import RequestHandler
from imagesearch_pg.store.tables import tasks
from tests.serving import serving


def _task_with_errors(engine, instance: str) -> int:
    """A finished import of ``instance`` whose error report has lines: a download link it can have."""
    with engine.begin() as conn:
        instance_id = conn.execute(sa.text("SELECT id FROM imagesearch.instances WHERE name = :n"),
                                   {"n": instance}).scalar_one()
        task_id = conn.execute(sa.insert(tasks).values(
            instance_id=instance_id, kind="import", state="partially_failed", params={"instance": instance},
            finished_at=sa.func.now()).returning(tasks.c.id)).scalar_one()
        conn.execute(sa.text("INSERT INTO imagesearch.task_errors (task_id, line, content, reason) "
                             "VALUES (:id, 1, 'x', 'the reason')"), {"id": task_id})
    return task_id


def test_the_access_log_shows_download_paths_without_their_signature(engine, settings, service, shop):
    task_id = _task_with_errors(engine, shop)
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    with serving(env, workers=1) as (process, port):
        link = service.tasks.link(service.tasks.get(task_id), "errors", f"http://127.0.0.1:{port}")
        secret = parse_qs(urlsplit(link).query)["Signature"][0]
        assert requests.get(link, timeout=30).status_code == 200
        forged = link.replace(secret, "f" * len(secret))  # a refused link is no more logged than a good one
        assert requests.get(forged, timeout=30).status_code == 403
    out, err = process.output
    logged = [line for line in out.splitlines() if "/downloads/" in line]
    assert len(logged) == 2, out[-2000:]
    assert all(f'"GET /downloads/errors/{task_id}?Expires&Signature HTTP/1.1" ' in line for line in logged), logged
    for text in (out, err):  # no line of the access log or of the error log
        assert secret not in text and "f" * len(secret) not in text and "Signature=" not in text


@pytest.fixture
def development_server(service, settings):
    """`imagesearch serve --dev`: Werkzeug's server with the project's request handler."""
    app = create_app({"SETTINGS": settings, "SERVICE": service})
    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=RequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()


def test_the_development_server_logs_no_query_values(development_server, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")
    requests.get(f"http://{development_server}/downloads/errors/1?Expires=1&Signature=bearer-secret&flag", timeout=30)
    assert '"GET /downloads/errors/1?Expires&Signature&- HTTP/1.1" 403' in caplog.text
    assert "bearer-secret" not in caplog.text


def test_a_logged_target_keeps_paths_and_parameter_names_only():
    assert logged_target("/downloads/meta/7?Expires=99&Signature=abc") == "/downloads/meta/7?Expires&Signature"
    assert logged_target("/?Action=Detail&token") == "/?Action&-"
    assert logged_target("/health") == "/health"
    assert logged_target("/a\nforged line") == "/a\\nforged line"
