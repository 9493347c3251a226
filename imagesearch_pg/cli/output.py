"""How the command prints records: a table for people, JSON for scripts, under the public field names."""

from __future__ import annotations

import json

import click

from imagesearch_pg.service.models import public_record


def records(rows: list[dict], columns: list[str], as_json: bool, indent: int | None = None) -> None:
    """Rows of Python-named values, shown under their public names (those of the HTTP API)."""
    shown = [public_record(row) for row in rows]
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=indent))
    else:
        table(shown, columns)


def table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(no results)")
        return
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))
