"""The service object of this process, opened on first use (after a server's fork, never before)."""

from __future__ import annotations

import threading

from flask import current_app

from imagesearch_pg.service import ImageSearch
from imagesearch_pg.service.access_keys import AccessKeys, secret_box

_lock = threading.Lock()


def get_service() -> ImageSearch:
    app = current_app
    if app.config["SERVICE"] is None:
        with _lock:
            if app.config["SERVICE"] is None:
                app.config["SERVICE"] = ImageSearch.open(app.config["SETTINGS"])
    return app.config["SERVICE"]


def get_access_keys() -> AccessKeys:
    app = current_app
    if app.config["ACCESS_KEYS"] is None:
        engine = get_service().engine  # outside the lock, which get_service takes too
        with _lock:
            if app.config["ACCESS_KEYS"] is None:
                app.config["ACCESS_KEYS"] = AccessKeys(engine, secret_box(app.config["SETTINGS"]))
    return app.config["ACCESS_KEYS"]
