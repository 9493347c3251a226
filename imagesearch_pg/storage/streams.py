"""Files of a location as ordinary buffered streams whose failures, at any read or write, are typed errors.

Writers commit only when their block ends without an exception: a local file is written beside its
final name and renamed, an S3 object is uploaded (multipart past one block) and completed on close; on an
exception the temporary file is removed or the upload aborted, so no partial result is ever seen.
"""

from __future__ import annotations

import io
import os
import secrets
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import BinaryIO, Callable, Iterator

import fsspec

Guard = Callable[[], AbstractContextManager]
S3_BLOCK_BYTES = 8 * 2**20  # S3 reads' range and writes' part size (a part must be at least 5 MB)


class _Guarded(io.RawIOBase):
    """The raw side of a store's file: every call that touches the store runs under ``guard``."""

    def __init__(self, inner, guard: Guard):
        super().__init__()
        self._inner = inner
        self._guard = guard

    def readable(self) -> bool:
        return self._inner.readable()

    def writable(self) -> bool:
        return self._inner.writable()

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with self._guard():
            return self._inner.readinto(buffer)

    def write(self, data) -> int:
        with self._guard():
            return self._inner.write(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._guard():
            return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                with self._guard():
                    self._inner.close()
            finally:
                super().close()


def reader(fs: fsspec.AbstractFileSystem, path: str, guard: Guard) -> BinaryIO:
    """``path`` opened for reading: seekable, line by line or in blocks."""
    with guard():
        inner = fs.open(path, "rb", block_size=S3_BLOCK_BYTES)
    return io.BufferedReader(_Guarded(inner, guard))


@contextmanager
def local_writer(path: str, guard: Guard) -> Iterator[BinaryIO]:
    folder, base = os.path.split(path)
    temporary = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.part")  # same folder: rename is atomic
    with guard():
        os.makedirs(folder, exist_ok=True)
        inner = open(temporary, "wb", buffering=0)
    stream = io.BufferedWriter(_Guarded(inner, guard))
    try:
        yield stream
        with guard():
            stream.flush()
            os.fsync(inner.fileno())  # the data is on disk before the name says the file is complete
            stream.close()
            os.replace(temporary, path)
    except BaseException:
        with suppress(Exception):
            stream.close()
        with suppress(OSError):
            os.unlink(temporary)
        raise


@contextmanager
def s3_writer(fs: fsspec.AbstractFileSystem, path: str, guard: Guard) -> Iterator[BinaryIO]:
    with guard():
        inner = fs.open(path, "wb", block_size=S3_BLOCK_BYTES)
    stream = io.BufferedWriter(_Guarded(inner, guard))
    try:
        yield stream
        stream.close()  # uploads the last part and completes the object
    except BaseException:
        with suppress(Exception):
            inner.discard()  # aborts a multipart upload under way
        inner.closed = True  # discarded files cannot close: keep their finaliser from trying
        with suppress(Exception):
            stream.close()
        raise
