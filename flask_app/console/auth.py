"""Logging in and out of the console; ``login_required`` for every other page.

The session (a cookie signed with the key the database keeps, so that it survives restarts and every
worker shares it) holds the user's name; a user deleted with the CLI is logged out at their next request.
"""

from __future__ import annotations

import functools

from flask import flash, g, redirect, render_template, request, session, url_for

from flask_app.console import bp
from flask_app.console.forms import refused
from flask_app.extensions import get_service
from imagesearch_pg.errors import ImageSearchError


@bp.before_request
def load_user() -> None:
    name = session.get("user")
    g.user = None
    if name is not None:
        if get_service().console_users.exists(name):
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
            get_service().console_users.authenticate(name, request.form.get("password", ""), request.remote_addr or "")
        except ImageSearchError as exc:
            error, status = exc.message, refused(exc)
        else:
            session.clear()
            session["user"] = name
            target = request.args.get("next", "")
            # Only a path of this site: an address elsewhere would make the login an open redirect.
            if not target.startswith("/") or target.startswith("//") or "\\" in target:
                target = url_for("console.overview")
            return redirect(target)
    return render_template("console/login.html", error=error), status if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("console.login"))
