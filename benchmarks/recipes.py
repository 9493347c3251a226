"""Research harness: which encoder recipe for which service type, measured on the public benchmarks.

    python benchmarks/recipes.py [--set logo|furniture|fashion] [--max-queries N] [--json]

Brute-force cosine in numpy, no database. Descriptors are cached under /tmp/recipes-cache/desc,
keyed by set, picture list, view, size and flip, so a second run only re-scores.

To avoid fitting one manifest's quirks, parameters with a choice (re-ranking threshold, k,
whitening dimension) are chosen on the even-numbered queries ("tune") and every table shows the
odd-numbered ones ("held-out") next to it. ``layers`` recipes split the query into k-means
colour layers (``descriptors.colour_layers``) searched against the gallery's ink masks; ``SIFT
rerank`` re-orders the global top-k by RANSAC inliers (``descriptors.verify``). The ``box`` recipes crop the query to the ground-truth
logo box: an upper bound of perfect subject detection, never a recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import descriptor_variants as V  # noqa: E402
from imagesearch_pg.vision import descriptors as D  # noqa: E402

BENCH = Path(os.environ.get("BENCH_DIR", "~/.cache/imagesearch-bench")).expanduser() / "bench"
CACHE = Path("/tmp/recipes-cache/desc")
MODEL_CACHE = Path("/tmp/recipes-cache")
MIN_SIDE = 100  # the service refuses smaller pictures; users upscale
BATCH = 8

# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class Item:
    path: Path
    target: int | None = None  # gallery index (instance retrieval)
    category: str | None = None
    box: list | None = None


@dataclass
class BenchSet:
    name: str
    gallery: list[Item]
    queries: dict[str, list[Item]]
    leave_one_out: bool = False


def load_set(name: str) -> BenchSet:
    manifest = {
        "logo": BENCH / "logo-simple-icons/manifest.json",
        "furniture": BENCH / "furniture/manifest_type.json",
        "fashion": BENCH / "fashion-mnist/manifest.json",
    }[name]
    m = json.loads(manifest.read_text())
    root = manifest.parent
    ids = {g["id"]: i for i, g in enumerate(m["gallery"])}
    gallery = [Item(root / g["path"], category=g.get("category")) for g in m["gallery"]]
    queries = {
        split: [
            Item(root / q["path"], ids.get(q.get("target")), q.get("category"), (q.get("aug") or {}).get("box"))
            for q in qs
        ]
        for split, qs in m["queries"].items()
    }
    loo = name == "furniture"
    return BenchSet(name, gallery, queries, loo)


def read_rgb(path: Path) -> np.ndarray:
    im = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if min(im.shape[:2]) < MIN_SIDE:  # as a user would: upscale small pictures to 112 px
        f = 112 / min(im.shape[:2])
        im = cv2.resize(im, (round(im.shape[1] * f), round(im.shape[0] * f)), interpolation=cv2.INTER_CUBIC)
    return im


def crop_box(im: np.ndarray, box, margin: float = 0.15) -> np.ndarray:
    """Square crop around [x1, y1, x2, y2] with a margin (ground-truth upper bound only)."""
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    h, w = im.shape[:2]
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    c, d = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    return im[b:d, a:c] if d - b > 4 and c - a > 4 else im


VIEWS = {
    "rgb": lambda im: im,
    "grey": V.to_grey,
    "shape": D.to_shape_image,
    "invshape": lambda im: V.invert(D.to_shape_image(im)),
    "edge": V.to_edge_image,
    "ink": D.silhouette,  # the trademark encoder's stored view: the ink, framed
}


def prepare(item: Item, view: str, crop: bool) -> np.ndarray:
    im = read_rgb(item.path)
    if crop and item.box:
        im = crop_box(im, item.box)
    return VIEWS[view](im)


# ----------------------------------------------------------------------------------------------
# Global descriptors (cached)

_encoder = None


def encoder():
    global _encoder
    if _encoder is None:
        from imagesearch_pg.vision.encoders import EncoderRegistry

        _encoder = EncoderRegistry(MODEL_CACHE, threads=2).get("efficientnet-lite0")
    return _encoder


def _key(*parts) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def encode(items: list[Item], view: str, size: int, flip: bool = False, crop: bool = False, regions: int = 0):
    """{'avg': N x C, 'gem': N x C, 'reg': N x R x C (float16, GeM per region, if regions)} for the items."""
    paths = [str(i.path) for i in items]
    path = CACHE / f"{_key(paths, view, size, flip, crop, regions, 'v2' if regions else 'v1', 'framed-ink')}.npz"
    if path.exists():
        return dict(np.load(path))
    out = {"avg": [], "gem": [], "reg": []}
    began = time.perf_counter()
    for s in range(0, len(items), BATCH):
        ims = [prepare(i, view, crop) for i in items[s : s + BATCH]]
        if flip:
            ims = [np.ascontiguousarray(im[:, ::-1]) for im in ims]
        fm = encoder().run(ims, ("feature_map",), size=size)["feature_map"]
        out["avg"].append(V.average(fm))
        out["gem"].append(D.gem(fm, 3.0))
        if regions:
            out["reg"].append(V.regional_gem(fm, 3.0, regions).astype(np.float16))
    res = {k: np.concatenate(v) for k, v in out.items() if v}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **res)
    print(f"  encoded {len(items)} x {view}@{size}{' flip' if flip else ''}{' crop' if crop else ''} "
          f"in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return res


def norm(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    name: str
    pool: str = "gem"  # avg | gem
    sizes: tuple = (224,)
    flip: bool = False
    gallery_views: tuple = ("rgb",)
    query_view: str = "rgb"
    whiten: int = 0  # PCA-whitening dim learned on the gallery (0 = none)
    regions: int = 0  # R-MAC levels over the query's feature map (0 = whole picture only)
    crop_to_box: bool = False  # ground truth: upper bound only
    rerank_k: int = 0  # local-feature re-ranking of the global top-k
    rerank_tau: int = 8  # inliers needed for a candidate to move up
    layers: int = 0  # colour-layer proposals over the query (k-means k), searched against gallery ink masks
    fuse: str = ""  # "" | "max" | "sum": fuse the layer scores with the plain gem@224 RGB scores
    note: str = ""


def descriptor(items, view, r: Recipe, crop=False, regions=0):
    """Whole-picture descriptors N x C (and region descriptors N x R x C), averaged over sizes and flips."""
    whole, reg = [], []
    for size in r.sizes:
        for flip in (False, True) if r.flip else (False,):
            e = encode(items, view, size, flip, crop, regions)
            whole.append(norm(e[r.pool]))
            if regions:
                reg.append(norm(e["reg"]) if r.pool == "gem" else None)
    w = norm(sum(whole))
    if regions:
        # Region windows differ per size: keep all regions of all sizes (flip is averaged pairwise).
        per = [norm(sum(reg[i : i + (2 if r.flip else 1)])) for i in range(0, len(reg), 2 if r.flip else 1)]
        return w, np.concatenate(per, axis=1)
    return w, None


def encode_layers(items: list[Item], k: int, size: int, crop: bool = False):
    """Colour-layer silhouettes of each query, encoded: (N_total x C GeM, owner index per row)."""
    path = CACHE / f"layers-{_key([str(i.path) for i in items], k, size, crop, 'v2')}.npz"
    if path.exists():
        z = np.load(path)
        return z["gem"], z["owner"]
    began = time.perf_counter()
    gems, owner = [], []
    for n, item in enumerate(items):
        im = read_rgb(item.path)
        if crop and item.box:
            im = crop_box(im, item.box)
        layers = D.colour_layers(im, k=k)
        gems.append(D.gem(encoder().run(layers, ("feature_map",), size=size)["feature_map"]))
        owner += [n] * len(layers)
    gem, owner = np.concatenate(gems), np.array(owner)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, gem=gem, owner=owner)
    print(f"  encoded layers of {len(items)} pictures (k={k}, {len(owner) / len(items):.1f}/picture) @{size} "
          f"in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return gem, owner


def layer_scores(bench, queries, r: Recipe):
    size = r.sizes[0]
    g = norm(encode(bench.gallery, "ink", size)["gem"])
    q, owner = encode_layers(queries, r.layers, size, crop=r.crop_to_box)
    s = norm(q) @ g.T
    out = np.full((len(queries), len(g)), -np.inf, np.float32)
    np.maximum.at(out, owner, s)
    return out


def global_scores(bench: BenchSet, queries: list[Item], r: Recipe) -> np.ndarray:
    if r.layers:
        s = layer_scores(bench, queries, r)
        if r.fuse:
            plain = global_scores(bench, queries, Recipe("gem@224", crop_to_box=r.crop_to_box))
            s = np.maximum(s, plain) if r.fuse == "max" else s + plain
        return s
    gal = [descriptor(bench.gallery, v, r)[0] for v in r.gallery_views]
    qw, qr = descriptor(queries, r.query_view, r, crop=r.crop_to_box, regions=r.regions)
    if r.whiten:
        mean, proj = V.learn_whitening(np.concatenate(gal), r.whiten)
        gal = [V.apply_whitening(g, mean, proj) for g in gal]
        qw = V.apply_whitening(qw, mean, proj)
        qr = V.apply_whitening(qr, mean, proj) if qr is not None else None
    scores = np.full((len(queries), len(bench.gallery)), -np.inf, np.float32)
    for g in gal:
        scores = np.maximum(scores, qw @ g.T)
        if qr is not None:
            for j in range(qr.shape[1]):
                scores = np.maximum(scores, qr[:, j] @ g.T)
    return scores


# Local features (cached) ----------------------------------------------------------------------


def local_cache(items: list[Item], crop=False, both=True):
    """SIFT features per picture; the gallery keeps one polarity, queries both (see D.local_features)."""
    path = CACHE / f"local-{_key([str(i.path) for i in items], crop, both, 'sift300-v1')}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    began = time.perf_counter()
    feats = [D.local_features(read_rgb(i.path) if not crop else crop_box(read_rgb(i.path), i.box), both_polarities=both)
             for i in items]
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(feats))
    print(f"  SIFT on {len(items)} pictures in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return feats


def rerank_inliers(bench, queries, scores, k):
    """Inlier counts (Q x k) of the global top-k, and the top-k indices."""
    gfeat = local_cache(bench.gallery, both=False)
    qfeat = local_cache(queries)
    top = np.argsort(-scores, axis=1)[:, :k]
    inl = np.zeros(top.shape, np.int32)
    for qi in range(len(queries)):
        for j, gi in enumerate(top[qi]):
            inl[qi, j] = V.verify(qfeat[qi], gfeat[gi])
    return top, inl


def apply_rerank(scores, top, inl, k, tau):
    """Candidates in the top-k with >= tau inliers move to the front, ordered by inliers."""
    out = scores.copy()
    kk = min(k, top.shape[1])
    for qi in range(len(scores)):
        for j in range(kk):
            if inl[qi, j] >= tau:
                out[qi, top[qi, j]] = 10.0 + inl[qi, j] + scores[qi, top[qi, j]]
    return out


# ----------------------------------------------------------------------------------------------
# Metrics


def instance_metrics(scores, queries):
    assert not np.isnan(scores).any(), "NaN scores"
    tgt = np.array([q.target for q in queries])
    t = scores[np.arange(len(queries)), tgt]
    rank = (scores > t[:, None]).sum(axis=1)
    return {"R@1": float((rank < 1).mean()), "R@10": float((rank < 10).mean())}


def category_p1(scores, bench, queries):
    if bench.leave_one_out:
        index = {str(g.path): i for i, g in enumerate(bench.gallery)}
        for qi, q in enumerate(queries):
            if str(q.path) in index:
                scores[qi, index[str(q.path)]] = -np.inf
    best = scores.argmax(axis=1)
    return float(np.mean([bench.gallery[b].category == q.category for b, q in zip(best, queries)]))


def halves(n):
    idx = np.arange(n)
    return idx[0::2], idx[1::2]


# ----------------------------------------------------------------------------------------------
# Cost per picture


def time_recipe(r: Recipe, sample: list[np.ndarray], gallery_local=None, gallery_size=3469, reps=1):
    """p50 ms per picture at batch 1: view + network pass(es) + pooling (+ regions) (+ SIFT + verify k).
    Returns (search ms, add ms): adding a picture needs all its gallery views, no search."""
    enc = encoder()
    gal = norm(np.random.rand(gallery_size, 1280).astype(np.float32))
    search, add = [], []
    for im in sample:
        t0 = time.perf_counter()
        if r.layers:
            layers = D.colour_layers(im, k=r.layers)
            v = D.gem(enc.run(layers, ("feature_map",), size=r.sizes[0])["feature_map"])
            if r.fuse:
                v = D.gem(enc.run([im], ("feature_map",), size=224)["feature_map"])
        q = VIEWS[r.query_view](im)
        for size in (() if r.layers else r.sizes):
            for flip in (False, True) if r.flip else (False,):
                x = np.ascontiguousarray(q[:, ::-1]) if flip else q
                fm = enc.run([x], ("feature_map",), size=size)["feature_map"]
                v = D.gem(fm) if r.pool == "gem" else V.average(fm)
                if r.regions:
                    v = V.regional_gem(fm, 3.0, r.regions)[0]
        _ = norm(np.atleast_2d(v)) @ gal.T
        if r.rerank_k and gallery_local is not None:
            qf = D.local_features(im)
            for j in range(r.rerank_k):
                V.verify(qf, gallery_local[j % len(gallery_local)])
        search.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for view in r.gallery_views:
            g = VIEWS[view](im)
            for size in r.sizes:
                for flip in (False, True) if r.flip else (False,):
                    x = np.ascontiguousarray(g[:, ::-1]) if flip else g
                    fm = enc.run([x], ("feature_map",), size=size)["feature_map"]
                    D.gem(fm)
        if r.rerank_k:
            D.local_features(im, both_polarities=False)
        add.append(time.perf_counter() - t0)
    return statistics.median(search) * 1000, statistics.median(add) * 1000


# ----------------------------------------------------------------------------------------------
# Recipe lists

BASE = [
    Recipe("avg@224", pool="avg"),
    Recipe("gem@224"),
    Recipe("gem@320", sizes=(320,)),
    Recipe("gem@224+flip", flip=True),
    Recipe("gem@224+320", sizes=(224, 320)),
    Recipe("gem@224+320+flip", sizes=(224, 320), flip=True),
    Recipe("gem@224+320+flip+white256", sizes=(224, 320), flip=True, whiten=256),
    Recipe("gem@224+white256", whiten=256),
]

LOGO = BASE + [
    Recipe("grey gem@224", gallery_views=("grey",), query_view="grey"),
    Recipe("shape gem@224", gallery_views=("shape",), query_view="shape"),
    Recipe("edge gem@224", gallery_views=("edge",), query_view="edge"),
    Recipe("shape+inv views gem@224", gallery_views=("shape", "invshape"), query_view="shape"),
    Recipe("gem@224 regions3", regions=3),
    Recipe("shape+inv views gem@224 regions3", gallery_views=("shape", "invshape"), query_view="shape", regions=3),
    Recipe("layers k4 gem@224", layers=4, gallery_views=("ink",)),
    Recipe("layers k5 gem@224", layers=5, gallery_views=("ink",)),
    Recipe("layers k5 gem@160", layers=5, sizes=(160,), gallery_views=("ink",)),
    Recipe("layers k5 gem@224 + rgb gem@224 (max)", layers=5, fuse="max", gallery_views=("ink", "rgb")),
    Recipe("layers k5 gem@224 + rgb gem@224 (sum)", layers=5, fuse="sum", gallery_views=("ink", "rgb")),
    Recipe("UPPER BOUND layers k5 gem@224 box-crop", layers=5, gallery_views=("ink",), crop_to_box=True,
           note="ground truth box"),
    Recipe("UPPER BOUND gem@224 box-crop", crop_to_box=True, note="ground truth box"),
    Recipe("UPPER BOUND shape+inv gem@224 box-crop", gallery_views=("shape", "invshape"), query_view="shape",
           crop_to_box=True, note="ground truth box"),
]

FASHION = [  # 10,000-picture gallery: recipes that share one encoding pass only (time box)
    Recipe("avg@224", pool="avg"),
    Recipe("gem@224"),
    Recipe("gem@224+white128", whiten=128),
    Recipe("gem@224+white256", whiten=256),
]

CATEGORY = BASE + [
    Recipe("grey gem@224", gallery_views=("grey",), query_view="grey"),
    Recipe("gem@224+white128", whiten=128),
]


def run_set(name, max_queries=0, rerank=True, only=None):
    bench = load_set(name)
    rows = []
    if name == "logo":
        splits = {s: (qs[:max_queries] if max_queries else qs) for s, qs in bench.queries.items()}
        for r in LOGO:
            if only and only not in r.name:
                continue
            row = {"recipe": r.name, "note": r.note}
            for split, qs in splits.items():
                s = global_scores(bench, qs, r)
                tune, held = halves(len(qs))
                row[split] = {"tune": instance_metrics(s[tune], [qs[i] for i in tune]),
                              "held": instance_metrics(s[held], [qs[i] for i in held])}
            rows.append((r, row))
            print(fmt_logo(row), file=sys.stderr)
        if rerank:
            rows += logo_rerank(bench, splits)
    else:
        split, qs = next(iter(bench.queries.items()))
        qs = qs[:max_queries] if max_queries else qs
        for r in FASHION if name == "fashion" else CATEGORY:
            if only and only not in r.name:
                continue
            s = global_scores(bench, qs, r)
            row = {"recipe": r.name, "P@1": category_p1(s, bench, qs)}
            rows.append((r, row))
            print(f"{r.name:45s} P@1 {row['P@1']:.3f}", file=sys.stderr)
    return bench, rows


def logo_rerank(bench, splits):
    """Two-stage: global shortlist, SIFT + RANSAC re-ranking. k and tau chosen on the tune half."""
    rows = []
    firsts = [
        Recipe("gem@224+320+flip", sizes=(224, 320), flip=True),
        Recipe("layers k5 gem@224 + rgb gem@224 (max)", layers=5, fuse="max", gallery_views=("ink", "rgb")),
    ]
    kmax = 100
    for first in firsts:
        per_split = {}
        for split, qs in splits.items():
            s = global_scores(bench, qs, first)
            top, inl = rerank_inliers(bench, qs, s, kmax)
            per_split[split] = (qs, s, top, inl)
        # choose (k, tau) on the tune half of the hard split (easy is saturated either way)
        qs, s, top, inl = per_split["hard"]
        tune, _ = halves(len(qs))
        best = None
        for k in (20, 50, 100):
            for tau in (5, 6, 8, 10, 12, 15):
                m = instance_metrics(apply_rerank(s, top, inl, k, tau)[tune], [qs[i] for i in tune])["R@1"]
                if best is None or m > best[0]:
                    best = (m, k, tau)
        _, k, tau = best
        for kk in sorted({50, k}):
            r = replace(first, name=f"{first.name} + SIFT rerank k={kk} tau={tau}", rerank_k=kk, rerank_tau=tau,
                        note="k,tau chosen on tune half")
            row = {"recipe": r.name, "note": r.note}
            for split, (qs, s, top, inl) in per_split.items():
                s2 = apply_rerank(s, top, inl, kk, tau)
                tune, held = halves(len(qs))
                row[split] = {"tune": instance_metrics(s2[tune], [qs[i] for i in tune]),
                              "held": instance_metrics(s2[held], [qs[i] for i in held])}
            rows.append((r, row))
            print(fmt_logo(row), file=sys.stderr)
    return rows


def fmt_logo(row):
    e, h = row["easy"], row["hard"]
    return (f"{row['recipe']:55s} easy R@1 {e['held']['R@1']:.3f} R@10 {e['held']['R@10']:.3f} | "
            f"hard R@1 {h['held']['R@1']:.3f} R@10 {h['held']['R@10']:.3f} (tune R@1 {h['tune']['R@1']:.3f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["logo", "furniture", "fashion"], action="append")
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--only", help="run recipes whose name contains this")
    ap.add_argument("--timing", type=int, default=10, help="pictures timed per recipe (0 = skip)")
    a = ap.parse_args(argv)
    out = {}
    for name in a.set or ["logo", "furniture", "fashion"]:
        bench, rows = run_set(name, a.max_queries, rerank=not a.no_rerank, only=a.only)
        if a.timing:
            sample = [read_rgb(q.path) for q in next(iter(bench.queries.values()))[: a.timing]]
            glocal = local_cache(bench.gallery, both=False)[:50] if name == "logo" else None
            for r, row in rows:
                if r.crop_to_box:
                    continue
                row["search_ms"], row["add_ms"] = (round(x, 1) for x in time_recipe(r, sample, glocal, len(bench.gallery)))
        out[name] = [row for _, row in rows]
        if not a.json:
            print(f"\n## {name}" + (" (metrics on the held-out odd-numbered queries)" if name == "logo" else ""))
            if name == "logo":
                print("| recipe | easy R@1 | easy R@10 | hard R@1 | hard R@10 | hard R@1 (tune half) | search ms | add ms |")
                print("|---|---|---|---|---|---|---|---|")
                for row in out[name]:
                    e, h = row["easy"]["held"], row["hard"]["held"]
                    print(f"| {row['recipe']} | {e['R@1']:.3f} | {e['R@10']:.3f} | {h['R@1']:.3f} | {h['R@10']:.3f} "
                          f"| {row['hard']['tune']['R@1']:.3f} | {row.get('search_ms', '-')} | {row.get('add_ms', '-')} |")
            else:
                print("| recipe | P@1 | search ms | add ms |")
                print("|---|---|---|---|")
                for row in out[name]:
                    print(f"| {row['recipe']} | {row['P@1']:.3f} | {row.get('search_ms', '-')} | {row.get('add_ms', '-')} |")
    if a.json:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
