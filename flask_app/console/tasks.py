"""An instance's Batch and Metadata export tabs: new tasks, their progress, reports and downloads."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from flask_app.console import bp
from flask_app.console.auth import login_required
from flask_app.console.forms import error_field, refused
from flask_app.console.search import instance_or_404
from flask_app.extensions import get_service
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.service import tasks as task_service


def shown(task) -> dict:
    """What a task's row shows."""
    progress = task.progress or {}
    service = get_service()
    base = request.host_url
    return {
        "id": task.id, "status": task_service.STATUS[task.state], "params": task.params, "progress": progress,
        "message": task.error_message or "", "changed": task.updated_at, "created": task.created_at,
        "finished": task.finished_at,
        "errors_url": service.tasks.link(task, task_service.ERRORS, base) if progress.get("failed") else None,
        "meta_url": service.tasks.link(task, task_service.META, base) if task.result_url else None,
    }


@bp.route("/instances/<name>/batch", methods=["GET", "POST"])
@login_required
def batch(name: str):
    instance = instance_or_404(name)
    service = get_service()
    form = {"location": "", "path": "/", "callback": ""}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        form = {key: request.form.get(key, "").strip() for key in form}
        try:
            task = service.tasks.submit_import(name, form["location"], form["path"], form["callback"] or None)
        except ImageSearchError as exc:
            errors[error_field(exc, default="location")] = exc.message
            status = refused(exc)
        else:
            flash(f"Batch task {task.id} was queued.")
            return redirect(url_for("console.batch", name=name))
    path_filter = request.args.get("path", "").strip()
    try:
        _, found = service.tasks.list_imports(name, path=path_filter or None, page_size=100)
    except ImageSearchError as exc:
        found, errors["path_filter"] = [], exc.message
    locations = [loc.name for loc in service.storage.listing() if loc.allows(name)]
    return render_template("console/batch.html", instance=instance, tab="batch", form=form, errors=errors,
                           tasks=[shown(t) for t in found], locations=locations, path_filter=path_filter), status


@bp.post("/instances/<name>/batch/<int:task_id>/resubmit")
@login_required
def resubmit(name: str, task_id: int):
    service = get_service()
    try:
        task = service.tasks.get(task_id)
        if task.params.get("instance") != name or task.kind != task_service.IMPORT:
            abort(404)
        again = service.tasks.resubmit(task_id)
    except ImageSearchError as exc:
        flash(exc.message)
    else:
        flash(f"Task {task_id} was submitted again as task {again.id}.")
    return redirect(url_for("console.batch", name=name))


@bp.route("/instances/<name>/export", methods=["GET", "POST"])
@login_required
def export(name: str):
    instance = instance_or_404(name)
    service = get_service()
    if request.method == "POST":
        try:
            task = service.tasks.submit_export(name)
        except ImageSearchError as exc:
            flash(exc.message)
        else:
            flash(f"Export task {task.id} was queued.")
        return redirect(url_for("console.export", name=name))
    _, found = service.tasks.list_exports(name, page_size=30)  # the 30 kept (tasks.EXPORTS_KEPT)
    return render_template("console/export.html", instance=instance, tab="export", tasks=[shown(t) for t in found])
