"""Read a PyTorch state dict saved in torch's legacy (pre-1.6, non-zip) format, without torch.

Why: the EfficientNet-Lite0 ImageNet weights we use ship as such a ``.pth`` file, and
we turn them into an ONNX model at install/run time.  Depending on torch for that would
pull a multi-GB wheel into the service for one file read, and ``torch.load`` unpickles
arbitrary globals.  This reader uses a restricted unpickler (only the handful of globals
the format needs) and numpy, and returns plain ``numpy.ndarray`` arrays.

File layout (``torch.save(..., _use_new_zipfile_serialization=False)``)::

    pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION) pickle(sys_info)
    pickle(obj)            # tensors are _rebuild_tensor_v2(persistent storage id, offset, size, stride, ...)
    pickle(storage_keys)   # order in which the raw storages follow
    for each key: int64 element count, then element_count * itemsize raw bytes
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["load_legacy_state_dict"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# torch storage class name -> numpy dtype (little-endian; byte order fixed up from sys_info).
# BFloat16 has no numpy dtype: it is read as uint16 and widened to float32 below.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the legacy state-dict format: never loaded."""


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only carries the name (not callable)."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A persistent id: root storage ``key`` (data read later) and the view inside it."""

    key: str
    storage_type: _StorageType
    offset: int  # element offset of this (view of the) storage in the root storage
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """Placeholder for a tensor until the raw storages following the pickles are read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # Same signature as torch._utils._rebuild_tensor_v2; only records what to slice later.
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 without a storage persistent id")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in (*size, *stride)):
        raise pickle.UnpicklingError(f"bad tensor geometry size={size} stride={stride}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only the globals a legacy state dict needs; refuses every other one."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }

    def __init__(self, file, storages: dict[str, tuple[_StorageType, int]]):
        super().__init__(file)
        self._storages = storages  # root key -> (type, numel), shared across the pickles

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise RefusedGlobalError(f"refused global {module}.{name}: not part of a legacy torch state dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"malformed storage persistent id {pid!r}")
        known = self._storages.setdefault(key, (storage_type, numel))
        if known != (storage_type, numel):
            raise pickle.UnpicklingError(f"storage {key} declared twice with different type/size")
        if view is None:
            return _StorageRef(key, storage_type, 0, numel)
        # Pre-1.0 files could reference a slice of a root storage: (view_key, offset, view_size).
        _view_key, view_offset, view_size = view
        if view_offset < 0 or view_offset + view_size > numel:
            raise pickle.UnpicklingError(f"storage view out of bounds in {pid!r}")
        return _StorageRef(key, storage_type, view_offset, view_size)


def _materialize(ref: _TensorRef, roots: dict[str, np.ndarray]) -> np.ndarray:
    storage = ref.storage
    flat = roots[storage.key][storage.offset: storage.offset + storage.numel]
    count = int(np.prod(ref.size, dtype=np.int64))
    if count == 0:
        array = np.zeros(ref.size, dtype=flat.dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= flat.size:
            raise ValueError(f"tensor of size {ref.size} / stride {ref.stride} overruns its storage")
        contiguous = tuple(int(np.prod(ref.size[i + 1:], dtype=np.int64)) for i in range(len(ref.size)))
        if all(s == c for s, c, n in zip(ref.stride, contiguous, ref.size, strict=True) if n > 1):
            array = flat[ref.offset: ref.offset + count].reshape(ref.size)
        else:
            array = np.lib.stride_tricks.as_strided(
                flat[ref.offset:], shape=ref.size,
                strides=tuple(s * flat.itemsize for s in ref.stride), writeable=False)
    # Own, native-endian, writable arrays: callers must not alias the file buffer.
    array = np.array(array, dtype=array.dtype.newbyteorder("="), copy=True)
    if storage.storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def load_legacy_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a legacy-format torch ``state_dict`` file as ``{name: numpy array}``.

    Raises ``ValueError`` if the file is not in this format (bad magic, zip-based file,
    truncated data, inconsistent sizes) and ``pickle.UnpicklingError`` (subclass
    ``RefusedGlobalError``) if it names a global outside the format: nothing is executed.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path}: zip-based torch file (torch >= 1.6 default); only the legacy format is supported")
    stream = io.BytesIO(data)
    storages: dict[str, tuple[_StorageType, int]] = {}

    def next_pickle(what):
        try:
            return _RestrictedUnpickler(stream, storages).load()
        except RefusedGlobalError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError,
                IndexError, AttributeError, struct.error) as exc:
            raise ValueError(f"{path}: not a legacy torch file (bad or truncated {what}: {exc})") from exc

    if next_pickle("magic number") != _MAGIC_NUMBER:
        raise ValueError(f"{path}: not a legacy torch file (wrong magic number)")
    if next_pickle("protocol version") != _PROTOCOL_VERSION:
        raise ValueError(f"{path}: unsupported legacy torch protocol version")
    sys_info = next_pickle("sys info")
    if not isinstance(sys_info, dict):
        raise ValueError(f"{path}: malformed sys info")
    byteorder = "<" if sys_info.get("little_endian", True) else ">"
    state = next_pickle("state dict")
    keys = next_pickle("storage key list")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: top-level object is {type(state).__name__}, not a state dict")
    if not (isinstance(keys, list) and set(keys) == set(storages) and len(keys) == len(storages)):
        raise ValueError(f"{path}: storage key list does not match the storages referenced by the tensors")

    # Raw storages, in key-list order: int64 element count then the data.
    roots: dict[str, np.ndarray] = {}
    pos = stream.tell()
    for key in keys:
        storage_type, numel = storages[key]
        dtype = storage_type.dtype.newbyteorder(byteorder)
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated (no header for storage {key})")
        (count,) = struct.unpack(byteorder + "q", data[pos: pos + 8])
        if count != numel:
            raise ValueError(f"{path}: storage {key} has {count} elements, pickle says {numel}")
        pos += 8
        end = pos + count * dtype.itemsize
        if end > len(data):
            raise ValueError(f"{path}: truncated (storage {key} needs {end - len(data)} more bytes)")
        roots[key] = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} unexpected trailing bytes")

    result: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        result[str(name)] = _materialize(value, roots)
    return result
