"""The console's pages of instances: the overview, the list of a service type, an instance's overview tab,
and the category reference."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import abort, flash, redirect, render_template, request, url_for

from flask_app.console import bp
from flask_app.console.auth import login_required
from flask_app.console.forms import FieldError, error_field, number, refused
from flask_app.extensions import get_service
from imagesearch_pg import categories
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.service.instances import DEFAULT_CAPACITY, DEFAULT_QPS
from imagesearch_pg.service_types import SERVICE_TYPES

EXPIRING_DAYS = 7  # an instance that expires within this many days is "expiring soon"


def lifecycle(instance, now: datetime) -> str:
    """running, expiring (soon) or expired, from the instance's status and expiry."""
    if instance.expires_at is not None and instance.expires_at <= now:
        return "expired"
    if instance.expires_at is not None and instance.expires_at <= now + timedelta(days=EXPIRING_DAYS):
        return "expiring"
    return "running" if instance.status == "active" else instance.status


@bp.get("/")
@login_required
def overview():
    now = datetime.now(timezone.utc)
    counts = {name: {"instances": 0, "running": 0, "expiring": 0, "expired": 0} for name in SERVICE_TYPES}
    for instance in get_service().list_instances():
        row = counts[instance.service_type]
        row["instances"] += 1
        state = lifecycle(instance, now)
        if state in ("running", "expiring"):  # an instance expiring soon still runs
            row["running"] += 1
        if state in ("expiring", "expired"):
            row[state] += 1
    return render_template("console/overview.html", counts=counts, types=SERVICE_TYPES)


@bp.route("/types/<service_type>", methods=["GET", "POST"])
@login_required
def instance_list(service_type: str):
    if service_type not in SERVICE_TYPES:
        abort(404)
    errors: dict[str, str] = {}
    form = {"name": "", "capacity": str(DEFAULT_CAPACITY), "qps": str(DEFAULT_QPS), "tags": ""}
    status = 200
    if request.method == "POST":
        form = {key: request.form.get(key, "").strip() for key in form}
        try:
            capacity = number(form, "capacity", "Capacity")
            qps, tags = number(form, "qps", "QPS"), _tags(form["tags"])
            get_service().create_instance(form["name"], service_type, capacity=capacity, qps=qps, tags=tags)
        except ImageSearchError as exc:
            errors[error_field(exc, default="name")] = exc.message
            status = refused(exc)
        else:
            flash(f"Instance {form['name']} was created.")
            return redirect(url_for("console.instance_detail", name=form["name"]))
    query, tag = request.args.get("q", "").strip(), request.args.get("tag", "").strip()
    now = datetime.now(timezone.utc)
    shown = [i for i in get_service().list_instances()
             if i.service_type == service_type and query.lower() in i.name.lower()
             and (not tag or tag in {f"{k}={v}" for k, v in i.tags.items()} | set(i.tags))]
    return render_template("console/instances.html", service_type=service_type, instances=shown, form=form,
                           errors=errors, query=query, tag=tag, lifecycle=lambda i: lifecycle(i, now)), status


@bp.get("/instances/<name>")
@login_required
def instance_detail(name: str):
    try:
        instance = get_service().describe_instance(name)
    except ImageSearchError:
        abort(404)
    return render_template("console/instance.html", instance=instance, tab="overview",
                           state=lifecycle(instance, datetime.now(timezone.utc)))


@bp.post("/instances/<name>/plan")
@login_required
def change_plan(name: str):
    form = {key: request.form.get(key, "").strip() for key in ("capacity", "qps")}
    try:
        capacity, qps = number(form, "capacity", "Capacity"), number(form, "qps", "QPS")
        changed = get_service().change_plan(name, capacity=capacity, qps=qps)
    except ImageSearchError as exc:
        flash(f"The plan was not changed: {exc.message}")
    else:
        flash(f"The plan of {name} is now {changed.capacity} pictures at {changed.qps} QPS.")
    return redirect(url_for("console.instance_detail", name=name))


@bp.post("/instances/<name>/renew")
@login_required
def renew(name: str):
    choice = request.form.get("days", "")
    try:
        if choice == "":
            raise FieldError("days", "choose how long to renew for")
        renewed = get_service().renew_instance(name, None if choice == "never" else number(request.form, "days", "Days"))
    except ImageSearchError as exc:
        flash(f"The instance was not renewed: {exc.message}")
    else:
        until = renewed.expires_at.strftime("%Y-%m-%d") if renewed.expires_at else "never"
        flash(f"{name} now expires: {until}.")
    return redirect(url_for("console.instance_detail", name=name))


@bp.get("/categories")
@login_required
def category_reference():
    return render_template("console/categories.html", categories=categories.CATEGORIES)


def _tags(text: str) -> dict:
    """"key=value, key2=value2" -> a dict; empty text gives no tags."""
    tags = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise FieldError("tags", f"a tag is key=value, got {part[:40]!r}")
        tags[key.strip()] = value.strip()
    return tags
