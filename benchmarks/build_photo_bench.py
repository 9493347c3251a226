"""Photo near-duplicate set: is a photo found again after the edits photos go through?

    python benchmarks/build_photo_bench.py --out ~/.cache/imagesearch-bench/bench/photos
    python benchmarks/quality.py ~/.cache/imagesearch-bench/bench/photos/manifest.json --service-type generic --json

Gallery: the Debian wallpapers that ../shared/bench/fetch.sh unpacks (plasma-workspace-wallpapers, one
picture per wallpaper, mostly photographs with some digital artwork; mate-backgrounds' "nature" photos;
licences in each package's copyright file) and scikit-image's colour photos (CC0 / public domain), each
shrunk to at most 1024 px. Queries, one per edit and photo (split "edited"): a 60-85 % crop; a turn of
up to 12 degrees (corners cut); brightness, contrast, saturation and white balance shifted with JPEG q50;
shrunk to a third and pasted off-centre on a grey canvas; mirrored with a 90 % crop.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def sources(bench_dir: Path) -> list[tuple[str, Image.Image]]:
    deb = bench_dir / "deb" / "x"
    files = []
    for folder in sorted(glob.glob(str(deb / "plasma-workspace-wallpapers/usr/share/wallpapers/*"))):
        images = glob.glob(folder + "/contents/images/*.jpg") + glob.glob(folder + "/contents/images/*.png")
        if images:
            files.append(max(images, key=os.path.getsize))  # the largest rendition of each wallpaper
    files += sorted(glob.glob(str(deb / "mate-backgrounds/usr/share/backgrounds/mate/nature/*.jpg")))
    pictures = []
    for path in files:
        image = Image.open(path).convert("RGB")
        image.thumbnail((1024, 1024))
        pictures.append((Path(path).parent.parent.parent.name if "contents" in path else Path(path).stem, image))
    from skimage import data

    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
        pictures.append((name, Image.fromarray(getattr(data, name)()).convert("RGB")))
    return pictures


def edits(image: Image.Image, rng: random.Random) -> list[Image.Image]:
    w, h = image.size

    def crop(fraction: float) -> Image.Image:
        cw, ch = int(w * fraction), int(h * fraction)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return image.crop((x, y, x + cw, y + ch))

    turned = image.rotate(rng.uniform(-12, 12), resample=Image.BICUBIC)
    turned = turned.crop((int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85)))
    shifted = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    shifted = ImageEnhance.Contrast(shifted).enhance(rng.uniform(0.7, 1.3))
    shifted = ImageEnhance.Color(shifted).enhance(rng.uniform(0.5, 1.5))
    balance = np.asarray(shifted, np.float32) * np.array([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
    shifted = Image.fromarray(np.clip(balance, 0, 255).astype(np.uint8))
    small = image.resize((max(1, w // 3), max(1, h // 3)), Image.LANCZOS)
    canvas = Image.new("RGB", (w, h), (128, 128, 128))
    canvas.paste(small, (rng.randint(0, w - small.width), rng.randint(0, h - small.height)))
    mirrored = ImageOps.mirror(crop(0.9))
    return [crop(rng.uniform(0.6, 0.85)), turned, shifted, canvas, mirrored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    default_bench_dir = Path(os.environ.get("BENCH_DIR", "~/.cache/imagesearch-bench")).expanduser()
    parser.add_argument("--bench-dir", type=Path, default=default_bench_dir, help="where fetch.sh put the sources")
    args = parser.parse_args()
    rng = random.Random(0)
    (args.out / "gallery").mkdir(parents=True, exist_ok=True)
    (args.out / "queries").mkdir(parents=True, exist_ok=True)
    manifest = {"gallery": [], "queries": {"edited": []}}
    for index, (name, image) in enumerate(sources(args.bench_dir)):
        picture_id = f"{index:03d}-{name}"
        image.save(args.out / "gallery" / f"{picture_id}.jpg", quality=92)
        manifest["gallery"].append({"id": picture_id, "path": f"gallery/{picture_id}.jpg"})
        for number, edited in enumerate(edits(image, rng)):
            path = f"queries/{picture_id}-{number}.jpg"
            edited.save(args.out / path, quality=50 if number == 2 else 85)
            manifest["queries"]["edited"].append({"path": path, "target": picture_id})
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest['gallery'])} photos, {len(manifest['queries']['edited'])} queries in {args.out}")


if __name__ == "__main__":
    main()
