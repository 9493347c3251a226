"""`imagesearch users ...`: the accounts that log in to the web console."""

from __future__ import annotations

import json
import sys

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import table


@cli.group()
def users() -> None:
    """Accounts of the web console (served at / by `imagesearch serve`)."""


@users.command("create")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_service
def users_create(holder: ServiceHolder, name: str, password_stdin: bool) -> None:
    """Create console user NAME (the password is asked for, or read with --password-stdin)."""
    holder.get().console_users.create(name, _password(password_stdin))
    click.echo(f"created user {name}")


@users.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_service
def users_password(holder: ServiceHolder, name: str, password_stdin: bool) -> None:
    """Set a new password for console user NAME; every open session of NAME ends."""
    holder.get().console_users.set_password(name, _password(password_stdin))
    click.echo(f"changed the password of {name}; its sessions have ended")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def users_list(holder: ServiceHolder, as_json: bool) -> None:
    """List console users (never passwords)."""
    rows = [{"Name": u.name, "CreatedAt": u.created_at.isoformat(timespec="seconds"),
             "LastLoginAt": u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "-"}
            for u in holder.get().console_users.listing()]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        table(rows, ["Name", "CreatedAt", "LastLoginAt"])


@users.command("delete")
@click.argument("name")
@pass_service
def users_delete(holder: ServiceHolder, name: str) -> None:
    """Delete console user NAME; its open sessions end."""
    holder.get().console_users.delete(name)
    click.echo(f"deleted user {name}")
