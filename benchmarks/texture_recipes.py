"""Which encoder recipe for the fabric service type: measured on the texture benchmark.

    python benchmarks/texture_recipes.py [--manifest PATH] [--no-timing] [--json]

The manifest is made by benchmarks/build_texture_bench.py (190 textures, 600 gallery-only distractors,
760 queries). Brute-force cosine in numpy over the whole gallery (distractors included), no database;
every picture is the whole picture (the fabric type never crops). Descriptors are cached under
/tmp/texture-cache/desc. Figures: R@1 / R@10 over all queries and over the queries of photographed
textures; the one tuned weight (the fusion of GeM and Gram scores) is chosen on the even-numbered
queries and reported on the odd ones ("held-out") next to the others' odd-query figures.

Multi-view recipes are stored as ONE vector where they say "mean" (the normalised sum of the views'
L2-normalised GeM vectors, 1280-d like today's); "concatenated" ones would need 2560 dimensions
(pgvector's `vector` indexes at most 2000). The Gram/covariance PCA and the whitening are learned on
the distractors only, never on a queried texture.

Times: ms per picture from decoded RGB to the vector (resize, network, pooling), onnxruntime with ONE
intra-op thread, batch 1 (a search encodes one query; multi-view recipes batch their views), p50 over
30 query pictures; the JPEG decode (cv2) is given apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import descriptor_variants as V  # noqa: E402
from imagesearch_pg.vision import descriptors as D  # noqa: E402

MANIFEST = Path("~/.cache/imagesearch-bench/bench/texture/manifest.json").expanduser()
CACHE = Path("/tmp/texture-cache/desc")
MODEL_CACHE = Path("/tmp/texture-cache/models")
GRAM_K = 48  # PCA dims before the Gram matrix: 48 * 49 / 2 = 1176 values (pgvector vector <= 2000)
PCA_PICTURES = 200  # distractors the Gram PCA is learned on (never a texture that is queried)

_encoders: dict[int, object] = {}


def encoder(threads: int = 2):
    if threads not in _encoders:
        from imagesearch_pg.vision.encoders import EncoderRegistry

        _encoders[threads] = EncoderRegistry(MODEL_CACHE, threads=threads).get("efficientnet-lite0")
    return _encoders[threads]


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def norm(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fmap(images, size, threads=2):
    return encoder(threads).run(images, ("feature_map",), size=size)["feature_map"]


# ----------------------------------------------------------------------------------------------
# Descriptors


def thumb16(rgb):
    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (g - g.mean()).ravel()


def rgb_hist(rgb):
    small = cv2.resize(rgb, (128, 128), interpolation=cv2.INTER_AREA)
    h = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return np.sqrt(h / h.sum())


def learn_pca(maps: list[np.ndarray], k: int, seed: int = 0):
    """PCA of feature-map positions (rows = positions, 1280 channels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for fm in maps:  # C x h x w
        x = fm.reshape(fm.shape[0], -1).T
        rows.append(x[rng.choice(len(x), min(len(x), 32), replace=False)])
    x = np.concatenate(rows).astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:k].T.astype(np.float32)


def gram(fm: np.ndarray, pca, centred: bool = False) -> np.ndarray:
    """Second-order pooling: positions projected to k PCA dims, k x k (co)variance, upper triangle,
    signed square root, L2. N x C x h x w -> N x k(k+1)/2."""
    mean, proj = pca
    out = []
    iu = np.triu_indices(proj.shape[1])
    for one in fm:
        y = (one.reshape(one.shape[0], -1).T - mean) @ proj  # positions x k
        if centred:
            y = y - y.mean(0)
        g = (y.T @ y / len(y))[iu]
        out.append(np.sign(g) * np.sqrt(np.abs(g)))
    return norm(np.stack(out))


def crops5(rgb, frac=0.6):
    h, w = rgb.shape[:2]
    ch, cw = int(h * frac), int(w * frac)
    ys, xs = (0, h - ch, (h - ch) // 2), (0, w - cw, (w - cw) // 2)
    return [rgb[ys[a] : ys[a] + ch, xs[b] : xs[b] + cw] for a, b in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 2))]


def rot4(rgb, size):
    from imagesearch_pg.vision import transforms

    sq = transforms.resize(rgb, size, size)
    return [np.ascontiguousarray(np.rot90(sq, k)) for k in range(4)]


def describe(rgb, pcas, threads=2) -> dict[str, np.ndarray]:
    """Every descriptor of one picture (each L2-normalised)."""
    d = {"thumb16": norm(thumb16(rgb)), "hist": norm(rgb_hist(rgb))}
    for size in (224, 320, 448):
        fm = fmap([rgb], size, threads)
        d[f"avg{size}"] = norm(V.average(fm))[0]
        d[f"gem{size}"] = norm(D.gem(fm))[0]
        if size in pcas:
            d[f"gram{size}"] = gram(fm, pcas[size])[0]
            d[f"cov{size}"] = gram(fm, pcas[size], centred=True)[0]
    fm = fmap(rot4(rgb, 224), 224, threads)
    d["rot4gem224"] = norm(norm(D.gem(fm)).mean(0))
    d["rot2gem224"] = norm(norm(D.gem(fm[:2])).mean(0))  # 0 and 90 degrees
    fm = fmap(rot4(rgb, 320), 320, threads)
    d["rot4gem320"] = norm(norm(D.gem(fm)).mean(0))
    fm = fmap(crops5(rgb), 224, threads)
    g = norm(D.gem(fm))
    d["crops5gem224"] = norm(g.mean(0))
    d["whole+crops5gem224"] = norm(g.mean(0) + d["gem224"])
    d["rot2+crops5gem224"] = norm(d["rot2gem224"] + d["crops5gem224"])
    return d


def describe_all(paths: list[Path], pcas, tag: str) -> dict[str, np.ndarray]:
    key = hashlib.sha1(repr(([str(p) for p in paths], tag, GRAM_K, "v4")).encode()).hexdigest()[:16]
    cache = CACHE / f"{key}.npz"
    if cache.exists():
        return dict(np.load(cache))
    began, rows = time.perf_counter(), []
    for n, p in enumerate(paths):
        rows.append(describe(read_rgb(p), pcas))
        if n % 200 == 199:
            print(f"  {tag}: {n + 1}/{len(paths)} in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    out = {k: np.stack([r[k] for r in rows]).astype(np.float32) for k in rows[0]}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


# ----------------------------------------------------------------------------------------------
# Recipes: name -> (how to score from cached descriptors, how to compute one query's vector for timing)


def combo(*parts):
    """Sum of the parts' cosine scores == cosine of the concatenation of the L2-normalised parts."""
    return lambda d: norm(np.concatenate([d[p] for p in parts], axis=-1))


def mean_of(*parts):
    """One storable vector (same dimension): the normalised sum of the L2-normalised parts."""
    return lambda d: norm(sum(d[p] for p in parts))


RECIPES = {
    "16x16 grey thumbnail (baseline)": ("thumb16", 0),
    "RGB histogram 8x8x8 (baseline)": ("hist", 0),
    "average@224": ("avg224", 1),
    "GeM@224 (current)": ("gem224", 1),
    "average@448": ("avg448", 4),
    "GeM@320": ("gem320", 2),
    "GeM@448": ("gem448", 4),
    "GeM 224+320 (concatenated, 2560-d)": (combo("gem224", "gem320"), 3),
    "GeM 224+448 (concatenated, 2560-d)": (combo("gem224", "gem448"), 5),
    "GeM 224+320 (mean, 1280-d)": (mean_of("gem224", "gem320"), 3),
    "GeM 224+448 (mean, 1280-d)": (mean_of("gem224", "gem448"), 5),
    "GeM 224+320+448 (mean)": (mean_of("gem224", "gem320", "gem448"), 7),
    f"Gram PCA{GRAM_K}@224 (1176-d)": ("gram224", 1),
    f"covariance PCA{GRAM_K}@224": ("cov224", 1),
    f"Gram PCA{GRAM_K}@448": ("gram448", 4),
    f"covariance PCA{GRAM_K}@448": ("cov448", 4),
    "GeM@224 + Gram@224": (combo("gem224", "gram224"), 1),
    "GeM@448 + Gram@448": (combo("gem448", "gram448"), 4),
    "5 crops (60%) GeM@224, mean": ("crops5gem224", 5),
    "whole + 5 crops GeM@224": ("whole+crops5gem224", 6),
    "rotations 0+90 GeM@224, mean": ("rot2gem224", 2),
    "rotations x4 GeM@224, mean": ("rot4gem224", 4),
    "rotations 0+90 + 5 crops GeM@224 (one batch of 7)": ("rot2+crops5gem224", 7),
    "rotations 0+90 @224 + GeM@448 (mean)": (mean_of("rot2gem224", "gem448"), 6),
    "rotations x4 GeM@320, mean": ("rot4gem320", 8),
    "GeM@224 + RGB histogram": (combo("gem224", "hist"), 1),
    "GeM@448 + RGB histogram": (combo("gem448", "hist"), 4),
    "GeM 224+448 + RGB histogram": (combo("gem224", "gem448", "hist"), 5),
}


def vectors(d, how):
    return d[how] if isinstance(how, str) else how(d)


def recall(scores, targets, ks=(1, 10)):
    order = np.argsort(-scores, axis=1)[:, : max(ks)]
    hit = order == targets[:, None]
    return {k: float(hit[:, :k].any(1).mean()) for k in ks}


# ----------------------------------------------------------------------------------------------
# Timing (single thread, batch 1)


def time_recipes(query_paths, pcas, n=30):
    enc = encoder(threads=1)
    ims = [read_rgb(p) for p in query_paths[:n]]
    t = []
    for p in query_paths[:n]:
        s = time.perf_counter()
        read_rgb(p)
        t.append(time.perf_counter() - s)
    decode = statistics.median(t) * 1000

    def gem_at(size):
        return lambda im: norm(D.gem(fmap([im], size, 1)))[0]

    fns = {
        "thumb16": lambda im: norm(thumb16(im)),
        "hist": lambda im: norm(rgb_hist(im)),
        "avg224": lambda im: norm(V.average(fmap([im], 224, 1)))[0],
        "gem224": gem_at(224),
        "avg448": lambda im: norm(V.average(fmap([im], 448, 1)))[0],
        "gem320": gem_at(320),
        "gem448": gem_at(448),
        "gem224+320": lambda im: (gem_at(224)(im), gem_at(320)(im)),
        "gem224+448": lambda im: (gem_at(224)(im), gem_at(448)(im)),
        "gem224+320+448": lambda im: (gem_at(224)(im), gem_at(320)(im), gem_at(448)(im)),
        "rot2_224": lambda im: D.gem(fmap(rot4(im, 224)[:2], 224, 1)),
        "rot2+crops5": lambda im: D.gem(fmap(rot4(im, 224)[:2] + [cv2.resize(c, (224, 224), interpolation=cv2.INTER_AREA) for c in crops5(im)], 224, 1)),
        "rot2+gem448": lambda im: (D.gem(fmap(rot4(im, 224)[:2], 224, 1)), gem_at(448)(im)),
        "gem320+448": lambda im: (gem_at(320)(im), gem_at(448)(im)),
        "gram224": lambda im: gram(fmap([im], 224, 1), pcas[224]),
        "gram448": lambda im: gram(fmap([im], 448, 1), pcas[448]),
        "gem+gram224": lambda im: (lambda fm: (D.gem(fm), gram(fm, pcas[224])))(fmap([im], 224, 1)),
        "gem+gram448": lambda im: (lambda fm: (D.gem(fm), gram(fm, pcas[448])))(fmap([im], 448, 1)),
        "crops5": lambda im: D.gem(fmap(crops5(im), 224, 1)),
        "whole+crops5": lambda im: D.gem(fmap([cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA)] + [cv2.resize(c, (224, 224), interpolation=cv2.INTER_AREA) for c in crops5(im)], 224, 1)),
        "rot4_224": lambda im: D.gem(fmap(rot4(im, 224), 224, 1)),
        "rot4_320": lambda im: D.gem(fmap(rot4(im, 320), 320, 1)),
        "gem224+hist": lambda im: (gem_at(224)(im), rgb_hist(im)),
        "gem448+hist": lambda im: (gem_at(448)(im), rgb_hist(im)),
        "gem224+448+hist": lambda im: (gem_at(224)(im), gem_at(448)(im), rgb_hist(im)),
    }
    enc.load()
    out = {}
    for name, fn in fns.items():
        for im in ims[:3]:
            fn(im)  # warm-up
        t = []
        for im in ims:
            s = time.perf_counter()
            fn(im)
            t.append(time.perf_counter() - s)
        out[name] = statistics.median(t) * 1000
    return decode, out


TIMING_OF = {  # recipe -> key in time_recipes
    "16x16 grey thumbnail (baseline)": "thumb16", "RGB histogram 8x8x8 (baseline)": "hist",
    "average@224": "avg224", "GeM@224 (current)": "gem224", "average@448": "avg448", "GeM@320": "gem320",
    "GeM@448": "gem448", "GeM 224+320 (concatenated, 2560-d)": "gem224+320",
    "GeM 224+448 (concatenated, 2560-d)": "gem224+448", "GeM 224+320 (mean, 1280-d)": "gem224+320",
    "GeM 224+448 (mean, 1280-d)": "gem224+448", "GeM 224+320+448 (mean)": "gem224+320+448",
    "rotations 0+90 GeM@224, mean": "rot2_224", "rotations 0+90 + 5 crops GeM@224 (one batch of 7)": "rot2+crops5",
    "rotations 0+90 @224 + GeM@448 (mean)": "rot2+gem448",
    f"Gram PCA{GRAM_K}@224 (1176-d)": "gram224", f"covariance PCA{GRAM_K}@224": "gram224",
    f"Gram PCA{GRAM_K}@448": "gram448", f"covariance PCA{GRAM_K}@448": "gram448",
    "GeM@224 + Gram@224": "gem+gram224", "GeM@448 + Gram@448": "gem+gram448",
    "5 crops (60%) GeM@224, mean": "crops5", "whole + 5 crops GeM@224": "whole+crops5",
    "rotations x4 GeM@224, mean": "rot4_224", "rotations x4 GeM@320, mean": "rot4_320",
    "GeM@224 + RGB histogram": "gem224+hist", "GeM@448 + RGB histogram": "gem448+hist",
    "GeM 224+448 + RGB histogram": "gem224+448+hist",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-distractors", action="store_true", help="leave the gallery-only distractors out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    m = json.loads(args.manifest.read_text())
    root = args.manifest.parent
    gallery = [g for g in m["gallery"] if not (args.no_distractors and g.get("distractor"))]
    ids = {g["id"]: i for i, g in enumerate(gallery)}
    queries = m["queries"]["crops"]
    targets = np.array([ids[q["target"]] for q in queries])
    photo = np.array([bool(gallery[t].get("photo")) for t in targets])
    odd = np.arange(len(queries)) % 2 == 1

    distractors = [root / g["path"] for g in m["gallery"] if g.get("distractor")][:PCA_PICTURES]
    pca_path = CACHE / f"pca-{GRAM_K}.npz"
    if pca_path.exists():
        z = np.load(pca_path)
        pcas = {s: (z[f"m{s}"], z[f"p{s}"]) for s in (224, 448)}
    else:
        pcas = {s: learn_pca([fmap([read_rgb(p)], s)[0] for p in distractors], GRAM_K) for s in (224, 448)}
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(pca_path, **{f"m{s}": v[0] for s, v in pcas.items()}, **{f"p{s}": v[1] for s, v in pcas.items()})

    G = describe_all([root / g["path"] for g in m["gallery"]], pcas, "gallery")
    if args.no_distractors:
        keep = np.array([not g.get("distractor") for g in m["gallery"]])
        G = {k: v[keep] for k, v in G.items()}
    Q = describe_all([root / q["path"] for q in queries], pcas, "queries")

    results = {}
    for name, (how, passes) in RECIPES.items():
        s = vectors(Q, how) @ vectors(G, how).T
        results[name] = {
            "all": recall(s, targets), "photo": recall(s[photo], targets[photo]),
            "odd": recall(s[odd], targets[odd]), "passes_224": passes,
        }
    # Tuned fusion: GeM + w * Gram, w chosen on the even queries.
    for size in (224, 448):
        sg, sr = Q[f"gem{size}"] @ G[f"gem{size}"].T, Q[f"gram{size}"] @ G[f"gram{size}"].T
        best = max((recall((sg + w * sr)[~odd], targets[~odd])[1], w) for w in (0.25, 0.5, 1, 2, 4))[1]
        s = sg + best * sr
        results[f"GeM@{size} + {best} x Gram@{size} (w tuned on even)"] = {
            "all": recall(s, targets), "photo": recall(s[photo], targets[photo]), "odd": recall(s[odd], targets[odd]),
            "passes_224": 1 if size == 224 else 4,
        }

    # PCA-whitening (shrinkage 0.5, descriptors.learn_whitening) learned on the distractors only.
    if not args.no_distractors:
        dis = np.array([bool(g.get("distractor")) for g in gallery])
        for key, label in (("gem224", "GeM@224"), ("rot2gem224", "rotations 0+90 GeM@224")):
            mean, proj = V.learn_whitening(G[key][dis], 512)
            s = V.apply_whitening(Q[key], mean, proj) @ V.apply_whitening(G[key], mean, proj).T
            results[f"{label}, whitened to 512-d (learned on distractors)"] = {
                "all": recall(s, targets), "photo": recall(s[photo], targets[photo]),
                "odd": recall(s[odd], targets[odd]), "passes_224": 1 if key == "gem224" else 2,
            }

    decode = None
    if not args.no_timing:
        decode, ms = time_recipes([root / q["path"] for q in queries], pcas)
        for name, key in TIMING_OF.items():
            results[name]["ms"] = round(ms[key], 1)
        for size in (224, 448):
            for name in results:
                if name.startswith(f"GeM@{size} + ") and "tuned" in name:
                    results[name]["ms"] = round(ms[f"gem+gram{size}"], 1)
        for name in results:
            if "whitened" in name:
                results[name]["ms"] = round(ms["gem224" if name.startswith("GeM@224") else "rot2_224"], 1)

    info = {"gallery": len(gallery), "textures": len(set(q["target"] for q in queries)), "queries": len(queries),
            "photo_queries": int(photo.sum()), "decode_ms": decode and round(decode, 1), "results": results}
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"gallery {len(gallery)} ({info['textures']} textures), queries {len(queries)} "
          f"({int(photo.sum())} of photographed textures); JPEG decode p50 {decode and round(decode, 1)} ms")
    print("| recipe | R@1 | R@10 | photo R@1 | photo R@10 | odd R@1 | ms (1 thread) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['all'][1]:.3f} | {r['all'][10]:.3f} | {r['photo'][1]:.3f} | {r['photo'][10]:.3f} "
              f"| {r['odd'][1]:.3f} | {r.get('ms', '-')} |")


if __name__ == "__main__":
    main()
