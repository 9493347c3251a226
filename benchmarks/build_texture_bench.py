"""Build a fabric/texture retrieval benchmark from third-party textures that registries carry.

    python benchmarks/build_texture_bench.py [--out DIR] [--sources DIR] [--queries-per-texture 4]
                                             [--distractors 600]

Sources (fetched with `apt-get download` + `dpkg -x` into --sources when missing; nothing else is fetched):

| source | what | licence |
|---|---|---|
| Debian `gimp-data` (2.10.34) | GIMP patterns, `usr/share/gimp/2.0/patterns/**/*.pat` (fabric, wood, stone, paper, ...; many photographed, some synthetic), 32-256 px tiles | GPL-3+ (debian/copyright, Files: *) |
| Debian `gimp-data-extras` (2.0.2) | more GIMP patterns, same folder | GPL-2+ |
| Debian `sweethome3d` (7.0.2) | the 23 built-in floor/wall textures (of 26; the skies are left out) inside `sweethome3d.jar` (`com/eteks/sweethome3d/io/resources/textures/*.jpg`), 256 px photographed tiles | GPL-2+ |
| PyPI `scikit-image` (installed) | `skimage.data.brick/grass/gravel`, 512 x 512 grey photographs | CC0 (skimage docstrings) |
| Debian `nexuiz-textures` (2.5.2) | game wall/floor/terrain textures from `textures.pk3`: **gallery-only distractors**, never queried | GPL-2+ |

GIMP `.pat` files are read here (Pillow 13 does not open these): big-endian header (header size, version 1,
width, height, bytes per pixel, magic "GPAT", UTF-8 name), then raw pixels (1 grey, 2 grey+alpha, 3 RGB,
4 RGBA; alpha composited on white).

How pictures are made (every picture >= 448 px on its short side, as the fabric service type demands):
- Every source is treated as a **tileable** tile (patterns and game/floor textures are made to repeat),
  except the three scikit-image photos (the Sweet Home 3D skies are left out). A tile is first upscaled (bicubic) so
  its short side is 256 px (at most x4), then sampled with wrap-around: a small tile becomes a repeating
  pattern, as a printed fabric is. Non-tileable sources are upscaled to a 1024 px short side and sampled
  with mirrored borders only where a rotated window pokes out.
- Gallery: one 512 x 512 picture per texture, the window at the canvas origin, JPEG q95.
- Queries (split `crops`): --queries-per-texture windows of the same texture elsewhere on the canvas
  (non-tileable sources: at most 40 % of the query window overlaps the gallery window; on a tile the window
  is a different phase and scale of the same repeat), with zoom 0.7-1.4, rotation +-30 deg (and a
  quarter turn 30 % of the time), output 512x512 / 640x480 / 480x640 / 576x448, brightness +-25,
  contrast 0.75-1.25, gamma 0.8-1.25, white-balance gains 0.85-1.15 per channel, blur (30 %),
  sensor noise, JPEG q55-90. `aug` records every parameter; `target` is the texture's gallery id.
- Distractors: --distractors Nexuiz textures (diffuse maps only, >= 128 px, not flat, de-duplicated by
  thumbnail), made like gallery pictures; they have no queries.

Gallery items carry `source` and `photo` (true for photographed textures, by source and name; the rest are
synthetic renders/drawings), so results can be split.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import struct
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

GALLERY_SIDE = 512
TILE_SIDE = 256  # tiles are upscaled to this short side (at most MAX_UPSCALE)
MAX_UPSCALE = 4.0
MIN_TILE = 30  # smaller patterns (1-line bars, 20 px icons) are not textures
NON_TILEABLE_SIDE = 1024
REPEATS = 12  # tile repeats around a window's centre: covers a 640 px window at zoom 0.7 from a 32+ px tile

DEBS = {
    "gimp-data": "usr/share/gimp/2.0/patterns",
    "gimp-data-extras": "usr/share/gimp/2.0/patterns",
    "sweethome3d": "usr/share/sweethome3d/sweethome3d.jar",
    "nexuiz-textures": "usr/share/games/nexuiz/data/textures.pk3",
}
SH3D_TEXTURES = "com/eteks/sweethome3d/io/resources/textures/"
SH3D_SKIES = {"blueSky", "cloudy", "veryCloudy"}  # left out: skies, not textures
GIMP_PHOTO_FOLDERS = {"Animal", "Fabric", "Food", "Paper", "Plant", "Sky", "Stone", "Water", "Wood"}
GIMP_PHOTO_NAMES = {  # root-folder patterns that are photographs (looked at one by one)
    "brownie", "cashew", "coins", "money", "dirt", "drymud", "goldcloth", "green_curtains", "greyweave",
    "greyweave2", "leaves3", "leaves4", "leaves6", "pebbles", "rust", "sandytext", "redishstuff",
    "crinklepaper", "bark", "ice2", "mhuerock", "colored_rock", "lathe", "woodblind", "eggcarton",
}
NEXUIZ_SKIP = ("_norm", "_gloss", "_glow", "_bump", "_shirt", "_pants", "_luma", "_reflect", "jump", "sfx",
               "light", "_fx", "sign", "decal", "trim", "sky", "liquid", "logo", "/eX/", "glass", "fx/")


# ----------------------------------------------------------------------------------------------
# Sources


def ensure_deb(sources: Path, package: str) -> Path:
    """`apt-get download` the package into sources/deb and unpack it into sources/x (once)."""
    root = sources / "x"
    if (root / DEBS[package]).exists():
        return root
    debs = sources / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    (deb,) = debs.glob(f"{package}_*.deb")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def read_gimp_pattern(data: bytes) -> tuple[str, np.ndarray]:
    header_size, version, width, height, bpp = struct.unpack(">5I", data[:20])
    if version != 1 or data[20:24] != b"GPAT" or bpp not in (1, 2, 3, 4):
        raise ValueError("not a GIMP pattern")
    name = data[24:header_size].rstrip(b"\0").decode("utf-8", "replace")
    px = np.frombuffer(data[header_size : header_size + width * height * bpp], np.uint8).reshape(height, width, bpp)
    if bpp in (2, 4):  # composite on white
        alpha = px[..., -1:].astype(np.float32) / 255
        px = (px[..., :-1] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    return name, np.ascontiguousarray(px)


def gimp_textures(sources: Path):
    for package in ("gimp-data", "gimp-data-extras"):
        ensure_deb(sources, package)
    folder = sources / "x" / DEBS["gimp-data"]
    for path in sorted(folder.rglob("*.pat")):
        name, rgb = read_gimp_pattern(path.read_bytes())
        rel = path.relative_to(folder).with_suffix("")
        photo = (len(rel.parts) > 1 and rel.parts[0] in GIMP_PHOTO_FOLDERS) or rel.name in GIMP_PHOTO_NAMES
        yield {"id": f"gimp/{rel.as_posix()}", "name": name, "rgb": rgb, "tileable": True, "photo": photo,
               "source": "gimp-data/gimp-data-extras (Debian), GPL"}


def sh3d_textures(sources: Path):
    root = ensure_deb(sources, "sweethome3d")
    with zipfile.ZipFile(root / DEBS["sweethome3d"]) as jar:
        for entry in sorted(n for n in jar.namelist() if n.startswith(SH3D_TEXTURES) and n.endswith(".jpg")):
            stem = Path(entry).stem
            if stem in SH3D_SKIES:
                continue
            rgb = np.asarray(Image.open(io.BytesIO(jar.read(entry))).convert("RGB"))
            yield {"id": f"sh3d/{stem}", "name": stem, "rgb": rgb, "tileable": True,
                   "photo": True, "source": "sweethome3d (Debian), GPL-2+"}


def skimage_textures():
    from skimage import data

    for name in ("brick", "grass", "gravel"):
        grey = getattr(data, name)()
        yield {"id": f"skimage/{name}", "name": name, "rgb": np.repeat(grey[:, :, None], 3, axis=2),
               "tileable": False, "photo": True, "source": "scikit-image data (PyPI), CC0"}


def nexuiz_distractors(sources: Path, count: int, seed: int = 7):
    root = ensure_deb(sources, "nexuiz-textures")
    with zipfile.ZipFile(root / DEBS["nexuiz-textures"]) as pk3:
        names = sorted(
            n for n in pk3.namelist()
            if n.lower().endswith((".jpg", ".tga")) and not any(s in n.lower() for s in (x.lower() for x in NEXUIZ_SKIP))
        )
        random.Random(seed).shuffle(names)
        seen, taken = set(), 0
        for n in names:
            if taken >= count:
                break
            try:
                rgb = np.asarray(Image.open(io.BytesIO(pk3.read(n))).convert("RGB"))
            except Exception:
                continue
            if min(rgb.shape[:2]) < 128 or rgb.std() < 12:
                continue
            thumb = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (8, 8), interpolation=cv2.INTER_AREA)
            key = (thumb // 32).tobytes()  # same texture at another size or variant
            if key in seen:
                continue
            seen.add(key)
            taken += 1
            yield {"id": f"nexuiz/{n}", "name": n, "rgb": rgb, "tileable": True, "photo": None,
                   "source": "nexuiz-textures (Debian), GPL-2+"}


# ----------------------------------------------------------------------------------------------
# Pictures


def canvas_of(texture) -> np.ndarray:
    rgb = texture["rgb"]
    side = min(rgb.shape[:2])
    if texture["tileable"]:
        f = min(MAX_UPSCALE, TILE_SIDE / side)
    else:
        f = NON_TILEABLE_SIDE / side
    if abs(f - 1) < 1e-3:
        return rgb
    w, h = round(rgb.shape[1] * f), round(rgb.shape[0] * f)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)


def sample(canvas: np.ndarray, centre, zoom: float, angle: float, out_w: int, out_h: int, wrap: bool) -> np.ndarray:
    """The out_w x out_h picture of the canvas around ``centre`` (canvas px), magnified ``zoom`` times and
    turned by ``angle`` degrees."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, zoom)
    m[0, 2] += out_w / 2 - centre[0]
    m[1, 2] += out_h / 2 - centre[1]
    if wrap:  # an explicit repeat of the tile (OpenCV's BORDER_WRAP garbles turned, scaled windows)
        h, w = canvas.shape[:2]
        x0, y0 = int(centre[0] // w) - REPEATS // 2, int(centre[1] // h) - REPEATS // 2
        m[0, 2] += m[0, 0] * x0 * w + m[0, 1] * y0 * h
        m[1, 2] += m[1, 0] * x0 * w + m[1, 1] * y0 * h
        canvas = np.tile(canvas, (REPEATS, REPEATS, 1))
    return cv2.warpAffine(canvas, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def gallery_picture(canvas: np.ndarray, wrap: bool) -> np.ndarray:
    s = GALLERY_SIDE
    if wrap:
        return sample(canvas, (s / 2, s / 2), 1.0, 0.0, s, s, True)
    return np.ascontiguousarray(canvas[:s, :s])


def overlap_fraction(a, b) -> float:
    """Fraction of box a (x0, y0, x1, y1) covered by box b."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def photometric(rgb: np.ndarray, rng: random.Random, aug: dict) -> np.ndarray:
    x = rgb.astype(np.float32)
    gains = [rng.uniform(0.85, 1.15) for _ in range(3)]
    contrast, brightness, gamma = rng.uniform(0.75, 1.25), rng.uniform(-25, 25), rng.uniform(0.8, 1.25)
    x = x * np.asarray(gains, np.float32)
    x = (x - 128) * contrast + 128 + brightness
    x = 255 * np.power(np.clip(x, 0, 255) / 255, gamma)
    blur = rng.uniform(0.6, 1.4) if rng.random() < 0.3 else 0.0
    if blur:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    noise = rng.uniform(0, 4)
    x = x + np.random.default_rng(rng.randrange(2**31)).normal(0, noise, x.shape).astype(np.float32)
    aug.update(wb_gains=[round(g, 3) for g in gains], contrast=round(contrast, 3), brightness=round(brightness, 1),
               gamma=round(gamma, 3), blur_sigma=round(blur, 2), noise_sigma=round(noise, 2))
    return np.clip(x, 0, 255).round().astype(np.uint8)


def query_picture(canvas: np.ndarray, wrap: bool, rng: random.Random):
    zoom = rng.uniform(0.7, 1.4)
    angle = rng.uniform(-30, 30) + (rng.choice([90, 180, 270]) if rng.random() < 0.3 else 0)
    out_w, out_h = rng.choice([(512, 512), (640, 480), (480, 640), (576, 448)])
    h, w = canvas.shape[:2]
    if wrap:
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        centre = (centre[0] + w * rng.randint(1, 3), centre[1] + h * rng.randint(1, 3))  # another repeat
    else:
        gal = (0, 0, GALLERY_SIDE, GALLERY_SIDE)
        half = max(out_w, out_h) / zoom / 2  # bounding half-side of the (turned) window
        for _ in range(200):
            centre = (rng.uniform(half * 0.6, w - half * 0.6), rng.uniform(half * 0.6, h - half * 0.6))
            box = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
            if overlap_fraction(box, gal) <= 0.4:
                break
    aug = {"zoom": round(zoom, 3), "angle": round(angle, 1), "size": [out_w, out_h],
           "centre": [round(centre[0], 1), round(centre[1], 1)], "canvas": [w, h], "wrap": wrap}
    im = photometric(sample(canvas, centre, zoom, angle, out_w, out_h, wrap), rng, aug)
    aug["jpeg"] = rng.randint(55, 90)
    return im, aug


def save_jpeg(rgb: np.ndarray, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=quality)


def slug(texture_id: str) -> str:
    return texture_id.replace("/", "__").replace(" ", "_").replace(".", "_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("~/.cache/imagesearch-bench/bench/texture").expanduser())
    ap.add_argument("--sources", type=Path, default=Path("~/.cache/imagesearch-bench/texture-sources").expanduser())
    ap.add_argument("--queries-per-texture", type=int, default=4)
    ap.add_argument("--distractors", type=int, default=600)
    args = ap.parse_args()

    textures = [t for t in gimp_textures(args.sources) if min(t["rgb"].shape[:2]) >= MIN_TILE]
    textures += list(sh3d_textures(args.sources)) + list(skimage_textures())
    gallery, queries = [], []
    for t in textures:
        rng = random.Random(int(hashlib.sha1(t["id"].encode()).hexdigest()[:8], 16))
        canvas, wrap = canvas_of(t), t["tileable"]
        rel = Path("gallery") / f"{slug(t['id'])}.jpg"
        save_jpeg(gallery_picture(canvas, wrap), args.out / rel, 95)
        gallery.append({"id": t["id"], "path": rel.as_posix(), "name": t["name"], "source": t["source"],
                        "photo": t["photo"], "tileable": wrap, "source_size": list(t["rgb"].shape[1::-1])})
        for k in range(args.queries_per_texture):
            im, aug = query_picture(canvas, wrap, rng)
            qrel = Path("queries") / f"{slug(t['id'])}__{k}.jpg"
            save_jpeg(im, args.out / qrel, aug["jpeg"])
            queries.append({"path": qrel.as_posix(), "target": t["id"], "aug": aug})
    n_textures = len(gallery)
    if args.distractors:
        for t in nexuiz_distractors(args.sources, args.distractors):
            rel = Path("distractors") / f"{slug(t['id'])}.jpg"
            save_jpeg(gallery_picture(canvas_of(t), True), args.out / rel, 95)
            gallery.append({"id": t["id"], "path": rel.as_posix(), "name": t["name"], "source": t["source"],
                            "photo": None, "tileable": True, "distractor": True,
                            "source_size": list(t["rgb"].shape[1::-1])})
    manifest = {"gallery": gallery, "queries": {"crops": queries}}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    photo = sum(1 for g in gallery[:n_textures] if g["photo"])
    print(f"{n_textures} textures ({photo} photographed), {len(gallery) - n_textures} distractors, "
          f"{len(queries)} queries -> {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
