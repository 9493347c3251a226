"""An instance's Add picture tab, clearing all its pictures, and its Duplicates tab."""

from __future__ import annotations

import json
import uuid

from flask import flash, redirect, render_template, request, url_for

from flask_app import protocol
from flask_app.console import bp
from flask_app.console.auth import login_required
from flask_app.console.forms import FieldError, attributes, decimal, error_field, number, refused
from flask_app.console.search import instance_or_404
from flask_app.extensions import get_service
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg import categories
from imagesearch_pg.attributes import INT_ATTRS, STR_ATTRS
from imagesearch_pg.errors import ImageSearchError, MissingParameter
from imagesearch_pg.service_types import SERVICE_TYPES

ADD_FIELDS = ("product_id", "pic_name", "crop", "region_mode", "region", "category_id", "custom_content",
              *INT_ATTRS, *STR_ATTRS)


@bp.route("/instances/<name>/add", methods=["GET", "POST"])
@login_required
def add_picture(name: str):
    instance = instance_or_404(name)
    form = {key: "" for key in ADD_FIELDS} | {"crop": "on", "region_mode": "system"}
    errors: dict[str, str] = {}
    raw = None
    status = 200
    if request.method == "POST":
        form = {key: request.form.get(key, "") for key in ADD_FIELDS}
        try:
            upload = request.files.get("picture")
            data = upload.read() if upload else b""
            if not data:
                raise MissingParameter("PicContent is required: choose the picture to add")
            region = form["region"].strip() if form["region_mode"] == "custom" else None
            if form["region_mode"] == "custom" and not region:
                raise FieldError("region", "type the region as x1,x2,y1,y2, or choose system detection")
            info = get_service().add_image(
                name, form["product_id"], form["pic_name"], data, category_id=number(form, "category_id", "Category"),
                crop=form["crop"] == "on", region=region, attributes=attributes(form))
        except ImageSearchError as exc:
            errors[error_field(exc)] = exc.message
            status = refused(exc)
        else:
            raw = json.dumps({"RequestId": str(uuid.uuid4()).upper(), **protocol.done(), "PicInfo": protocol.pic_info(info)},
                             indent=2, ensure_ascii=False)
            flash(f"Picture {form['product_id']} / {form['pic_name']} was added.")
    return render_template("console/add.html", instance=instance, tab="add", form=form, errors=errors, raw=raw,
                           categories=categories.CATEGORIES, has_categories=SERVICE_TYPES[instance.service_type].categories,
                           int_attrs=INT_ATTRS, str_attrs=STR_ATTRS), status


@bp.post("/instances/<name>/clear")
@login_required
def clear(name: str):
    instance_or_404(name)
    if request.form.get("confirmation", "") != name:
        flash(f"Nothing was cleared: type the instance's name, {name}, to confirm.")
    else:
        try:
            get_service().clear_instance(name)
        except ImageSearchError as exc:  # busy: another transaction holds the instance's pictures
            flash(f"Nothing was cleared: {exc.message}")
        else:
            flash(f"All pictures of {name} were deleted.")
    return redirect(url_for("console.instance_detail", name=name))


@bp.get("/instances/<name>/duplicates")
@login_required
def duplicates(name: str):
    instance = instance_or_404(name)
    text = request.args.get("min_score", "0.95").strip()
    errors: dict[str, str] = {}
    pairs = None
    try:
        min_score = decimal(request.args, "min_score", "The score", 0.95)
        if "min_score" in request.args:
            pairs = get_service().duplicate_pairs(name, min_score)[:200]
    except ImageSearchError as exc:
        errors["min_score"] = exc.message
    return render_template("console/duplicates.html", instance=instance, tab="duplicates", pairs=pairs,
                           min_score=text, errors=errors), 400 if errors else 200
