"""`imagesearch shard ...`: other PostgreSQL servers that hold instances' pictures (docs/scaling.md)."""

from __future__ import annotations

import json

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import table


@cli.group()
def shard() -> None:
    """Shards: servers that hold the pictures of instances created with --shard."""


@shard.command("add")
@click.argument("name")
@click.argument("url")
@pass_service
def shard_add(holder: ServiceHolder, name: str, url: str) -> None:
    """Register the PostgreSQL server at URL (postgresql://user:password@host:port/dbname, with pgvector
    installable there) as shard NAME."""
    holder.get().shards.add(name, url)
    click.echo(f"added shard {name}")


@shard.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def shard_list(holder: ServiceHolder, as_json: bool) -> None:
    """List shards, their addresses (no logins) and how many instances each holds."""
    rows = [{"Name": s["name"], "Address": s["address"], "Instances": s["instances"],
             "CreatedAt": s["created_at"].isoformat(timespec="seconds")} for s in holder.get().shards.listing()]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        table(rows, ["Name", "Address", "Instances", "CreatedAt"])


@shard.command("drop")
@click.argument("name")
@pass_service
def shard_drop(holder: ServiceHolder, name: str) -> None:
    """Forget shard NAME, which must hold no instance (its server keeps its tables)."""
    holder.get().shards.drop(name)
    click.echo(f"dropped shard {name}")
