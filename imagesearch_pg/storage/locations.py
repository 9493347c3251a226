"""A storage location (a folder the operator exposes, local or on an S3-compatible store) and its folders.

Everything a task reads or writes goes through a Location: names are checked for containment first
(paths.py), and failures come back as the typed errors of errors.py.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, Iterator, Protocol

import fsspec

from imagesearch_pg.config import Settings
from imagesearch_pg.storage import filesystems, streams, urls
from imagesearch_pg.storage.errors import FileTooLarge, StorageNotFound, guarded, megabytes, shown
from imagesearch_pg.storage.paths import folder_segments, local_path, name_segments

RESULTS = "results"  # the built-in location of exports when no results_location is configured


@dataclass(frozen=True)
class Location:
    name: str
    url: str  # normalised: file:///abs/folder or s3://bucket[/prefix] (see urls.py)
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None  # a profile of the AWS config files, never a key
    instances: tuple[str, ...] | None = None  # the instances that may import from it; None: every one

    def allows(self, instance_name: str) -> bool:
        return self.instances is None or instance_name in self.instances

    @property
    def is_local(self) -> bool:
        return self.url.startswith("file:")

    def folder(self, path: str) -> "Folder":
        """The folder ``path`` (a task's Path: '/' is the location's root); PathRefused if it could leave
        the location."""
        segments = folder_segments(path)
        shown_as = "/" + "/".join(segments)
        self.path_of(segments, shown_as)  # on a local folder, a link leading out is refused now
        return Folder(self, segments, shown_as)

    @contextmanager
    def writer(self, relative_path: str) -> Iterator[BinaryIO]:
        """A stream that becomes the file ``relative_path`` when the block ends; nothing if it raises."""
        path, guard = self._file("write", relative_path)
        writing = streams.local_writer(path, guard) if self.is_local else streams.s3_writer(
            self.filesystem(), path, guard)
        with writing as stream:
            yield stream

    @contextmanager
    def reader(self, relative_path: str) -> Iterator[BinaryIO]:
        path, guard = self._file("read", relative_path)
        with streams.reader(self.filesystem(), path, guard) as stream:
            yield stream

    def remove(self, relative_path: str) -> None:
        """Remove the file; one that is not there is fine."""
        path, guard = self._file("remove", relative_path)
        with guard():
            try:
                self.filesystem().rm_file(path)
            except FileNotFoundError:
                pass

    def size(self, relative_path: str) -> int:
        path, guard = self._file("read", relative_path)
        with guard():
            info = self.filesystem().info(path)
            if info["type"] != "file":
                raise FileNotFoundError(path)  # a folder is no file: the guard says so
            return int(info["size"])

    def _file(self, action: str, relative_path: str) -> tuple[str, streams.Guard]:
        path = self.path_of(name_segments(relative_path), relative_path)
        return path, self.guard(action, f"file {shown(relative_path)}", f"location {self.name}")

    # ---- for Folder and the streams ---------------------------------------------------------------------

    def path_of(self, segments: tuple[str, ...], shown_as: str) -> str:
        """The fsspec path of ``segments`` under the location's root (a local one with links followed)."""
        if self.is_local:
            return local_path(urls.local_root(self.url), segments, shown_as)
        return "/".join((urls.s3_root(self.url), *segments))

    def filesystem(self) -> fsspec.AbstractFileSystem:
        if self.is_local:
            return filesystems.local()
        return filesystems.s3(self.name, self.endpoint, self.region, self.profile)

    def guard(self, action: str, what: str, where: str) -> streams.Guard:
        hidden = () if self.is_local else filesystems.hidden(self.name)
        return partial(guarded, action, what, where, hidden)


@dataclass(frozen=True)
class Folder:
    """A folder of a location, as a task's Path names it; files are named relative to it."""

    location: Location
    segments: tuple[str, ...]
    path: str  # as shown in messages: /a/b

    def open(self, name: str, *, what: str | None = None) -> BinaryIO:
        """The file ``name`` (subfolders allowed), seekable: streamed line by line and resumed at an offset.

        ``what`` says in messages what was looked for (default: file 'name'), as in "no increment.meta file
        in /x of location shop-s3"."""
        what = what or f"file {shown(name)}"
        path, guard = self._file(name), self._guard(what)
        self._regular(path, guard, what)
        return streams.reader(self.location.filesystem(), path, guard)

    def read(self, name: str, max_bytes: int, *, what: str | None = None) -> bytes:
        """The whole file ``name`` (a picture); FileTooLarge past ``max_bytes``, told by its size before
        it is read."""
        what = what or f"picture {shown(name)}"
        path, guard = self._file(name), self._guard(what)
        self._regular(path, guard, what)
        too_large = FileTooLarge(f"{what} in {self.path} of location {self.location.name} is over "
                                 f"{megabytes(max_bytes)}")
        with guard(), self.location.filesystem().open(path, "rb") as file:
            size = file.seek(0, 2)
            if size > max_bytes:
                raise too_large
            file.seek(0)
            data = file.read(size + 1)  # not max_bytes + 1: a local read allocates what it is asked for
            if len(data) > size:  # it grew since its size was read
                data += file.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:
            raise too_large
        return data

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a file here; failures to ask (permission, a down store) are errors, not False."""
        path = self._file(name)
        with self._guard(f"file {shown(name)}")():
            try:
                return self.location.filesystem().info(path)["type"] == "file"
            except (FileNotFoundError, NotADirectoryError):
                return False

    def _regular(self, path: str, guard: streams.Guard, what: str) -> None:
        """A local name must be a regular file: opening a FIFO would wait forever, a device never end."""
        if self.location.is_local:
            with guard():
                regular = stat.S_ISREG(os.stat(path).st_mode)
            if not regular:
                raise StorageNotFound(f"{what} in {self.path} of location {self.location.name} is not a regular file")

    def _file(self, name: str) -> str:
        return self.location.path_of(self.segments + name_segments(name), f"{self.path.rstrip('/')}/{name}")

    def _guard(self, what: str) -> streams.Guard:
        return self.location.guard("read", what, f"{self.path} of location {self.location.name}")


class Lookup(Protocol):
    def get(self, name: str) -> Location: ...


def results_location(settings: Settings, locations: Lookup) -> Location:
    """Where exports are written: the configured results_location, else the local folder results_dir
    (made if missing). The built-in one is not in the table: tasks cannot read from it unless the
    operator adds it."""
    if settings.results_location:
        return locations.get(settings.results_location)
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    return Location(RESULTS, settings.results_dir.resolve().as_uri())
