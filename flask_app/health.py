"""GET /health: is the database reachable and its schema current."""

from __future__ import annotations

from flask import Blueprint, jsonify

from flask_app.extensions import get_service

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    report = get_service().health()
    if not report.ok:
        return jsonify(status="unavailable", database=report.database), 503
    return jsonify(status="ok", database=report.database, schema=report.schema)
