"""The HTTP layer: a thin shell over the service layer."""

from __future__ import annotations

import uuid

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import DatabaseUnavailable


# Pictures are at most 4 MB, about 5.4 MB in base64: a body over this is refused before it is read whole.
MAX_BODY_BYTES = 8 * 1024 * 1024


def create_app(config: dict | None = None) -> Flask:
    """App factory. ``config`` may carry SETTINGS (a Settings), SERVICE (an ImageSearch, for tests) and
    INSECURE_NO_AUTH (accept unsigned requests: local trials only)."""
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=None, SERVICE=None, INSECURE_NO_AUTH=False, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES,
    )
    if config:
        app.config.update(config)
    if app.config["SETTINGS"] is None:
        app.config["SETTINGS"] = Settings.from_env()

    from flask_app import api, console, downloads, health, metrics

    app.register_blueprint(health.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(api.bp)
    app.before_request(_api_call_by_get)
    console.init_app(app)
    # The API and the download links carry their own signatures: no session, so no CSRF token either.
    console.csrf.exempt(api.bp)
    console.csrf.exempt(downloads.bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DatabaseUnavailable, _database_unavailable)
    app.after_request(_never_framed)
    return app


def _never_framed(response):
    """No answer of this server is shown inside another site's page, where a console form could be clicked
    unawares (clickjacking). After-request functions see every answer: pages, errors, static files, the API."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    return response


def _names_an_action() -> bool:
    """Whether the request is an API call (it names its action), whatever its method and path."""
    from flask import request

    return bool(request.headers.get("x-acs-action") or request.args.get("Action"))


def _api_call_by_get():
    """GET / is the console, for browsers, and an API call when it names an action: clients of the RPC
    signature style send GET (aliyun-python-sdk-core's CommonRequest by default). An API call sent with
    another method but POST is refused as the protocol refuses it, not answered with a login page."""
    from flask import abort, request

    from flask_app import api

    if request.path == "/" and request.method != "POST" and _names_an_action():
        if request.method != "GET":
            abort(405)
        return api.dispatch()


def _http_error(error: HTTPException):
    """Flask's own refusals (no such path, wrong method, ...) in the protocol's shape; a page of the
    console gets them as a page."""
    from flask_app import console, protocol

    if console.is_console_request() and not _names_an_action():
        return console.problem_page(error)

    code, message = {
        404: ("InvalidPath", "no such path: the API is POST /; the console is GET /; GET /health and GET /metrics"),
        405: ("MethodNotAllowed", "this path does not take that method: the API is POST /"),
        413: ("InvalidParameter", f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB"),
    }.get(error.code, ("InvalidParameter", error.description or error.name))
    response = jsonify(protocol.error(str(uuid.uuid4()).upper(), code, message))
    response.status_code = error.code or 400
    return response


def _database_unavailable(error: DatabaseUnavailable):
    """An outage met outside a view's own error handling (a worker whose service could not open yet, on
    /health or a download): 503, never a 500 with a traceback."""
    from flask_app import console, protocol

    if console.is_console_request():
        return console.unavailable_page()
    response = jsonify(protocol.error(str(uuid.uuid4()).upper(), error.code, error.message))
    response.status_code = 503
    return response
