"""What every subcommand shares: the service, opened on first use, and the one-line error."""

from __future__ import annotations

import sys

import click

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import ImageSearchError
from imagesearch_pg.service import ImageSearch


class ServiceHolder:
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


pass_service = click.make_pass_decorator(ServiceHolder)


def fail(exc: ImageSearchError) -> None:
    click.echo(f"error: {exc.code}: {exc.message}", err=True)
    sys.exit(1)


def confirmed(yes: bool, question: str) -> None:
    """Ask ``question`` unless --yes was given; stop here if the answer is no."""
    if not yes:
        click.confirm(question, abort=True)


yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
