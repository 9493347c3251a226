"""The ``imagesearch`` command. Every subcommand goes through the service layer."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click
import sqlalchemy as sa

from imagesearch_pg import logs
from imagesearch_pg.config import Settings
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.service.models import protocol_name
from imagesearch_pg.service.validation import SERVICE_TYPES
from imagesearch_pg.store.database import InvalidDatabaseUrl

PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def main() -> None:
    # SIGTERM ends the command like Ctrl-C would, so exit handlers run and an embedded server this
    # process started is stopped when it was the last user (gunicorn's master installs its own handler).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        cli(standalone_mode=True)
    except ImageSearchError as exc:  # pragma: no cover - click re-raises only outside standalone mode
        _fail(exc)


def _fail(exc: ImageSearchError) -> None:
    click.echo(f"error: {exc.code}: {exc.message}", err=True)
    sys.exit(1)


class _Service:
    """Opens the service on first use, so `--help` and usage errors never start a database."""

    def __init__(self):
        self._service: ImageSearch | None = None

    def get(self) -> ImageSearch:
        if self._service is None:
            self._service = ImageSearch.open(Settings.from_env())
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ImageSearchError as exc:
            _fail(exc)
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            click.echo(f"error: the database is unavailable: {reason}", err=True)
            sys.exit(1)
        except InvalidDatabaseUrl as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Search by image, inside PostgreSQL.

    Uses IMAGESEARCH_DATABASE_URL when set, otherwise an embedded PostgreSQL under IMAGESEARCH_HOME.
    """
    logs.configure(verbose)
    holder = _Service()
    ctx.obj = holder
    ctx.call_on_close(holder.close)


pass_service = click.make_pass_decorator(_Service)


# ---- db ---------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Schema management (alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Bring the database schema to REVISION (default: head)."""
    from imagesearch_pg.store import schema
    from imagesearch_pg.store.database import Database

    database = Database.connect(Settings.from_env())
    try:
        schema.upgrade(database.engine, revision)
        click.echo(f"schema at {schema.current_revision(database.engine)}")
    finally:
        database.close()


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    from imagesearch_pg.store import schema
    from imagesearch_pg.store.database import Database

    database = Database.connect(Settings.from_env())
    try:
        click.echo(schema.current_revision(database.engine) or "empty (no schema)")
    finally:
        database.close()


# ---- instances --------------------------------------------------------------------------------------


@cli.group()
def instance() -> None:
    """Create, list, show and delete instances."""


@instance.command("create")
@click.argument("name")
@click.option("--type", "service_type", type=click.Choice(SERVICE_TYPES), required=True, help="Service type.")
@click.option("--capacity", type=int, default=None, help="Most pictures the instance may hold.")
@click.option("--qps", type=int, default=None, help="Queries per second of the instance's plan.")
@click.option("--region", default="local", show_default=True)
@click.option("--encoder", default=None,
              help="A built-in encoder or one registered with `imagesearch encoder register` "
                   "(default: the service type's).")
@pass_service
def instance_create(holder: _Service, name, service_type, capacity, qps, region, encoder) -> None:
    """Create an instance NAME."""
    options = {k: v for k, v in {"capacity": capacity, "qps": qps}.items() if v is not None}
    created = holder.get().create_instance(name, service_type, region=region, encoder=encoder, **options)
    click.echo(f"created {created.service_type} instance {created.name} (capacity {created.capacity}, qps {created.qps})")


@instance.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def instance_list(holder: _Service, as_json: bool) -> None:
    """List instances."""
    rows = [_instance_dict(i) for i in holder.get().list_instances()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(rows, ["Name", "ServiceType", "TotalCount", "Capacity", "Qps", "Region"])


@instance.command("show")
@click.argument("name")
@pass_service
def instance_show(holder: _Service, name: str) -> None:
    """Print an instance's details as JSON."""
    click.echo(json.dumps(_instance_dict(holder.get().describe_instance(name)), indent=2))


@instance.command("clear")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_service
def instance_clear(holder: _Service, name: str, yes: bool) -> None:
    """Delete every picture of instance NAME (the instance stays)."""
    if not yes:
        click.confirm(f"Delete every picture of instance {name!r}?", abort=True)
    holder.get().clear_instance(name)
    click.echo(f"cleared instance {name}")


@instance.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_service
def instance_delete(holder: _Service, name: str, yes: bool) -> None:
    """Delete an instance and all its pictures."""
    if not yes:
        click.confirm(f"Delete instance {name} and all its pictures?", abort=True)
    holder.get().delete_instance(name)
    click.echo(f"deleted instance {name}")


# ---- encoders ---------------------------------------------------------------------------------------


@cli.group()
def encoder() -> None:
    """Register and list encoders (bring your own ONNX model)."""


@encoder.command("register")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_service
def encoder_register(holder: _Service, spec: Path) -> None:
    """Register the ONNX encoder described by SPEC (TOML or JSON; see the README)."""
    registered = holder.get().register_encoder(spec)
    click.echo(f"registered encoder {registered.name} ({registered.dim}-d, {registered.onnx})")


@encoder.command("list")
@pass_service
def encoder_list(holder: _Service) -> None:
    """List the encoders instances can use."""
    rows = [
        {"Name": e["name"], "Dim": e["dim"], "Model": e["spec"]["onnx"] if e["spec"] else "built-in"}
        for e in holder.get().list_encoders()
    ]
    _table(rows, ["Name", "Dim", "Model"])


def _instance_dict(i) -> dict:
    return {
        "Name": i.name,
        "ServiceType": i.service_type,
        "Region": i.region,
        "Capacity": i.capacity,
        "Qps": i.qps,
        "TotalCount": i.picture_count,
        "Encoder": i.encoder,
        "UtcCreate": int(i.created_at.timestamp() * 1000),
        "UtcExpireTime": int(i.expires_at.timestamp() * 1000) if i.expires_at else None,
    }


# ---- pictures ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--product-id", help="ProductId for every picture (default: each file's stem).")
@click.option("--category-id", type=int, help="CategoryId (product instances).")
@click.option("--no-crop", is_flag=True, help="Use the whole picture, no subject detection.")
@pass_service
def add(holder: _Service, name, paths, product_id, category_id, no_crop) -> None:
    """Add pictures to instance NAME: files, or folders (every picture in them, recursively).

    A file's PicName is its file name; its ProductId is --product-id or the file's stem.
    """
    service = holder.get()
    service.describe_instance(name)  # fail early on a wrong name, before walking folders
    files = _picture_files(paths)
    failures = 0
    with click.progressbar(files, label="adding", file=sys.stderr, show_pos=True) as bar:
        for path in bar:
            try:
                service.add_image(
                    name, product_id or path.stem, path.name, path.read_bytes(),
                    category_id=category_id, crop=not no_crop,
                )
            except ImageSearchError as exc:
                failures += 1
                click.echo(f"\n{path}: {exc.code}: {exc.message}", err=True)
    click.echo(f"added {len(files) - failures} of {len(files)} pictures to {name}")
    if failures:
        sys.exit(1)


def _picture_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        else:
            files.append(path)  # named explicitly: its bytes decide whether it is a picture
    return files


@cli.command()
@click.argument("name")
@click.argument("picture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--num", type=int, default=10, show_default=True, help="How many results (1-100).")
@click.option("--start", type=int, default=0, show_default=True, help="Skip this many results first.")
@click.option("--filter", "filter_text", help='Attribute filter, e.g. \'int_attr>=10 AND str_attr="red"\'.')
@click.option("--no-crop", is_flag=True, help="Use the whole picture, no subject detection.")
@click.option("--distinct-product-id", is_flag=True, help="At most one result per ProductId (its best picture).")
@click.option("--score-threshold", type=float, help="Only results scoring at least this (0-1).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results, best first.")
@pass_service
def search(holder: _Service, name, picture, num, start, filter_text, no_crop, distinct_product_id,
           score_threshold, as_json) -> None:
    """Search instance NAME with PICTURE."""
    result = holder.get().search_by_picture(
        name, picture.read_bytes(), num=num, start=start, filter=filter_text, crop=not no_crop,
        distinct_product_id=distinct_product_id, score_threshold=score_threshold,
    )
    _print_auctions(result.auctions, as_json, ["ProductId", "PicName", "Score", "CategoryId"])


@cli.command("list")
@click.argument("name")
@click.option("--filter", "filter_text", required=True, help='Attribute filter, e.g. \'str_attr="red"\'.')
@click.option("--num", type=int, default=10, show_default=True, help="How many pictures (1-100).")
@click.option("--start", type=int, default=0, show_default=True, help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_service
def list_pictures(holder: _Service, name, filter_text, num, start, as_json) -> None:
    """List the pictures of instance NAME whose attributes match a filter (by ProductId, then PicName)."""
    result = holder.get().search_by_filter(name, filter_text, num=num, start=start)
    _print_auctions(result.auctions, as_json, ["ProductId", "PicName", "CategoryId", "IntAttr", "StrAttr"])


def _print_auctions(auctions, as_json: bool, columns: list[str]) -> None:
    rows = [
        {
            "ProductId": a.product_id,
            "PicName": a.pic_name,
            **({} if a.score is None else {"Score": round(a.score, 6)}),
            "CategoryId": a.category_id,
            **{protocol_name(k): v for k, v in a.attributes.as_dict().items()},
        }
        for a in auctions
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        _table(rows, columns)


@cli.command()
@click.argument("name")
@click.option("--product-id", help="Delete this product's pictures.")
@click.option("--pic-name", help="Only this picture of the product.")
@click.option("--filter", "filter_text", help="Delete every picture whose attributes match this filter instead.")
@pass_service
def delete(holder: _Service, name, product_id, pic_name, filter_text) -> None:
    """Delete pictures from instance NAME: a product's, one picture, or those matching a filter."""
    if filter_text is None and product_id is None:
        raise click.UsageError("give --product-id (and perhaps --pic-name), or --filter")
    deleted = holder.get().delete_image(name, product_id, pic_name, filter=filter_text).pic_names
    click.echo(f"deleted {len(deleted)} picture(s)" + (": " + ", ".join(deleted) if deleted else ""))


# ---- serve ------------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--dev", is_flag=True, help="Flask's development server (one process, auto-reload off).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Accept unsigned requests from anyone (local trials only; logged loudly).")
def serve(host: str, port: int, workers: int, dev: bool, insecure_no_auth: bool) -> None:
    """Run the HTTP service."""
    from flask_app.server import run

    run(Settings.from_env(), host=host, port=port, workers=workers, dev=dev, insecure_no_auth=insecure_no_auth)


# ---- keys -------------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """AccessKey pairs that sign HTTP requests."""


def _access_keys(holder: _Service):
    from imagesearch_pg.service.access_keys import AccessKeys, secret_box

    service = holder.get()
    return AccessKeys(service.engine, secret_box(Settings.from_env()))


@keys.command("create")
@click.option("--instance", "instance_names", multiple=True, help="Allow only this instance (repeatable; default all).")
@click.option("--json", "as_json", is_flag=True, help='Print {"AccessKeyId": ..., "AccessKeySecret": ...}.')
@pass_service
def keys_create(holder: _Service, instance_names: tuple[str, ...], as_json: bool) -> None:
    """Create a key pair. The secret is shown this once: store it now."""
    key_id, secret = _access_keys(holder).create(list(instance_names) or None)
    if as_json:
        click.echo(json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret}))
    else:
        click.echo(f"AccessKeyId:     {key_id}\nAccessKeySecret: {secret}")
        click.echo("The secret is not shown again.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def keys_list(holder: _Service, as_json: bool) -> None:
    """List key pairs (ids, instances, state; never secrets)."""
    rows = [
        {
            "AccessKeyId": k.id,
            "Instances": "*" if k.instances is None else ",".join(k.instances),
            "Created": k.created_at.isoformat(timespec="seconds"),
            "State": "revoked" if k.revoked_at else "active",
        }
        for k in _access_keys(holder).list()
    ]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        _table(rows, ["AccessKeyId", "Instances", "Created", "State"])


@keys.command("revoke")
@click.argument("key_id")
@pass_service
def keys_revoke(holder: _Service, key_id: str) -> None:
    """Revoke a key pair: requests signed with it are refused from now on."""
    _access_keys(holder).revoke(key_id)
    click.echo(f"revoked {key_id}")


# ---- output helpers ---------------------------------------------------------------------------------


def _table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(no results)")
        return
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))
