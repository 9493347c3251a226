"""The shape every ONNX model of the library has: a lazy ``load()`` and one ``predict()`` template.

The session is made on first use (once, even under concurrent first calls) or injected, so a test or a
tool can hand a model a session of its own.
"""

from __future__ import annotations

import os
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from imagesearch_pg.vision.sessions import cpu_session


class InferenceModel(ABC):
    def __init__(self, cache_dir: Path, threads: int = 2, session=None):
        self.cache_dir = cache_dir
        self.threads = threads
        self._session = session
        self._lock = threading.Lock()

    @abstractmethod
    def model_path(self) -> Path:
        """The ONNX file, made ready on disk if needed (it may be built from packaged weights)."""

    @abstractmethod
    def _predict(self, inputs, **options):
        """The model's work on a loaded session."""

    def load(self) -> None:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = cpu_session(self.model_path(), self.threads)

    @property
    def session(self):
        self.load()
        return self._session

    def predict(self, inputs, **options):
        self.load()
        return self._predict(inputs, **options)


def write_atomically(path: Path, data: bytes) -> None:
    """Several processes may build the same model at once: each writes its own file, the last rename wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
