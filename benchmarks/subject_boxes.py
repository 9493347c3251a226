"""Subject detection (Crop=true): every candidate method, measured on the same pictures.

    python benchmarks/subject_boxes.py [--max-queries N] [--methods a,b,...] [--timing 30] [--json]

Data: BENCH_DIR (default ~/.cache/imagesearch-bench)/bench, already built (see shared/bench/README.md).

* logo hard: 224x224 photos with a logo pasted on them; ground truth ``aug.box`` is the visible logo's box.
  Mean IoU of the main box, and the share with IoU >= 0.5 and >= 0.7 (product target: mean >= 0.7).
* logo easy: logos on white; ground truth ``aug.box`` (the logo's alpha > 32 box). Mean IoU.
* furniture: 128x128 renders on white; ground truth the box of the non-white pixels (min channel < 230).
* time: p50 of one call per picture (wall, and process CPU time summed over threads), 2 onnxruntime
  threads, at 224x224 (logo hard pictures), on a 1000x1000 photo (scikit-image's astronaut, resized: no
  plain background, so the chosen method runs its network) and on a 1000x1000 product on white (a
  furniture render, resized). On a shared machine wall times grow with the other processes' load;
  compare methods measured in one run, or run with --threads 1 and read the CPU column.

Every method returns its main box through the same mask -> boxes helpers as the library
(``imagesearch_pg.vision.subject``), so the methods differ only in the map they threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import summary_ms  # noqa: E402
from imagesearch_pg.vision import subject as S  # noqa: E402
from imagesearch_pg.vision.intake import Box  # noqa: E402

BENCH = Path(os.environ.get("BENCH_DIR", "~/.cache/imagesearch-bench")).expanduser() / "bench"


# ---------------------------------------------------------------------------------------------- data

def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def as_box(xyxy) -> Box:
    x1, y1, x2, y2 = (int(v) for v in xyxy)
    return Box(x1, x2, y1, y2)


def logo_split(split: str, limit: int) -> tuple[list[np.ndarray], list[Box]]:
    root = BENCH / "logo-simple-icons"
    queries = json.loads((root / "manifest.json").read_text())["queries"][split][:limit]
    return [read_rgb(root / q["path"]) for q in queries], [as_box(q["aug"]["box"]) for q in queries]


def non_white_box(image: np.ndarray, threshold: int = 230) -> Box:
    ys, xs = np.nonzero(image.min(axis=2) < threshold)
    if len(xs) == 0:
        return S.whole(*image.shape[:2])
    return Box(int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1)


def furniture(limit: int) -> tuple[list[np.ndarray], list[Box]]:
    root = BENCH / "furniture"
    gallery = json.loads((root / "manifest_type.json").read_text())["gallery"][:limit]
    images = [read_rgb(root / g["path"]) for g in gallery]
    return images, [non_white_box(im) for im in images]


def timing_pictures() -> dict[str, np.ndarray]:
    import skimage.data

    photo = cv2.resize(skimage.data.astronaut(), (1000, 1000), interpolation=cv2.INTER_CUBIC)
    root = BENCH / "furniture"
    first = json.loads((root / "manifest_type.json").read_text())["gallery"][0]
    product = cv2.resize(read_rgb(root / first["path"]), (1000, 1000), interpolation=cv2.INTER_CUBIC)
    return {"photo1000": photo, "plain1000": product}


# ------------------------------------------------------------------------------------------- methods
# Each method: picture -> main Box. The map -> box step is the library's.

def map_box(saliency: np.ndarray, threshold: float, image: np.ndarray, min_area: float = 0.005) -> Box:
    mask = saliency > threshold
    blobs = S.mask_boxes(mask, saliency, min_area=min_area)
    return (S.to_boxes(blobs[:1], saliency.shape, image.shape[:2]) or [S.whole(*image.shape[:2])])[0]


def whole_picture(image):
    return S.whole(*image.shape[:2])


def spectral_residual(image, size: int = 64, k: float = 2.0):
    """Hou & Zhang 2007 on a 64x64 grey copy; mask = saliency > k x its mean."""
    grey = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    spectrum = np.fft.fft2(grey.astype(np.float32))
    log_amplitude = np.log(np.abs(spectrum) + 1e-6)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 2.5)
    return map_box(saliency, k * float(saliency.mean()), image)


def border_colours(image, size: int = 64, clusters: int = 4, threshold: float = 15.0):
    """Background = 4 k-means colours of the picture's border; mask = Lab distance to the nearest > 15."""
    lab = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
    lab = lab.astype(np.float32)
    ring = S.border_pixels(lab)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(ring, clusters, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    distance = np.sqrt(((lab[:, :, None, :] - centres[None, None]) ** 2).sum(-1)).min(-1)
    return map_box(distance, threshold, image)


def histogram_contrast(image, size: int = 64, bins: int = 12, k: float = 1.2):
    """Cheng et al. 2011 global colour contrast: a pixel is salient if its colour is rare and far from others."""
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    q = small.reshape(-1, 3) // (256 // bins)
    index = (q[:, 0].astype(int) * bins + q[:, 1]) * bins + q[:, 2]
    _, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    colours = np.stack([np.bincount(inverse, weights=lab[:, i]) / counts for i in range(3)], 1)
    contrast = (np.sqrt(((colours[:, None] - colours[None]) ** 2).sum(-1)) * counts[None]).sum(1) / counts.sum()
    saliency = cv2.GaussianBlur(contrast[inverse].reshape(size, size).astype(np.float32), (0, 0), 1.5)
    return map_box(saliency, k * float(saliency.mean()), image)


def colour_mode(image, size: int = 112, bins: int = 24, radius: float = 20.0):
    """The densest colour of the picture (a flat logo is one colour) and the pixels within 20 Lab of it."""
    from scipy.ndimage import uniform_filter

    small = cv2.medianBlur(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), 3)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    q = (lab / 256 * bins).astype(int).clip(0, bins - 1)
    histogram = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3)
    density = uniform_filter(histogram.reshape(bins, bins, bins).astype(np.float32), size=3, mode="constant")
    peak = np.array(np.unravel_index(density.argmax(), density.shape))
    centre = lab[np.abs(q - peak).max(1) <= 1].mean(0)
    closeness = radius - np.sqrt(((lab - centre) ** 2).sum(1)).reshape(size, size)
    return map_box(closeness, 0.0, image)


class ActivationMap:
    """Sum over channels of the default encoder's last feature map (1280 x 7 x 7 at 224), min-max
    scaled, upsampled to 56x56; mask = above 0.3."""

    def __init__(self, cache_dir: Path, threads: int):
        from imagesearch_pg.service_types import SERVICE_TYPES
        from imagesearch_pg.vision.encoders import EncoderRegistry

        self.encoder = EncoderRegistry(cache_dir, threads).get(SERVICE_TYPES["generic"].default_encoder)

    def __call__(self, image, fraction: float = 0.3):
        fmap = self.encoder.run([image], outputs=("feature_map",))["feature_map"][0].sum(0)
        fmap = cv2.resize(fmap.astype(np.float32), (56, 56), interpolation=cv2.INTER_LINEAR)
        fmap = (fmap - fmap.min()) / max(1e-6, float(fmap.max() - fmap.min()))
        return map_box(fmap, fraction, image, min_area=0.0)


class U2Saliency:
    """U2-Net-p alone (no plain-background path), at a given input size."""

    def __init__(self, cache_dir: Path, threads: int, size: int):
        self.detector = S.SubjectDetector(cache_dir, threads, S.DetectorSettings(saliency_size=size))

    def __call__(self, image):
        return S.saliency_subjects(self.detector.predict(image), image.shape[:2], self.detector.settings)[0]


def plain_only(image):
    """The plain-background path alone; the whole picture where the background is not plain."""
    return (S.plain_subjects(image) or [S.whole(*image.shape[:2])])[0]


class Chosen:
    """The library's detector as shipped: plain-background path, else U2-Net-p at 144."""

    def __init__(self, cache_dir: Path, threads: int):
        self.detector = S.SubjectDetector(cache_dir, threads)

    def __call__(self, image):
        return self.detector.detect(image)[0]


def methods(cache_dir: Path, threads: int) -> dict:
    return {
        "whole picture": lambda: whole_picture,
        "spectral residual": lambda: spectral_residual,
        "border colours (k-means)": lambda: border_colours,
        "histogram contrast": lambda: histogram_contrast,
        "flat colour mode": lambda: colour_mode,
        "encoder activation map": lambda: ActivationMap(cache_dir, threads),
        "plain background only": lambda: plain_only,
        "u2netp 96": lambda: U2Saliency(cache_dir, threads, 96),
        "u2netp 128": lambda: U2Saliency(cache_dir, threads, 128),
        "u2netp 144": lambda: U2Saliency(cache_dir, threads, 144),
        "u2netp 160": lambda: U2Saliency(cache_dir, threads, 160),
        "u2netp 320": lambda: U2Saliency(cache_dir, threads, 320),
        "chosen: plain, else u2netp 144": lambda: Chosen(cache_dir, threads),
    }


# ------------------------------------------------------------------------------------------- measure

def ious(method, images, truths) -> np.ndarray:
    return np.array([S.box_iou(method(im), gt) for im, gt in zip(images, truths)])


def p50_ms(method, images, repeats: int) -> tuple[float, float]:
    """p50 wall time and p50 process CPU time (all threads) of one call, in ms. On a shared machine the
    wall time grows with other processes' load; the CPU time much less."""
    method(images[0])  # warm-up (and model build)
    wall, cpu = [], []
    for i in range(repeats):
        image = images[i % len(images)]
        began, began_cpu = time.perf_counter(), time.process_time()
        method(image)
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return summary_ms(wall)["p50_ms"], summary_ms(cpu)["p50_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-queries", type=int, default=1000, help="pictures per set (all: 1000)")
    parser.add_argument("--methods", default="", help="comma-separated substrings of method names")
    parser.add_argument("--timing", type=int, default=30, help="timed calls per picture size")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--timing-only", action="store_true", help="skip the accuracy columns")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.timing_only:
        args.max_queries = min(args.max_queries, args.timing)

    hard = logo_split("hard", args.max_queries)
    easy = logo_split("easy", args.max_queries)
    furn = furniture(args.max_queries)
    big = timing_pictures()
    wanted = [w.strip() for w in args.methods.split(",") if w.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name, make in methods(Path(cache), args.threads).items():
            if wanted and not any(w in name for w in wanted):
                continue
            method = make()
            t224, photo, plain = (p50_ms(method, images, args.timing)
                                  for images in (hard[0], [big["photo1000"]], [big["plain1000"]]))
            row = {"method": name}
            if not args.timing_only:
                h = ious(method, *hard)
                row.update({
                    "hard_mean_iou": round(float(h.mean()), 3),
                    "hard_iou_ge_0.5": round(float((h >= 0.5).mean()), 3),
                    "hard_iou_ge_0.7": round(float((h >= 0.7).mean()), 3),
                    "easy_mean_iou": round(float(ious(method, *easy).mean()), 3),
                    "furniture_mean_iou": round(float(ious(method, *furn).mean()), 3),
                })
            row.update({
                "ms_p50_224": t224[0],
                "ms_p50_photo_1000": photo[0],
                "ms_p50_plain_1000": plain[0],
                "cpu_ms_p50_224": t224[1],
                "cpu_ms_p50_photo_1000": photo[1],
            })
            rows.append(row)
            if not args.json:
                print(json.dumps(row), file=sys.stderr, flush=True)
    meta = {"queries_per_set": {"hard": len(hard[0]), "easy": len(easy[0]), "furniture": len(furn[0])},
            "threads": args.threads, "load_average_at_end": os.getloadavg()}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return
    header = ("method", "hard mIoU", ">=0.5", ">=0.7", "easy mIoU", "furn mIoU", "ms@224", "ms@1000 photo",
              "ms@1000 plain", "cpu ms@224", "cpu ms@1000 photo")
    keys = ("method", "hard_mean_iou", "hard_iou_ge_0.5", "hard_iou_ge_0.7", "easy_mean_iou",
            "furniture_mean_iou", "ms_p50_224", "ms_p50_photo_1000", "ms_p50_plain_1000", "cpu_ms_p50_224",
            "cpu_ms_p50_photo_1000")
    print(f"| {' | '.join(header)} |")
    print(f"|{'|'.join('---' for _ in header)}|")
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "-")) for k in keys) + " |")
    print(f"\n{meta}")


if __name__ == "__main__":
    main()
