"""`imagesearch batch ...`, `imagesearch export` and `imagesearch worker`: background tasks.

`--wait` runs the task in this process (a worker for that task only, beside any others that may claim it
first) and shows its progress, so a batch needs no server running.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import table
from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service import ImageSearch, tasks
from imagesearch_pg.store.tasks import FINAL_STATES, Task
from imagesearch_pg.tasks.worker import LEASE_SECONDS, Worker


@cli.group()
def batch() -> None:
    """Batch imports and deletes from a folder's increment.meta (IncreaseInstance)."""


@batch.command("run")
@click.argument("instance")
@click.argument("location")
@click.argument("path")
@click.option("--callback", help="POST the result to this http(s) address when the task ends.")
@click.option("--wait", is_flag=True, help="Run it now, with a progress bar, until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as IncreaseList shows it.")
@pass_service
def batch_run(holder: ServiceHolder, instance: str, location: str, path: str, callback: str | None, wait: bool,
              as_json: bool) -> None:
    """Apply PATH/increment.meta of storage LOCATION to INSTANCE (PATH starts with /)."""
    service = holder.get()
    task = service.tasks.submit_import(instance, location, path, callback)
    if wait:
        task = _wait(service, task, as_json)
    _show_import(service, task, as_json)
    if task.state == "failed":
        sys.exit(1)


@batch.command("list")
@click.argument("instance")
@click.option("--page", default=1, show_default=True)
@click.option("--page-size", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print IncreaseList's items.")
@pass_service
def batch_list(holder: ServiceHolder, instance: str, page: int, page_size: int, as_json: bool) -> None:
    """The instance's batch tasks, newest first, with their progress."""
    service = holder.get()
    _, found = service.tasks.list_imports(instance, page_number=page, page_size=page_size)
    items = [tasks.increment(task, service.tasks.link(task, tasks.ERRORS)) for task in found]
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    table([{**item, "Lines": _lines(task), "Pictures/s": task.progress.get("pictures_per_second", "")}
           for item, task in zip(items, found)],
          ["Id", "Status", "BucketName", "Path", "Lines", "Pictures/s", "Msg"])


@batch.command("resubmit")
@click.argument("task_id", type=int)
@click.option("--wait", is_flag=True, help="Run it now, with a progress bar, until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as IncreaseList shows it.")
@pass_service
def batch_resubmit(holder: ServiceHolder, task_id: int, wait: bool, as_json: bool) -> None:
    """Run a finished batch task again, as a new task."""
    service = holder.get()
    _batch_task(service, task_id)
    task = service.tasks.resubmit(task_id)
    if wait:
        task = _wait(service, task, as_json)
    _show_import(service, task, as_json)


@batch.command("errors")
@click.argument("task_id", type=int)
@pass_service
def batch_errors(holder: ServiceHolder, task_id: int) -> None:
    """Print a batch task's error report: one JSON line per failed line."""
    service = holder.get()
    _batch_task(service, task_id)
    for line in service.tasks.error_report(task_id):
        click.echo(line.decode().rstrip("\n"))


@cli.command("export")
@click.argument("instance")
@click.option("--wait", is_flag=True, help="Run it now, with a progress bar, until it ends.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="With --wait: copy the export here ('-': standard output).")
@pass_service
def export(holder: ServiceHolder, instance: str, wait: bool, output: str | None) -> None:
    """Export every picture's metadata of INSTANCE as JSON lines (DumpMeta)."""
    service = holder.get()
    if output and not wait:
        raise click.UsageError("-o needs --wait: the file exists once the export has run")
    task = service.tasks.submit_export(instance)
    if wait:
        task = _wait(service, task, quiet=output == "-")
    if output and task.state == "succeeded":
        with service.tasks.open_export(task) as source, click.open_file(output, "wb") as target:
            shutil.copyfileobj(source, target)
    if output != "-":
        item = tasks.dump(task, service.tasks.link(task, tasks.META))
        click.echo(f"export {task.id}: {item['Status']} {item['Msg']}" + (f" -> {output}" if output else ""))
    if task.state == "failed":
        sys.exit(1)


@cli.command()
@click.option("--concurrency", default=1, show_default=True, help="Tasks run at once (of different instances).")
@click.option("--lease-seconds", default=LEASE_SECONDS, show_default=True,
              help="How long a task stays this worker's without a renewal: after a crash, the wait before "
                   "another worker resumes it.")
@pass_service
def worker(holder: ServiceHolder, concurrency: int, lease_seconds: float) -> None:
    """Run background tasks (batch imports, exports, callbacks) until stopped."""
    if concurrency < 1:
        raise click.BadParameter("must be at least 1", param_hint="--concurrency")
    if not 1 <= lease_seconds <= 3600:
        raise click.BadParameter("must be from 1 to 3600 seconds", param_hint="--lease-seconds")
    runner = Worker(holder.get(), concurrency=concurrency, lease_seconds=lease_seconds)
    stop = threading.Event()
    click.echo(f"imagesearch worker {runner.owner}: up to {concurrency} task(s) at a time", err=True)
    try:
        runner.run(stop)
    except (KeyboardInterrupt, SystemExit):
        stop.set()  # run() has given its tasks back by now
        raise


def _wait(service: ImageSearch, task: Task, quiet: bool = False) -> Task:
    """Run ``task`` in this process (unless another worker has it) until it ends; a progress bar on stderr."""
    runner = Worker(service, only=task.id, poll_seconds=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    shown = 0
    try:
        shown_on = _Null() if quiet else sys.stderr  # stdout is for the result
        with click.progressbar(length=1, label=f"task {task.id}", file=shown_on, show_pos=True,
                               show_eta=False) as bar:
            while task.state not in FINAL_STATES:
                time.sleep(0.5)
                task = service.tasks.get(task.id)
                total = task.progress.get("total")
                if total:
                    bar.length = max(total, 1)
                    done = task.progress.get("done", 0)
                    bar.update(done - shown)
                    shown = done
        # A callback's first attempt is made before this worker goes (a running worker makes the retries).
        deadline = time.monotonic() + 30
        while task.callback_state == "due" and not task.callback_attempts and time.monotonic() < deadline:
            time.sleep(0.5)
            task = service.tasks.get(task.id)
    finally:
        stop.set()
        thread.join()
    return task


def _batch_task(service: ImageSearch, task_id: int) -> Task:
    """The batch task ``task_id``; InvalidParameter if there is none (an export is none)."""
    task = service.tasks.get(task_id)
    if task.kind != tasks.IMPORT:
        raise InvalidParameter(f"task {task_id} is an export, not a batch task")
    return task


def _show_import(service: ImageSearch, task: Task, as_json: bool) -> None:
    item = tasks.increment(task, service.tasks.link(task, tasks.ERRORS))
    if as_json:
        click.echo(json.dumps(item, ensure_ascii=False))
        return
    click.echo(f"task {task.id}: {item['Status']} ({_lines(task)} lines) {item['Msg']}")
    if task.callback_state:
        tries = len(task.callback_attempts)
        click.echo(f"callback: {task.callback_state} after {tries} attempt(s)" if task.callback_state != "due" else
                   f"callback: not delivered yet ({tries} attempt(s)); a running worker retries it")
    if item.get("ErrorUrl"):
        click.echo(f"error report: {item['ErrorUrl']}  (or: imagesearch batch errors {task.id})")


def _lines(task: Task) -> str:
    progress = task.progress
    return f"{progress.get('done', 0)}/{progress.get('total', '?')}"


class _Null:
    def write(self, text):
        pass

    def flush(self):
        pass
