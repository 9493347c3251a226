"""Bring your own encoder: a small spec file describes how to feed an ONNX model and read its embedding.

Example (TOML; JSON with the same keys works too)::

    name = "clip-vit-b32"
    onnx = "clip-vit-b32-visual.onnx"      # relative to the spec file, or absolute
    dim = 512                              # length of the embedding the output holds
    output = "image_embeds"                # the output to read (N x dim, or N x dim x 1 x 1)
    input_size = 224                       # pictures are resized to this square (or [width, height])
    channel_order = "RGB"                  # or "BGR"
    layout = "NCHW"                        # or "NHWC"
    scale = 0.00392156862745098            # pixel values 0..255 are multiplied by this first (1/255)
    mean = [0.48145466, 0.4578275, 0.40821073]   # then (x - mean) / std, per channel
    std = [0.26862954, 0.26130258, 0.27577711]

Optional: ``input_name`` (default: the model's first input). The embedding is L2-normalised after reading.

Optional text encoder (for SearchImageByText), whose embeddings live in the same space as the pictures'::

    [text]
    onnx = "clip-vit-b32-textual.onnx"     # relative to the spec file, or absolute
    tokenizer = "tokenizer.json"           # a Hugging Face `tokenizers` file
    output = "text_embeds"                 # N x dim
    max_length = 77                        # token ids are padded / cut to this length
    input_name = "input_ids"               # optional (default: the model's first input)
    attention_mask = "attention_mask"      # optional: the input that takes the 0/1 padding mask
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
MAX_DIM = 2000  # pgvector's HNSW limit for vector columns


class EncoderSpecError(ValueError):
    """The spec file is missing, unreadable, or describes something we cannot run."""


@dataclass(frozen=True)
class TextSpec:
    onnx: Path
    tokenizer: Path
    output: str
    max_length: int = 77
    input_name: str | None = None
    attention_mask: str | None = None

    @classmethod
    def from_dict(cls, raw) -> "TextSpec":
        if not isinstance(raw, dict):
            raise EncoderSpecError("text must be a table: onnx, tokenizer, output, and optionally max_length, "
                                   "input_name, attention_mask")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise EncoderSpecError(f"unknown text keys {sorted(unknown)}; known keys: {sorted(known)}")
        for key in ("onnx", "tokenizer", "output"):
            if key not in raw:
                raise EncoderSpecError(f"the text encoder needs '{key}'")
        for key in ("onnx", "tokenizer"):
            if not Path(raw[key]).is_file():
                raise EncoderSpecError(f"the text encoder's {key} file {raw[key]} does not exist")
        max_length = raw.get("max_length", 77)
        if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 <= max_length <= 4096:
            raise EncoderSpecError(f"text max_length must be an integer from 1 to 4096, got {max_length!r}")
        return cls(Path(raw["onnx"]), Path(raw["tokenizer"]), str(raw["output"]), max_length,
                   raw.get("input_name"), raw.get("attention_mask"))

    def to_dict(self) -> dict:
        return {**asdict(self), "onnx": str(self.onnx), "tokenizer": str(self.tokenizer)}


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    onnx: Path
    dim: int
    output: str
    input_size: tuple[int, int]  # width, height
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_name: str | None = None
    text: TextSpec | None = None

    @classmethod
    def from_file(cls, path: Path) -> "EncoderSpec":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except FileNotFoundError:
            raise EncoderSpecError(f"no encoder spec file at {path}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise EncoderSpecError(f"{path} is not a readable TOML or JSON encoder spec: {exc}") from None
        onnx = raw.get("onnx")
        if isinstance(onnx, str) and not Path(onnx).is_absolute():
            raw["onnx"] = str((path.parent / onnx).resolve())
        text = raw.get("text")
        if isinstance(text, dict):
            for key in ("onnx", "tokenizer"):
                if isinstance(text.get(key), str) and not Path(text[key]).is_absolute():
                    text[key] = str((path.parent / text[key]).resolve())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "EncoderSpec":
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise EncoderSpecError(f"unknown spec keys {sorted(unknown)}; known keys: {sorted(known)}")
        for key in ("name", "onnx", "dim", "output", "input_size"):
            if key not in raw:
                raise EncoderSpecError(f"the encoder spec needs '{key}'")
        name = raw["name"]
        if not isinstance(name, str) or not (1 <= len(name) <= 64) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise EncoderSpecError("name must be 1-64 letters, digits, '-', '_' or '.'")
        dim = raw["dim"]
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIM:
            raise EncoderSpecError(f"dim must be an integer from 1 to {MAX_DIM}, got {dim!r}")
        size = raw["input_size"]
        size = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, list) else None
        if not size or len(size) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in size):
            raise EncoderSpecError("input_size must be an integer 16-4096 or [width, height] of such integers")
        layout, order = raw.get("layout", "NCHW"), raw.get("channel_order", "RGB")
        if layout not in LAYOUTS:
            raise EncoderSpecError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if order not in CHANNEL_ORDERS:
            raise EncoderSpecError(f"channel_order must be one of {CHANNEL_ORDERS}, got {order!r}")
        mean, std = _triple("mean", raw.get("mean", 0.0)), _triple("std", raw.get("std", 1.0))
        if any(s == 0 for s in std):
            raise EncoderSpecError("std must not contain 0")
        scale = raw.get("scale", 1 / 255)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
            raise EncoderSpecError(f"scale must be a positive number, got {scale!r}")
        onnx = Path(raw["onnx"])
        if not onnx.is_file():
            raise EncoderSpecError(f"the ONNX file {onnx} does not exist")
        return cls(
            name=name, onnx=onnx, dim=dim, output=str(raw["output"]), input_size=size, channel_order=order,
            layout=layout, scale=float(scale), mean=mean, std=std, input_name=raw.get("input_name"),
            text=None if raw.get("text") is None else TextSpec.from_dict(raw["text"]),
        )

    def to_dict(self) -> dict:
        raw = asdict(self)
        raw["onnx"] = str(self.onnx)
        raw["text"] = None if self.text is None else self.text.to_dict()
        raw["input_size"], raw["mean"], raw["std"] = list(self.input_size), list(self.mean), list(self.std)
        return raw


def _triple(key: str, value) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(values, list) or len(values) != 3 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise EncoderSpecError(f"{key} must be a number or a list of 3 numbers, got {value!r}")
    return tuple(float(v) for v in values)
