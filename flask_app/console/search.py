"""An instance's Search tab, and the stored pictures' thumbnails the results show."""

from __future__ import annotations

import base64
import json
import uuid

from flask import Response, abort, render_template, request

from flask_app import protocol
from flask_app.console import bp
from flask_app.console.auth import login_required
from flask_app.console.forms import FieldError, error_field, number, refused
from flask_app.extensions import get_service
from imagesearch_pg import categories
from imagesearch_pg.errors import ImageSearchError, MissingParameter
from imagesearch_pg.service_types import SERVICE_TYPES

DEFAULTS = {"mode": "upload", "product_id": "", "pic_name": "", "crop": "on", "region_mode": "system", "region": "",
            "category_id": "", "num": "10", "start": "0", "filter": ""}


def instance_or_404(name: str):
    try:
        return get_service().describe_instance(name)
    except ImageSearchError:
        abort(404)


@bp.route("/instances/<name>/search", methods=["GET", "POST"])
@login_required
def search(name: str):
    instance = instance_or_404(name)
    form = dict(DEFAULTS)
    errors: dict[str, str] = {}
    result = query = raw = None
    status = 200
    if request.method == "POST":
        form = {key: request.form.get(key, "" if key == "crop" else value) for key, value in DEFAULTS.items()}
        try:
            result, query = _run(instance, form)
            raw = json.dumps({"RequestId": str(uuid.uuid4()).upper(), **protocol.search(result)}, indent=2,
                             ensure_ascii=False)
        except ImageSearchError as exc:
            errors[error_field(exc)] = exc.message
            status = refused(exc)
    return render_template("console/search.html", instance=instance, tab="search", form=form, errors=errors,
                           result=result, query=query, raw=raw, categories=categories.CATEGORIES,
                           has_categories=SERVICE_TYPES[instance.service_type].categories), status


def _run(instance, form: dict):
    """The search the form asks for, and the query picture (as a data: URL) to show with its boxes."""
    service = get_service()
    options = {
        "num": number(form, "num", "Number of results", 10), "start": number(form, "start", "Start", 0),
        "filter": form["filter"].strip() or None, "category_id": number(form, "category_id", "Category"),
    }
    if form["mode"] == "stored":
        return service.search_by_name(instance.name, form["product_id"], form["pic_name"], **options), None
    upload = request.files.get("picture")
    data = upload.read() if upload else b""
    if not data:
        raise MissingParameter("PicContent is required: choose a picture to search with")
    region = form["region"].strip() if form["region_mode"] == "custom" else None
    if form["region_mode"] == "custom" and not region:
        raise FieldError("region", "draw a box on the picture, or type its region as x1,x2,y1,y2")
    result = service.search_by_picture(instance.name, data, crop=form["crop"] == "on", region=region, **options)
    mime = upload.mimetype if upload and upload.mimetype.startswith("image/") else "image/jpeg"
    return result, f"data:{mime};base64,{base64.b64encode(data).decode()}"


@bp.get("/instances/<name>/thumbnail")
@login_required
def thumbnail(name: str):
    try:
        data = get_service().pictures.thumbnail(name, request.args.get("product_id", ""), request.args.get("pic_name", ""))
    except ImageSearchError:
        abort(404)
    if data is None:
        abort(404)
    return Response(data, mimetype=_picture_type(data), headers={"X-Content-Type-Options": "nosniff"})


_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


def _picture_type(data: bytes) -> str:
    """The media type of a thumbnail (JPEG) or of a kept original (IMAGESEARCH_KEEP_ORIGINALS)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), "application/octet-stream")
