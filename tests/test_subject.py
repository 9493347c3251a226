"""Subject detection: real pictures through the real detector (U2-Net-p from its PyPI package), no bench data."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from imagesearch_pg.vision import subject as S
from imagesearch_pg.vision.intake import Box


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> S.SubjectDetector:
    return S.SubjectDetector(tmp_path_factory.mktemp("models"), threads=2)


def jpeg(image: np.ndarray, quality: int = 80) -> np.ndarray:
    """Round-trip through JPEG, as uploaded pictures are."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def paste(canvas: np.ndarray, picture: np.ndarray, x: int, y: int) -> Box:
    h, w = picture.shape[:2]
    canvas[y:y + h, x:x + w] = picture
    return Box(x, x + w, y, y + h)


def mask_box(mask: np.ndarray, x: int = 0, y: int = 0) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(x + int(xs.min()), x + int(xs.max()) + 1, y + int(ys.min()), y + int(ys.max()) + 1)


def logo_mask(kind: str, height: int, width: int) -> np.ndarray:
    """A flat mark: a ring crossed by a bar, a five-pointed star, or bold text."""
    mask = np.zeros((height, width), np.uint8)
    if kind == "ring":
        cv2.circle(mask, (width // 2, height // 2), min(height, width) // 2 - 4, 255, -1)
        cv2.circle(mask, (width // 2, height // 2), min(height, width) // 4, 0, -1)
        cv2.rectangle(mask, (width // 2 - 6, 0), (width // 2 + 6, height), 255, -1)
    elif kind == "star":
        radius = min(height, width) / 2 - 2
        points = [(width / 2 + radius * (1 if i % 2 == 0 else 0.45) * np.cos(np.pi / 2 + i * np.pi / 5),
                   height / 2 - radius * (1 if i % 2 == 0 else 0.45) * np.sin(np.pi / 2 + i * np.pi / 5))
                  for i in range(10)]
        cv2.fillPoly(mask, [np.array(points, np.int32)], 255)
    else:
        cv2.putText(mask, "ACME", (4, height - 12), cv2.FONT_HERSHEY_SIMPLEX, width / 130, 255, max(3, width // 25))
    return mask


def texture(name: str, height: int, width: int) -> np.ndarray:
    """A scikit-image grey texture (grass, gravel) as a tinted colour photo: busy, with no subject of its own."""
    grey = cv2.resize(getattr(skimage.data, name)(), (width, height), interpolation=cv2.INTER_AREA)
    return np.dstack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.6).astype(np.uint8)])


def assert_valid(boxes: list[Box], image: np.ndarray) -> None:
    height, width = image.shape[:2]
    assert 1 <= len(boxes) <= S.MAX_SUBJECTS
    for box in boxes:
        assert isinstance(box, Box)
        assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height, (box, image.shape)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert S.box_iou(a, b) < 0.7, "duplicates must be removed"


# ----------------------------------------------------------------------------- objects on a plain background

@pytest.mark.parametrize("background", [(255, 255, 255), (200, 200, 200), (235, 225, 205)])
def test_photo_on_a_plain_canvas_gives_its_placement(detector, background):
    canvas = np.full((600, 800, 3), background, np.uint8)
    placed = paste(canvas, skimage.data.chelsea()[60:260, 100:400], 320, 250)
    boxes = detector.detect(jpeg(canvas))
    assert_valid(boxes, canvas)
    assert S.box_iou(boxes[0], placed) >= 0.9
    assert len(boxes) == 1


def test_shape_on_white_gives_a_tight_box(detector):
    canvas = np.full((500, 500, 3), 255, np.uint8)
    cv2.ellipse(canvas, (180, 300), (90, 50), 20, 0, 360, (30, 90, 200), -1)
    truth = mask_box(canvas.min(axis=2) < 200)
    boxes = detector.detect(jpeg(canvas))
    assert S.box_iou(boxes[0], truth) >= 0.85


def test_two_separated_objects_give_two_subjects_largest_first(detector):
    canvas = np.full((480, 900, 3), 255, np.uint8)
    big = paste(canvas, skimage.data.coffee()[40:360, 100:480], 40, 60)
    small = paste(canvas, skimage.data.rocket()[100:300, 250:400], 640, 200)
    boxes = detector.detect(jpeg(canvas))
    assert_valid(boxes, canvas)
    assert len(boxes) == 2
    assert S.box_iou(boxes[0], big) >= 0.8
    assert S.box_iou(boxes[1], small) >= 0.8


def test_a_logo_in_pieces_is_one_subject(detector):
    # Letters of one word and a dot over them are close together: one subject, not five.
    canvas = np.full((300, 600, 3), 255, np.uint8)
    cv2.putText(canvas, "logo", (150, 200), cv2.FONT_HERSHEY_SIMPLEX, 3.0, (200, 20, 60), 8)
    cv2.circle(canvas, (350, 115), 12, (200, 20, 60), -1)  # a mark beside the word
    truth = mask_box(canvas.min(axis=2) < 200)
    boxes = detector.detect(jpeg(canvas))
    assert len(boxes) == 1
    assert S.box_iou(boxes[0], truth) >= 0.85


def test_plain_pictures_never_load_the_network(tmp_path):
    detector = S.SubjectDetector(tmp_path)
    canvas = np.full((300, 300, 3), 255, np.uint8)
    cv2.rectangle(canvas, (50, 60), (200, 240), (0, 0, 0), -1)
    # found on a copy at most 192 px on a side, so exact to a pixel or two here
    assert S.box_iou(detector.detect(canvas)[0], Box(50, 201, 60, 241)) >= 0.97
    assert detector._session is None
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- no clear subject

@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (90, 140, 200)])
def test_uniform_picture_gives_the_whole_picture(detector, colour):
    image = jpeg(np.full((400, 300, 3), colour, np.uint8))
    assert detector.detect(image) == [Box(0, 300, 0, 400)]


def test_faint_noise_on_a_plain_picture_is_not_a_subject(detector):
    rng = np.random.default_rng(0)
    image = np.clip(200 + rng.normal(0, 2, (300, 400, 3)), 0, 255).astype(np.uint8)
    assert detector.detect(image) == [Box(0, 400, 0, 300)]


# --------------------------------------------------------------------------------- a logo pasted on a photo

@pytest.mark.parametrize("background", ["grass", "gravel"])
@pytest.mark.parametrize(("kind", "colour", "place"), [
    ("ring", (220, 30, 40), (60, 50, 140, 140)),
    ("star", (30, 60, 230), (230, 40, 120, 120)),
    ("text", (250, 200, 0), (180, 170, 200, 90)),
])
def test_logo_pasted_on_a_busy_photo_is_found(detector, background, kind, colour, place):
    x, y, w, h = place
    image = texture(background, 300, 400)
    mark = logo_mask(kind, h, w)
    image[y:y + h, x:x + w][mark > 0] = colour
    truth = mask_box(mark, x, y)
    boxes = detector.detect(jpeg(image, 75))
    assert_valid(boxes, image)
    assert S.plain_subjects(image) is None, "a photo is not a plain background"
    assert S.box_iou(boxes[0], truth) >= 0.7


def test_subject_of_a_natural_photo(detector):
    # The espresso cup on its saucer fills the middle of the picture; the table around it is background.
    image = skimage.data.coffee()
    boxes = detector.detect(image)
    assert_valid(boxes, image)
    box = boxes[0]
    assert S.box_iou(box, Box(0, 600, 0, 400)) < 0.8
    assert box.x1 < 200 and box.x2 > 420 and box.y1 < 80 and box.y2 > 330


# ---------------------------------------------------------------------------------------- boxes are valid

@pytest.mark.parametrize("shape", [(100, 100), (7, 300), (300, 5), (2, 2), (1000, 1000), (333, 777)])
def test_boxes_lie_inside_the_picture(detector, shape):
    rng = np.random.default_rng(sum(shape))
    pictures = [
        rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        np.full((*shape, 3), 255, np.uint8),
        cv2.resize(skimage.data.astronaut(), (shape[1], shape[0]), interpolation=cv2.INTER_AREA),
    ]
    edge = np.full((*shape, 3), 255, np.uint8)
    edge[: max(1, shape[0] // 3), -max(1, shape[1] // 3):] = (0, 0, 0)  # touches two sides
    pictures.append(edge)
    for picture in pictures:
        assert_valid(detector.detect(picture), picture)


@pytest.mark.parametrize("shape", [(10, 10), (10, 10, 4), (0, 10, 3)])
def test_detect_rejects_anything_but_an_rgb_picture(detector, shape):
    with pytest.raises(ValueError):
        detector.detect(np.zeros(shape, np.uint8))


# ----------------------------------------------------------------------------------------- pure helpers

def test_mask_boxes_groups_near_parts_and_keeps_far_ones_apart():
    mask = np.zeros((100, 200), bool)
    mask[10:30, 10:20] = mask[10:30, 24:34] = mask[10:30, 38:48] = True  # three letters, 4 px apart
    mask[60:90, 150:190] = True  # far away, heavier
    blobs = S.mask_boxes(mask)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in blobs] == [(150, 60, 190, 90), (10, 10, 48, 30)]


def test_mask_boxes_drops_specks_and_light_secondaries():
    mask = np.zeros((100, 100), bool)
    mask[10:60, 10:60] = True
    mask[90, 90] = True  # a speck
    assert len(S.mask_boxes(mask, min_area=0.001)) == 1
    mask[80:84, 80:84] = True  # 16 px against 2500: too light to be a subject of its own
    assert len(S.mask_boxes(mask, gap=0.0)) == 1
    assert len(S.mask_boxes(mask, gap=0.0, secondary_min_mass=0.0)) == 3
    assert S.mask_boxes(np.zeros((10, 10), bool)) == []


def test_to_boxes_scales_outwards_and_clips():
    blobs = [S.Blob(0, 0, 10, 5, 1.0), S.Blob(9, 9, 10, 10, 1.0)]
    assert S.to_boxes(blobs, (10, 10), (100, 50)) == [Box(0, 50, 0, 50), Box(45, 50, 90, 100)]


def test_deduplicate_keeps_order_and_limit():
    a, b, c = Box(0, 10, 0, 10), Box(0, 10, 0, 11), Box(20, 30, 20, 30)
    assert S.deduplicate([a, b, c]) == [a, c]
    assert S.deduplicate([Box(i * 10, i * 10 + 5, 0, 5) for i in range(9)], limit=5) == [
        Box(i * 10, i * 10 + 5, 0, 5) for i in range(5)]


def test_plain_background_needs_most_of_the_border():
    lab = np.zeros((50, 50, 3), np.float32)
    assert S.plain_background(lab, 12.0, 0.9) is not None
    lab[:, :8] = 80.0  # one side of five in another colour: 8 + 8 + 48 of 196 border pixels differ
    assert S.plain_background(lab, 12.0, 0.9) is None
    assert S.plain_background(lab, 12.0, 0.6) is not None


def test_box_iou():
    assert S.box_iou(Box(0, 10, 0, 10), Box(0, 10, 0, 10)) == 1.0
    assert S.box_iou(Box(0, 10, 0, 10), Box(10, 20, 0, 10)) == 0.0
    assert S.box_iou(Box(0, 10, 0, 10), Box(5, 15, 0, 10)) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------------------- the model file

def test_the_network_comes_from_the_installed_package(detector):
    assert S.u2netp_source().name == "u2netp.onnx"
    path = detector.model_path()
    assert path.exists() and path.parent == detector.cache_dir
    assert detector.model_path() == path  # built once, then reused
    saliency = detector.predict(skimage.data.coffee())
    size = detector.settings.saliency_size
    assert saliency.shape == (size, size) and 0.0 <= saliency.min() and saliency.max() <= 1.0


def test_importing_the_module_does_not_import_onnxruntime():
    code = "import sys, imagesearch_pg.vision.subject; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
