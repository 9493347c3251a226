"""The service object of this process, opened on first use (after a server's fork, never before)."""

from __future__ import annotations

import threading

from flask import current_app

from imagesearch_pg.service import ImageSearch

_lock = threading.Lock()


def get_service() -> ImageSearch:
    app = current_app
    if app.config["SERVICE"] is None:
        with _lock:
            if app.config["SERVICE"] is None:
                app.config["SERVICE"] = ImageSearch.open(app.config["SETTINGS"])
    return app.config["SERVICE"]
