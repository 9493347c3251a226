"""The ``imagesearch`` command. Every subcommand goes through the service layer.

One module per area: instances and encoders, pictures, access keys; output helpers in ``output``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points

import click

from imagesearch_pg import logs
from imagesearch_pg.cli.context import ServiceHolder, fail
from imagesearch_pg.config import Settings
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.store.database import Database


def main() -> None:
    # SIGTERM ends the command like Ctrl-C would, so exit handlers run and an embedded server this
    # process started is stopped when it was the last user (gunicorn's master installs its own handler).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cli(standalone_mode=True)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ImageSearchError as exc:
            fail(exc)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Search by image, inside PostgreSQL.

    Uses IMAGESEARCH_DATABASE_URL when set, otherwise an embedded PostgreSQL under IMAGESEARCH_HOME.
    """
    logs.configure(verbose)
    holder = ServiceHolder()
    ctx.obj = holder
    ctx.call_on_close(holder.close)


# ---- db ---------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Schema management (alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Bring the database schema to REVISION (default: head)."""
    database = Database.connect(Settings.from_env())
    try:
        click.echo(f"schema at {database.upgrade_schema(revision)}")
    finally:
        database.close()


@db.command("url")
def db_url() -> None:
    """Print a libpq URI of the database the CLI uses, for psql "$(imagesearch db url)"."""
    database = Database.connect(Settings.from_env())
    try:
        click.echo(database.libpq_url())
    finally:
        database.close()


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    database = Database.connect(Settings.from_env())
    try:
        click.echo(database.schema_revision() or "empty (no schema)")
    finally:
        database.close()


@db.command("replicas")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per replica.")
def db_replicas(as_json: bool) -> None:
    """Check each replica of IMAGESEARCH_REPLICA_URLS now: its lag behind the primary and whether it may
    serve searches (within IMAGESEARCH_REPLICA_MAX_LAG). Exits 1 if one may not."""
    settings = Settings.from_env()
    database = Database.connect(settings)
    try:
        if database.replicas is None:
            raise click.ClickException("no replicas: set IMAGESEARCH_REPLICA_URLS (comma-separated libpq URLs)")
        rows = database.replicas.status()  # checked now, in this process
    finally:
        database.close()
    for row in rows:
        lag = row["lag_seconds"]
        shown = "not answering" if lag is None else "not a standby" if lag == float("inf") else f"{lag:.1f} s behind"
        click.echo(json.dumps({**row, "lag_seconds": None if lag in (None, float("inf")) else lag}) if as_json else
                   f"{row['replica']}: {shown}, {'serves searches' if row['usable'] else 'serves no searches'}")
    if not all(row["usable"] for row in rows):
        raise SystemExit(1)


# ---- serve ------------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--task-workers", type=int, default=1, show_default=True,
              help="Background tasks run at once by the task worker started beside the server (0: none; "
                   "run `imagesearch worker` elsewhere).")
@click.option("--dev", is_flag=True, help="Flask's development server (one process, auto-reload off).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Accept unsigned requests from anyone (local trials only; logged loudly).")
def serve(host: str, port: int, workers: int, task_workers: int, dev: bool, insecure_no_auth: bool) -> None:
    """Run the HTTP service (and a worker for background tasks)."""
    # The HTTP layer is another package (flask_app); its server is found by entry point (pyproject.toml).
    found = list(entry_points(group="imagesearch_pg.servers", name="http"))
    if len(found) != 1:
        raise click.ClickException(
            "the HTTP server is not installed: install imagesearch-pg with pip (its flask_app package registers "
            "the entry point imagesearch_pg.servers:http)"
        )
    # Download links made by the worker (callbacks' processResultUrl) point at this server.
    if "IMAGESEARCH_PUBLIC_URL" not in os.environ:
        wildcard = host in ("0.0.0.0", "::", "")
        reached = "127.0.0.1" if wildcard else f"[{host}]" if ":" in host else host
        if wildcard:
            click.echo(f"warning: callbacks' processResultUrl will point at http://{reached}:{port}: set "
                       "IMAGESEARCH_PUBLIC_URL to the address clients reach this server at", err=True)
        os.environ["IMAGESEARCH_PUBLIC_URL"] = f"http://{reached}:{port}"
    task_worker = None
    if task_workers > 0:
        task_worker = subprocess.Popen([sys.executable, "-m", "imagesearch_pg", "worker", "--concurrency",
                                        str(task_workers)])
    try:
        found[0].load()(Settings.from_env(), host=host, port=port, workers=workers, dev=dev,
                        insecure_no_auth=insecure_no_auth)
    finally:
        if task_worker is not None:
            task_worker.terminate()  # it gives its running tasks back to the queue
            try:
                task_worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                task_worker.kill()


from imagesearch_pg.cli import instances, keys, pictures, shards, storage, tasks, users  # noqa: E402  (they add their commands to cli)

__all__ = ["cli", "main", "instances", "keys", "pictures", "storage", "tasks", "users"]
