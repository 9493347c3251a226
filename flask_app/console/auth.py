"""Logging in and out of the console; ``login_required`` for every other page.

The session is a cookie signed with the key the database keeps (so that it survives restarts and every
worker shares it). It holds the user's name and session generation, which every request compares with the
database: logging out, a new password (`imagesearch users password`) and deleting the user draw a new
generation (or none), and every cookie issued before opens nothing from then on.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import flash, g, redirect, render_template, request, session, url_for
from werkzeug.urls import iri_to_uri

from flask_app.console import bp
from flask_app.console.forms import refused
from flask_app.extensions import get_service
from imagesearch_pg.errors import ImageSearchError


@bp.before_request
def load_user() -> None:
    name, generation = session.get("user"), session.get("generation")
    g.user = None
    if name is not None:
        if generation is not None and get_service().console_users.session_generation(name) == generation:
            g.user = name
        else:
            session.clear()


def login_required(view):
    @functools.wraps(view)
    def wrapped(**kwargs):
        if g.user is None:
            return redirect(url_for("console.login", next=request.full_path if request.args else request.path))
        return view(**kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status = None, 200
    if request.method == "POST":
        name = request.form.get("name", "")
        try:
            generation = get_service().console_users.authenticate(name, request.form.get("password", ""),
                                                                  request.remote_addr or "")
        except ImageSearchError as exc:
            error, status = exc.message, refused(exc)
        else:
            session.clear()
            session["user"], session["generation"] = name, generation
            return redirect(same_site_location(request.args.get("next", "")) or url_for("console.overview"))
    return render_template("console/login.html", error=error), status if error else 200


@bp.post("/logout")
def logout():
    if g.user is not None:
        get_service().console_users.end_sessions(g.user)  # this cookie's copies too, wherever they are
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("console.login"))


def same_site_location(target: str) -> str | None:
    """``target`` as the Location header will carry it, if that is a path of this site; else None.

    The check reads what the browser will: Werkzeug writes ``iri_to_uri(target)`` into the header, which
    drops tabs and line breaks (as urlsplit does) and quotes what is left. A browser reads '//host' and
    '/\\host' as another site, so a path must not start with either."""
    try:
        location = iri_to_uri(target)
        parts = urlsplit(location)
    except ValueError:  # a host or port that cannot be written: not a path anyway
        return None
    if parts.scheme or parts.netloc or not location.startswith("/") or location[1:2] in ("/", "\\"):
        return None
    return location
