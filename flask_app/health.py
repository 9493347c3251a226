"""GET /health: is the database reachable and its schema current."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from flask_app.extensions import get_service
from imagesearch_pg.store import schema

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    service = get_service()
    try:
        with service.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        revision = schema.current_revision(service.engine)
    except sa.exc.OperationalError:
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(
        status="ok",
        database="embedded" if service.database.is_embedded else "external",
        schema=revision,
    )
