"""Containment: a task's Path and the file names in its meta file stay inside their location.

Checks are on the text first (the same for every store: no '..', no control characters, no backslash),
then, on local folders, on the real path with every symbolic link followed.
"""

from __future__ import annotations

import os
import re

from imagesearch_pg.storage.errors import PathRefused, shown

MAX_PATH_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def folder_segments(path: str) -> tuple[str, ...]:
    """The segments of a task's Path: it starts with '/', which alone is the location's root."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise PathRefused(f"Path must start with '/' (the location's root), got {shown(str(path))}")
    return _segments("Path", path)


def name_segments(name: str, label: str = "file name") -> tuple[str, ...]:
    """The segments of a file name inside a folder: relative, '/' only between subfolders."""
    if not isinstance(name, str) or name.startswith("/"):
        raise PathRefused(f"{label} {shown(str(name))} must be relative to its folder, not start with '/'")
    segments = _segments(label, name)
    if not segments:
        raise PathRefused(f"{label} {shown(name)} names no file")
    return segments


def _segments(label: str, text: str) -> tuple[str, ...]:
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"{label} must be at most {MAX_PATH_CHARS} characters, got {len(text)}")
    if _CONTROL.search(text):
        raise PathRefused(f"{label} {shown(text)} must not contain NUL or control characters")
    if "\\" in text:
        raise PathRefused(f"{label} {shown(text)} must not contain backslashes; separate folders with '/'")
    segments = tuple(s for s in text.split("/") if s not in ("", "."))
    if ".." in segments:
        raise PathRefused(f"{label} {shown(text)} must not contain '..' segments")
    return segments


def local_path(root: str, segments: tuple[str, ...], shown_as: str) -> str:
    """The real path of ``segments`` under the folder ``root``; refused if a link leads out of it.

    A file that does not exist yet resolves as far as its folders do, so writers are checked the same way.
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *segments))
    if os.path.commonpath([real_root, real]) != real_root:
        raise PathRefused(f"{shown(shown_as)} leads outside its storage location (through a symbolic link)")
    return real
