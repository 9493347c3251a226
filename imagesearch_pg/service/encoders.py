"""Encoders instances can use: the built-in ones and users' registered ONNX models."""

from __future__ import annotations

import logging
from pathlib import Path

from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.store import encoders as encoder_store
from imagesearch_pg.store.database import Database
from imagesearch_pg.vision.encoder_spec import EncoderSpec, EncoderSpecError
from imagesearch_pg.vision.encoders import BUILTIN_ENCODERS, Encoder, EncoderRegistry, OnnxEncoder

log = logging.getLogger(__name__)


class EncoderCatalog:
    def __init__(self, database: Database, registry: EncoderRegistry):
        self.database = database
        self.registry = registry
        self._specs: dict[str, EncoderSpec] = {}

    def register(self, spec_path: Path) -> EncoderSpec:
        """Register a user's ONNX encoder from its spec file, after running it once to check the spec."""
        try:
            spec = EncoderSpec.from_file(spec_path)
            OnnxEncoder(spec, self.registry.cache_dir, 1).check()
        except EncoderSpecError as exc:
            raise InvalidParameter(str(exc)) from None
        with self.database.transaction() as conn:
            added = encoder_store.insert(conn, spec.name, spec.dim, spec.to_dict())
        if not added:
            raise InvalidParameter(f"an encoder named {spec.name!r} is already registered")
        log.info("encoder registered", extra={"encoder": spec.name, "dim": spec.dim})
        return spec

    def listing(self) -> list[dict]:
        """Every encoder an instance can use: name, dim, and the spec (None for built-in ones)."""
        with self.database.reading() as conn:
            return encoder_store.listing(conn)

    def get(self, name: str) -> Encoder:
        """The loaded encoder an instance names (instances only name registered encoders)."""
        if name in BUILTIN_ENCODERS:
            return self.registry.get(name)
        spec = self._specs.get(name)
        if spec is None:  # registered specs never change, so one read per process is enough
            with self.database.reading() as conn:
                raw = encoder_store.spec_of(conn, name)
            spec = self._specs.setdefault(name, EncoderSpec.from_dict(raw))
        return self.registry.get(name, spec)

    def warm_up(self, names: set[str]) -> None:
        """Make the built-in models' files ready on disk (built from their packaged weights once), without
        loading them: a server does this before it forks its workers."""
        for name in sorted(names & set(BUILTIN_ENCODERS)):
            self.registry.get(name).model_path()
