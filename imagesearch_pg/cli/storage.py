"""`imagesearch storage ...`: the folders (local or S3-compatible) batch imports may read and exports go to."""

from __future__ import annotations

import json

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import table
from imagesearch_pg.service.storage_locations import StorageLocations
from imagesearch_pg.storage import Location
from imagesearch_pg.storage.filesystems import variable_names


def locations(holder: ServiceHolder) -> StorageLocations:
    return holder.get().storage


@cli.group()
def storage() -> None:
    """Storage locations: the only places IncreaseInstance reads from (credentials stay in the environment)."""


@storage.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO) or an OSS one.")
@click.option("--region", help="S3 region (when the store needs one).")
@click.option("--profile", help="A profile of the AWS config files to take credentials from.")
@click.option("--instance", "instance_names", multiple=True,
              help="Only this instance may import from it (repeatable; default every instance).")
@pass_service
def storage_add(holder: ServiceHolder, name: str, url: str, endpoint: str | None, region: str | None,
                profile: str | None, instance_names: tuple[str, ...]) -> None:
    """Expose URL as location NAME: file:///folder, /folder or s3://bucket[/prefix].

    An S3 location's credentials come, when it is used, from IMAGESEARCH_STORAGE_<NAME>_ACCESS_KEY_ID and
    _SECRET_ACCESS_KEY (and _SESSION_TOKEN), else --profile, else the usual AWS variables and files.
    """
    location = locations(holder).add(name, url, endpoint=endpoint, region=region, profile=profile,
                                     instances=list(instance_names) or None)
    click.echo(f"added {location.name}: {location.url}")
    if not location.is_local:
        key_id, secret, _ = variable_names(location.name)
        click.echo(f"credentials: {key_id} and {secret}, else "
                   f"{'profile ' + location.profile if location.profile else 'the AWS default chain'}")


@storage.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def storage_list(holder: ServiceHolder, as_json: bool) -> None:
    """List storage locations (never credentials)."""
    rows = [_row(location) for location in locations(holder).listing()]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        table([{k: "" if v is None else v for k, v in row.items()} for row in rows],
              ["Name", "Url", "Endpoint", "Region", "Profile", "Instances"])


@storage.command("remove")
@click.argument("name")
@pass_service
def storage_remove(holder: ServiceHolder, name: str) -> None:
    """Forget location NAME; its files are left as they are."""
    locations(holder).remove(name)
    click.echo(f"removed {name}")


def _row(location: Location) -> dict:
    return {"Name": location.name, "Url": location.url, "Endpoint": location.endpoint, "Region": location.region,
            "Profile": location.profile,
            "Instances": "*" if location.instances is None else ",".join(location.instances)}
