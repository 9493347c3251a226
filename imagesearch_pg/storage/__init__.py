"""Storage locations: the folders (local, or on an S3-compatible store) the operator exposes to batch
imports and where exports are written, reached through fsspec. Nothing outside them can be read."""

from imagesearch_pg.storage.errors import (
    FileTooLarge,
    PathRefused,
    StorageNotFound,
    StoragePermissionDenied,
    StorageUnavailable,
    UnknownLocation,
)
from imagesearch_pg.storage.locations import RESULTS, Folder, Location, results_location

__all__ = [
    "RESULTS", "FileTooLarge", "Folder", "Location", "PathRefused", "StorageNotFound", "StoragePermissionDenied",
    "StorageUnavailable", "UnknownLocation", "results_location",
]
