"""Storage locations the operator exposes: added (checked whole before anything is written), listed,
looked up by name, removed; and the location where exports go."""

from __future__ import annotations

import re

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service import validation
from imagesearch_pg.storage import Location, UnknownLocation, results_location, urls
from imagesearch_pg.storage.errors import shown
from imagesearch_pg.store import storage_locations as location_store
from imagesearch_pg.store.database import Database

# The same rule as the table's check (migration 0014).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_REGION_CHARS, _PROFILE_CHARS = "letters, digits or '-'", "letters, digits or '.', '_', '@', '+', '-'"


class StorageLocations:
    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings

    def add(self, name: str, url: str, *, endpoint: str | None = None, region: str | None = None,
            profile: str | None = None, instances: list[str] | None = None) -> Location:
        """A new location; a local folder must exist now, an S3 one is first reached when used.
        ``instances``: the only instances that may import from it (default: every one)."""
        _check_name(name)
        stored = urls.normalised(url)
        if not stored.startswith("s3:") and (endpoint, region, profile) != (None, None, None):
            raise InvalidParameter("endpoint, region and profile apply to s3:// locations only")
        location = Location(name, stored, urls.endpoint(endpoint),
                            _checked("region", region, _REGION, _REGION_CHARS),
                            _checked("profile", profile, _PROFILE, _PROFILE_CHARS),
                            None if instances is None else tuple(validation.instance_name(i) for i in instances))
        with self.database.transaction() as conn:
            added = location_store.insert(conn, location.name, location.url, location.endpoint, location.region,
                                          location.profile, None if instances is None else list(location.instances))
        if not added:
            raise InvalidParameter(f"location {name} exists: remove it first to change it")
        return location

    def listing(self) -> list[Location]:
        with self.database.reading() as conn:
            return [_location(row) for row in location_store.listing(conn)]

    def get(self, name: str, *, for_instance: str | None = None) -> Location:
        """The location ``name``; UnknownLocation (InvalidParameter) if there is none, or if it does not
        allow ``for_instance`` to import from it (told apart from none only to the operator)."""
        row = None
        if isinstance(name, str) and NAME.fullmatch(name):
            with self.database.reading() as conn:
                row = location_store.find(conn, name)
        location = None if row is None else _location(row)
        if location is None or (for_instance is not None and not location.allows(for_instance)):
            raise self._unknown(name)
        return location

    def remove(self, name: str) -> None:
        """Forget the location (its files stay where they are)."""
        removed = False
        if isinstance(name, str) and NAME.fullmatch(name):
            with self.database.transaction() as conn:
                removed = location_store.delete(conn, name)
        if not removed:
            raise self._unknown(name)

    def results(self) -> Location:
        """Where exports are written (settings.results_location, else the built-in local folder)."""
        return results_location(self.settings, self)

    @staticmethod
    def _unknown(name: str) -> UnknownLocation:
        # No list of the known ones: API callers must not learn which folders other instances read.
        return UnknownLocation(f"unknown storage location {shown(str(name))}; the operator lists them with "
                               "`imagesearch storage list` and adds them with `imagesearch storage add NAME URL`")


def _location(row) -> Location:
    *where, instances = row
    return Location(*where, None if instances is None else tuple(instances))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidParameter("storage location name must be 1-63 letters, digits, '.', '_' or '-', starting "
                               f"with a letter or digit, got {shown(str(name))}")


def _checked(label: str, value: str | None, pattern: re.Pattern, allowed: str) -> str | None:
    if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        raise InvalidParameter(f"{label} must be 1-64 {allowed}, starting with a letter or digit, "
                               f"got {shown(str(value))}")
    return value
