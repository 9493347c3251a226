"""What every picture encoder is and gives: embeddings (and, for some, logits, silhouettes, keypoints)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from imagesearch_pg.vision import transforms
from imagesearch_pg.vision.inference_model import InferenceModel
from imagesearch_pg.vision.intake import Box


# Pictures per network run when many are described at once. EfficientNet-Lite0 on 2 cores ran 4 a run
# fastest, alone (raw onnxruntime: 207 img/s at 1, 270 at 4, 234 at 8, 222 at 16; benchmarks/encoder.py) and
# two runs at once as a batch import does (encoder alone: 265 img/s at 4, 222-243 at 8, 186 at 16).
BATCH = 4


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
    """``predict(images)``: RGB uint8 pictures (any sizes) -> float32 N x dim, each row L2-normalised."""

    name: str
    dim: int
    silhouettes = False  # whether describe() gives silhouettes and keypoints() keypoints (own columns)
    silhouette_margin = 0.0  # added to silhouette distances before they compete with the picture's

    @abstractmethod
    def encode(self, images: list[np.ndarray]) -> Encoded:
        """The pictures' embeddings, with the logits where the model has them."""

    def _predict(self, images: list[np.ndarray]) -> np.ndarray:
        return self.encode(images).embeddings

    def describe(self, image: np.ndarray, box: Box, *, query: bool) -> Description:
        """The picture's subject ``box`` encoded; ``query`` says whether it is searched with or stored."""
        encoded = self.encode([transforms.crop(image, box)])
        return Description(encoded.embeddings[0], None if encoded.logits is None else encoded.logits[0])

    def describe_many(self, framed: list[tuple[np.ndarray, Box]]) -> list[Description]:
        """Pictures to store (each with its subject box), described in batches of BATCH: one network run
        for many pictures is several times faster per picture than one each."""
        described = []
        for start in range(0, len(framed), BATCH):
            part = framed[start : start + BATCH]
            encoded = self.encode([transforms.crop(image, box) for image, box in part])
            described += [Description(embedding, None if encoded.logits is None else encoded.logits[at])
                          for at, embedding in enumerate(encoded.embeddings)]
        return described

    def keypoints(self, image: np.ndarray, box: Box, *, query: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Local features for re-ranking (descriptors.local_features), for encoders that use them."""
        return None

    def text_encoder(self) -> InferenceModel | None:
        """The model that puts phrases in this encoder's space (SearchImageByText), if it has one:
        its ``predict(text)`` gives one L2-normalised vector."""
        return None
