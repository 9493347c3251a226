"""The way every picture goes, to be stored or searched with: bytes -> upright RGB -> subject -> vectors.

Category prediction is the step after it (``category``), apart because it reads the instance's pictures.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imagesearch_pg import categories
from imagesearch_pg.errors import InvalidParameter, MissingParameter
from imagesearch_pg.service.encoders import EncoderCatalog
from imagesearch_pg.service.instances import Instances
from imagesearch_pg.service.models import PicInfo
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.store import picture_search
from imagesearch_pg.store.instances import InstanceRef
from imagesearch_pg.vision import category_prediction, intake
from imagesearch_pg.vision.encoders import Description, Encoder
from imagesearch_pg.vision.intake import Box
from imagesearch_pg.vision.subject import SubjectDetector, whole
from imagesearch_pg.vision.thumbnails import thumbnail


@dataclass(frozen=True)
class Prepared:
    """A picture made ready to store or to search with."""

    description: Description
    boxes: list[Box]  # the subject first
    encoder: Encoder
    keypoints: Future | None  # of Encoder.keypoints(), computed meanwhile on another thread
    thumbnail: bytes | None = None  # what the console shows of a picture to store: vision/thumbnails.py's, or the file

    def pic_info(self, category_id: int) -> PicInfo:
        return PicInfo(category_id, self.boxes[0].to_region(), [box.to_region() for box in self.boxes])


class PicturePipeline:
    def __init__(self, encoders: EncoderCatalog, cache_dir: Path, threads: int, *, keep_originals: bool = False):
        self.encoders = encoders
        self.keep_originals = keep_originals  # the console shows the file as it was sent, not a thumbnail
        self.detector = SubjectDetector(cache_dir, threads)
        # The same model on a one-thread session for pictures framed several at once (a batch task's readers):
        # each call keeps to one core and none waits for another's threads (U2-Net-p: 61 -> 57 ms CPU a picture).
        self._detector_alongside = SubjectDetector(cache_dir, 1)
        # Keypoints and thumbnails (OpenCV, which releases the GIL) are made on these meanwhile: keypoints
        # while the database searches, a thumbnail while the picture is encoded.
        self._background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pipeline-side")

    def prepare(self, instance: InstanceRef, picture: bytes, *, crop: bool, region: str | None, query: bool,
                keypoints: bool = False) -> Prepared:
        """The picture decoded, cut to its subject (a given Region wins; Crop as the service type allows) and
        described by the instance's encoder; with ``keypoints`` (and an encoder that has them) its local
        features are found meanwhile on another thread."""
        image, boxes = self.framed(instance, picture, crop=crop, region=region)
        encoder = self.encoders.get(instance.encoder)
        view = None if query or self.keep_originals else self._background.submit(thumbnail, image)
        description = encoder.describe(image, boxes[0], query=query)
        # Started after the network (which keeps both cores busy), so it overlaps the database's work.
        found = (
            self._background.submit(encoder.keypoints, image, boxes[0], query=query)
            if keypoints and encoder.silhouettes
            else None
        )
        kept = None if query else bytes(picture) if self.keep_originals else view.result()
        return Prepared(description, boxes, encoder, found, kept)

    def framed(self, instance: InstanceRef, picture: bytes, *, crop: bool, region: str | None,
               alongside: bool = False):
        """The picture decoded (intake's limits) and its boxes, the subject first: a given Region wins, else
        the detected subjects where Crop asks and the service type cuts, else the whole picture.
        ``alongside``: other pictures are framed at the same time, each on its own thread."""
        if picture is None or len(picture) == 0:
            raise MissingParameter("PicContent is required")
        if not isinstance(picture, (bytes, bytearray, memoryview)):
            raise InvalidParameter(f"the picture must be its file's bytes, got {type(picture).__name__}")
        rules = SERVICE_TYPES[instance.service_type]
        image = intake.read_picture(bytes(picture), instance.service_type)
        height, width = image.shape[:2]
        if region:
            boxes = [intake.parse_region(region, width, height)]
        elif crop and rules.crops:
            detector = self._detector_alongside if alongside else self.detector
            boxes = detector.detect(image, saliency=rules.saliency)
        else:
            boxes = [whole(height, width)]
        return image, boxes

    def prepare_stored(self, instance: InstanceRef, framed: list[tuple], pool: ThreadPoolExecutor,
                       originals: list[bytes] | None = None) -> list[Prepared]:
        """Many framed pictures (``framed``'s results) to store, described in batches of the encoder; their
        keypoints, where the encoder has them, found on ``pool`` meanwhile. ``originals``: their files, kept
        instead of thumbnails when the pipeline keeps originals."""
        encoder = self.encoders.get(instance.encoder)
        found = [pool.submit(encoder.keypoints, image, boxes[0], query=False) if encoder.silhouettes else None
                 for image, boxes in framed]
        # Thumbnails on ``pool`` too (OpenCV releases the GIL): off the encoder's thread, which a batch waits on.
        views = (list(originals) if self.keep_originals and originals is not None
                 else [pool.submit(thumbnail, image) for image, _ in framed])
        descriptions = encoder.describe_many([(image, boxes[0]) for image, boxes in framed])
        return [Prepared(description, boxes, encoder, keypoints, view if isinstance(view, bytes) else view.result())
                for description, (_, boxes), keypoints, view in zip(descriptions, framed, found, views)]

    def close(self) -> None:
        self._background.shutdown()


def category(instances: Instances, instance: InstanceRef, prepared: Prepared, given: int | None) -> int:
    """The picture's category: ``given`` (validation.category), else on instances of a type with
    categories the encoder's ImageNet logits fused with a vote of the instance's nearest user-labelled
    pictures; on the other types every picture is in Other."""
    if not SERVICE_TYPES[instance.service_type].categories:
        return categories.OTHER
    if given is not None:
        return given
    description = prepared.description
    neighbours = instances.read(
        instance.name,
        lambda conn, current: picture_search.labelled_neighbours(
            conn, current.id, current.embedding_dim, description.embedding, category_prediction.NEIGHBOURS
        ),
    )
    return category_prediction.predict_category(description.logits, neighbours)
