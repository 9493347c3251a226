"""`imagesearch keys ...`: AccessKey pairs that sign HTTP requests."""

from __future__ import annotations

import json

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import table


@cli.group()
def keys() -> None:
    """AccessKey pairs that sign HTTP requests."""


@keys.command("create")
@click.option("--instance", "instance_names", multiple=True, help="Allow only this instance (repeatable; default all).")
@click.option("--json", "as_json", is_flag=True, help='Print {"AccessKeyId": ..., "AccessKeySecret": ...}.')
@pass_service
def keys_create(holder: ServiceHolder, instance_names: tuple[str, ...], as_json: bool) -> None:
    """Create a key pair. The secret is shown this once: store it now."""
    key_id, secret = holder.get().access_keys.create(list(instance_names) or None)
    if as_json:
        click.echo(json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret}))
    else:
        click.echo(f"AccessKeyId:     {key_id}\nAccessKeySecret: {secret}")
        click.echo("The secret is not shown again.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def keys_list(holder: ServiceHolder, as_json: bool) -> None:
    """List key pairs (ids, instances, state; never secrets)."""
    rows = [
        {
            "AccessKeyId": k.id,
            "Instances": "*" if k.instances is None else ",".join(k.instances),
            "Created": k.created_at.isoformat(timespec="seconds"),
            "State": "revoked" if k.revoked_at else "active",
        }
        for k in holder.get().access_keys.listing()
    ]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        table(rows, ["AccessKeyId", "Instances", "Created", "State"])


@keys.command("revoke")
@click.argument("key_id")
@pass_service
def keys_revoke(holder: ServiceHolder, key_id: str) -> None:
    """Revoke a key pair: requests signed with it are refused from now on."""
    holder.get().access_keys.revoke(key_id)
    click.echo(f"revoked {key_id}")
