"""The HTTP layer: a thin shell over the service layer."""

from __future__ import annotations

from flask import Flask

from imagesearch_pg.config import Settings


def create_app(config: dict | None = None) -> Flask:
    """App factory. ``config`` may carry SETTINGS (a Settings) and SERVICE (an ImageSearch, for tests)."""
    app = Flask(__name__)
    app.config.from_mapping(SETTINGS=None, SERVICE=None)
    if config:
        app.config.update(config)
    if app.config["SETTINGS"] is None:
        app.config["SETTINGS"] = Settings.from_env()

    from flask_app import health

    app.register_blueprint(health.bp)
    return app
