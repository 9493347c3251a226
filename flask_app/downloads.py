"""GET /downloads/<what>/<task id>: a task's results behind a signed, expiring link (ErrorUrl, MetaUrl).

The link is the permission (its signature covers what, which task and until when), like a presigned
object-storage URL: the SDK hands it to a browser or a plain HTTP client, which cannot sign requests.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack

from flask import Blueprint, Response, jsonify, request

from flask_app import protocol
from flask_app.extensions import get_service
from imagesearch_pg.errors import ImageSearchError, InvalidParameter
from imagesearch_pg.service import tasks

bp = Blueprint("downloads", __name__)
_CHUNK = 1 << 16


@bp.get("/downloads/<what>/<int:task_id>")
def download(what: str, task_id: int):
    service = get_service()
    try:
        if what not in (tasks.ERRORS, tasks.META):
            raise InvalidParameter(f"a download is of {tasks.ERRORS} or {tasks.META}, not {what[:32]!r}")
        task = service.tasks.check_link(what, task_id, request.args.get("Expires"), request.args.get("Signature"))
        if what == tasks.ERRORS:
            body, name = service.tasks.error_report(task.id), f"task-{task.id}-errors.jsonl"
        else:
            if not task.result_url:
                raise InvalidParameter(f"task {task.id} has no export file")
            # Opened now, so that a missing file is an error answer rather than a broken download.
            opened = ExitStack()
            file = opened.enter_context(service.tasks.open_export(task))
            body, name = _streamed(file, opened), f"{task.params['instance']}-{task.id}.jsonl"
    except ImageSearchError as exc:
        response = jsonify(protocol.error(str(uuid.uuid4()).upper(), exc.code, exc.message))
        response.status_code = protocol.http_status(exc)
        return response
    return Response(body, mimetype="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _streamed(file, opened: ExitStack):
    with opened:
        while block := file.read(_CHUNK):
            yield block
