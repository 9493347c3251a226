"""The web console (spec/console.md): the whole service from a browser, at GET /.

Server-rendered pages with a little plain JavaScript; every asset is served from ``static/`` (no CDN, no
build step). Views call the service layer, as the API does. A login is needed (``auth``); every form
carries a CSRF token (Flask-WTF's CSRFProtect, which the signed API and the signed download links are
exempt from: they have their own signatures, and a console session cookie is no way into them).

The session cookie is HttpOnly, SameSite=Lax, and Secure when the browser reached the server over HTTPS;
what a logged-in user is answered is never stored by the browser or a cache (Cache-Control: no-store).
No answer of the server can be framed (flask_app/__init__.py).
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from flask_wtf.csrf import CSRFError, CSRFProtect

from flask_app.extensions import get_service
from imagesearch_pg.errors import DatabaseUnavailable

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/console/static")
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    from flask_app.console import auth, pages, pictures, search, tasks  # noqa: F401  (their views join the blueprint)

    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # a token lives as long as its session
    # Flask defines these two (SameSite as None), so they are set, not defaulted.
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.session_interface = _ConsoleSessions()
    app.before_request(_session_key)  # before CSRFProtect's own check, which needs the key
    app.after_request(_not_stored)
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, _form_expired)


def is_console_request() -> bool:
    return request.blueprint == "console"


def _session_key() -> None:
    # Normally read when the session opened (_ConsoleSessions); if the database was down then, now, so
    # that an outage is the page's answer rather than a session that cannot be written.
    if is_console_request() and not current_app.secret_key:
        current_app.secret_key = get_service().console_users.session_secret()


def _not_stored(response):
    """What a logged-in user sees stays out of the browser's cache and any other (a shared computer, the
    back button after logging out)."""
    if g.get("user") is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


class _ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the key in the database, read on a process's first console
    request (the service opens after a server's fork, not before; a session opens before any hook runs).
    Requests of the API, the health check and the downloads never need it."""

    def get_cookie_secure(self, app) -> bool:
        # The server speaks plain HTTP; HTTPS ends at a proxy in front, which says so in X-Forwarded-Proto.
        # The header is believed without knowing the proxy because it can only make a cookie stricter: a
        # client that sends it falsely gets a cookie its browser will not send back over HTTP.
        forwarded = {proto.strip().lower() for proto in request.headers.get("X-Forwarded-Proto", "").split(",")}
        return super().get_cookie_secure(app) or request.is_secure or "https" in forwarded

    def open_session(self, app, request):
        if not app.secret_key and _console_endpoint(app, request):
            try:
                app.secret_key = get_service().console_users.session_secret()
            except DatabaseUnavailable:
                return None  # an empty session; _session_key then answers with the outage
        return super().open_session(app, request)


def _console_endpoint(app: Flask, request) -> bool:
    try:
        endpoint, _ = app.url_map.bind_to_environ(request.environ).match(method=request.method)
    except HTTPException:
        return False
    return endpoint.startswith("console.")


def problem_page(error: HTTPException):
    """Flask's own refusals (a page that is not there, a body over the limit ...) on a console page."""
    titles = {404: "Not found", 405: "Not allowed", 413: "Too large"}
    messages = {404: "There is no such page, instance or picture.",
                413: "What was sent is over 8 MB: a picture may have 4 MB at most."}
    return render_template("console/problem.html", title=titles.get(error.code, "The request was refused"),
                           message=messages.get(error.code, error.description or error.name)), error.code or 400


def _form_expired(error: CSRFError):
    return render_template("console/problem.html", title="The form was refused",
                           message="This form has expired or did not come from this console. Go back, reload "
                                   "the page and send it again."), 400


def unavailable_page():
    return render_template("console/problem.html", title="The database is unavailable",
                           message="The service cannot reach its database just now. Try again in a moment."), 503
