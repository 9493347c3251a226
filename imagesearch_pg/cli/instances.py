"""`imagesearch instance ...` and `imagesearch encoder ...`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, confirmed, pass_service, yes_option
from imagesearch_pg.cli.output import records, table
from imagesearch_pg.service.models import public_record
from imagesearch_pg.service_types import SERVICE_TYPES


@cli.group()
def instance() -> None:
    """Create, list, show, clear and delete instances."""


@instance.command("create")
@click.argument("name")
@click.option("--type", "service_type", type=click.Choice(list(SERVICE_TYPES)), required=True, help="Service type.")
@click.option("--capacity", type=int, default=None, help="Most pictures the instance may hold.")
@click.option("--qps", type=int, default=None, help="Queries per second of the instance's plan.")
@click.option("--region", default="local", show_default=True)
@click.option("--encoder", default=None,
              help="A built-in encoder or one registered with `imagesearch encoder register` "
                   "(default: the service type's).")
@click.option("--shard", default=None, help="Keep its pictures on this shard (`imagesearch shard add`).")
@pass_service
def instance_create(holder: ServiceHolder, name, service_type, capacity, qps, region, encoder, shard) -> None:
    """Create an instance NAME."""
    options = {k: v for k, v in {"capacity": capacity, "qps": qps}.items() if v is not None}
    created = holder.get().create_instance(name, service_type, region=region, encoder=encoder, shard=shard, **options)
    where = f", on shard {created.shard}" if created.shard else ""
    click.echo(f"created {created.service_type} instance {created.name} (capacity {created.capacity}, qps {created.qps}{where})")


@instance.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_service
def instance_list(holder: ServiceHolder, as_json: bool) -> None:
    """List instances."""
    rows = [i.as_dict() for i in holder.get().list_instances()]
    records(rows, ["Name", "ServiceType", "TotalCount", "Capacity", "Qps", "Region"], as_json, indent=2)


@instance.command("show")
@click.argument("name")
@pass_service
def instance_show(holder: ServiceHolder, name: str) -> None:
    """Print an instance's details as JSON."""
    click.echo(json.dumps(public_record(holder.get().describe_instance(name).as_dict()), indent=2))


def _removal(command: str, summary: str, question: str, method: str, done: str) -> None:
    """`instance clear` and `instance delete` (the service's ``method``): asked first unless --yes."""

    @instance.command(command, help=summary)
    @click.argument("name")
    @click.option("--end-sessions", is_flag=True,
                  help="If open transactions keep the instance busy, end the database sessions that hold its "
                       "locks (each is logged; needs a superuser or pg_signal_backend).")
    @yes_option
    @pass_service
    def run(holder: ServiceHolder, name: str, end_sessions: bool, yes: bool) -> None:
        confirmed(yes, question.format(name=name))
        getattr(holder.get(), method)(name, end_sessions=end_sessions)
        click.echo(done.format(name=name))


_removal("clear", "Delete every picture of instance NAME (the instance stays).",
         "Delete every picture of instance {name!r}?", "clear_instance", "cleared instance {name}")
_removal("delete", "Delete an instance and all its pictures.", "Delete instance {name} and all its pictures?",
         "delete_instance", "deleted instance {name}")


@cli.group()
def encoder() -> None:
    """Register and list encoders (bring your own ONNX model)."""


@encoder.command("register")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_service
def encoder_register(holder: ServiceHolder, spec: Path) -> None:
    """Register the ONNX encoder described by SPEC (TOML or JSON; see the README)."""
    registered = holder.get().register_encoder(spec)
    click.echo(f"registered encoder {registered.name} ({registered.dim}-d, {registered.onnx})")


@encoder.command("list")
@pass_service
def encoder_list(holder: ServiceHolder) -> None:
    """List the encoders instances can use."""
    rows = [
        {"Name": e["name"], "Dim": e["dim"], "Model": e["spec"]["onnx"] if e["spec"] else "built-in"}
        for e in holder.get().list_encoders()
    ]
    table(rows, ["Name", "Dim", "Model"])


@instance.command("plan")
@click.argument("name")
@click.option("--capacity", type=int, help="Most pictures the instance may hold (not below those it holds).")
@click.option("--qps", type=int, help="Queries per second of its plan.")
@pass_service
def instance_plan(holder: ServiceHolder, name: str, capacity, qps) -> None:
    """Change instance NAME's plan."""
    changed = holder.get().change_plan(name, capacity=capacity, qps=qps)
    click.echo(f"instance {changed.name}: capacity {changed.capacity}, qps {changed.qps}")


@instance.command("renew")
@click.argument("name")
@click.option("--days", type=int, help="Days more, from its expiry (or from now if it has expired).")
@click.option("--never", is_flag=True, help="It never expires.")
@pass_service
def instance_renew(holder: ServiceHolder, name: str, days, never: bool) -> None:
    """Renew instance NAME."""
    if never == (days is not None):
        raise click.UsageError("give --days N or --never")
    renewed = holder.get().renew_instance(name, None if never else days)
    click.echo(f"instance {renewed.name} expires {renewed.expires_at.isoformat(timespec='seconds') if renewed.expires_at else 'never'}")
