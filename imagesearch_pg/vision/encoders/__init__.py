"""Picture encoders: the built-in EfficientNet-Lite0 family and users' own ONNX models, one loaded
encoder per name per process."""

from __future__ import annotations

import threading
from pathlib import Path

from imagesearch_pg.vision.encoder_spec import EncoderSpec
from imagesearch_pg.vision.encoders.base import Description, Encoded, Encoder
from imagesearch_pg.vision.encoders.efficientnet import (
    BUILTIN_ENCODERS,
    EfficientNetLite0,
    EfficientNetLite0Gem,
    EfficientNetLite0GemShape,
    EfficientNetLite0Texture,
    EfficientNetLite0Trademark,
)
from imagesearch_pg.vision.encoders.onnx_model import OnnxEncoder, OnnxTextEncoder

__all__ = [
    "BUILTIN_ENCODERS", "Description", "EfficientNetLite0", "EfficientNetLite0Gem", "EfficientNetLite0GemShape",
    "EfficientNetLite0Texture", "EfficientNetLite0Trademark", "Encoded", "Encoder", "EncoderRegistry", "OnnxEncoder",
    "OnnxTextEncoder",
]


class EncoderRegistry:
    """One loaded encoder per name per process: built-in ones by name, users' ones from their spec."""

    def __init__(self, cache_dir: Path, threads: int = 2):
        self.cache_dir = cache_dir
        self.threads = threads
        self._loaded: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def get(self, name: str, spec: EncoderSpec | None = None) -> Encoder:
        with self._lock:
            if name not in self._loaded:
                if spec is not None:
                    self._loaded[name] = OnnxEncoder(spec, self.cache_dir, self.threads)
                else:
                    self._loaded[name] = BUILTIN_ENCODERS[name](self.cache_dir, self.threads)
            return self._loaded[name]
