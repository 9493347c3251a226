"""Category prediction accuracy: ImageNet-logits mapping, labelled-neighbour vote, and their fusion.

    python benchmarks/categories.py [--json] [--threads 2] [--seed 0] [--draws 5]

Data: BENCH_DIR (default ~/.cache/imagesearch-bench)/bench/fashion-mnist and .../furniture, already built.
The default encoder (EfficientNet-Lite0) gives every picture its ImageNet logits and the L2-normalised
average-pooled embedding the service stores (``Encoder.predict``); they are computed once and cached in
BENCH_DIR/cache/categories-<encoder>.npz (delete it to re-encode). Fashion-MNIST's 28x28 grey pictures
are upscaled to 112x112 RGB first, as a client must (the service refuses sides < 100 px).

The neighbour search is numpy brute force over the gallery (the service will do the same kNN in SQL over
the instance's own pictures). Cases, each on the 1,000 ``train1000`` queries against the 10,000-picture
test gallery, Fashion-MNIST classes mapped to the product categories:

  a. logits mapping alone (an instance with no labelled pictures);
  b. the neighbour vote alone, k in {5, 10, 20}, all 10,000 gallery pictures labelled;
  c. plain majority vote, similarity-weighted vote (``neighbour_vote``) and the fusion (``fuse``) with only
     10, 30, 100 or 1,000 gallery pictures labelled (the rest are not neighbour candidates, as unlabelled
     pictures are not in the service's kNN; averaged over --draws random subsets), k = 5 and NEIGHBOURS;
     then a small sweep of the fusion constants around the chosen ones;
  d. furniture: the fraction of the 357 renders the logits mapping calls Furniture (all of them, and the 192
     that are furniture proper: the set also holds plugs, switches, doors, plants, bottles and people), and
     the fraction still called Furniture when fused with the nearest labelled Fashion-MNIST pictures.

The encoder's ONNX file lives in the configured model cache (IMAGESEARCH_HOME/models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagesearch_pg.categories import OTHER  # noqa: E402
from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.vision import category_prediction as cp  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.vision.encoders import EncoderRegistry  # noqa: E402

DEFAULT_ENCODER = SERVICE_TYPES["generic"].default_encoder  # the built-in model the service defaults to

FASHION_TO_CATEGORY = {
    "T-shirt/top": 0, "Pullover": 0, "Coat": 0, "Shirt": 0,
    "Trouser": 2,
    "Dress": 1,
    "Sandal": 4, "Sneaker": 4, "Ankle boot": 4,
    "Bag": 3,
}
FURNITURE = 9


def bench_root() -> Path:
    return Path(os.environ.get("BENCH_DIR", "~/.cache/imagesearch-bench")).expanduser()


def load_picture(path: Path, min_side: int = 112) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        scale = min_side / min(h, w)
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    return image


def encode(encoder, paths: list[Path], log, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised features N x 1280 float32, logits N x 1000 float32)."""
    features, logits = [], []
    for begin in range(0, len(paths), batch):
        out = encoder.run([load_picture(p) for p in paths[begin:begin + batch]], outputs=("features", "logits"))
        f = out["features"].astype(np.float32)
        features.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
        logits.append(out["logits"].astype(np.float32))
        if (begin // batch) % 50 == 0:
            log(f"  encoded {begin + len(paths[begin:begin + batch])}/{len(paths)}")
    return np.concatenate(features), np.concatenate(logits)


def load_data(threads: int, log) -> dict:
    """Encoded gallery/queries of both data sets, from the cache or computed (and cached)."""
    root = bench_root()
    bench = root / "bench"
    cache = root / "cache" / f"categories-{DEFAULT_ENCODER}.npz"
    fm = json.loads((bench / "fashion-mnist" / "manifest.json").read_text())
    fu = json.loads((bench / "furniture" / "manifest_type.json").read_text())
    sets = {
        "fm_gallery": [bench / "fashion-mnist" / e["path"] for e in fm["gallery"]],
        "fm_queries": [bench / "fashion-mnist" / e["path"] for e in fm["queries"]["train1000"]],
        "furniture": [bench / "furniture" / e["path"] for e in fu["gallery"]],
    }
    labels = {
        "fm_gallery": np.array([FASHION_TO_CATEGORY[e["category"]] for e in fm["gallery"]]),
        "fm_queries": np.array([FASHION_TO_CATEGORY[e["category"]] for e in fm["queries"]["train1000"]]),
        "fm_gallery_class": np.array([e["category"] for e in fm["gallery"]]),
        "fm_queries_class": np.array([e["category"] for e in fm["queries"]["train1000"]]),
    }
    arrays = {}
    if cache.exists():
        with np.load(cache) as stored:
            arrays = {k: stored[k] for k in stored.files}
    if any(f"{name}_features" not in arrays or len(arrays[f"{name}_features"]) != len(paths)
           for name, paths in sets.items()):
        encoder = EncoderRegistry(Settings.from_env().model_cache, threads).get(DEFAULT_ENCODER)
        arrays = {}
        for name, paths in sets.items():
            log(f"encoding {name} ({len(paths)} pictures) ...")
            arrays[f"{name}_features"], arrays[f"{name}_logits"] = encode(encoder, paths, log)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    return {**arrays, **labels}


FURNITURE_PROPER = ("table", "chair", "cabinet", "bed", "sofa", "armchair", "desk", "stool", "bench", "bookcase",
                    "unit", "lamp")  # the renders' types that are furniture; the rest are plugs, doors, plants, people


def top_neighbours(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores (clipped to 0-1, as the service's Score) of the k nearest gallery rows."""
    similarity = queries @ gallery.T
    index = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(similarity, index, 1)
    order = np.argsort(-scores, axis=1)
    return np.take_along_axis(index, order, 1), np.clip(np.take_along_axis(scores, order, 1), 0.0, 1.0)


def predict(logit_scores: list[dict], neighbour_labels: np.ndarray | None, neighbour_scores: np.ndarray | None,
            mode: str) -> np.ndarray:
    """Per query: 'logits' (fuse with no neighbours), 'majority' (plain vote), 'vote' (weighted vote alone),
    or 'fused' (category_prediction.fuse)."""
    out = []
    for i, scores in enumerate(logit_scores):
        if mode == "logits":
            out.append(cp.fuse(scores, {}, 0))
            continue
        pairs = list(zip(neighbour_labels[i].tolist(), neighbour_scores[i].tolist()))
        if mode == "majority":
            counts: dict[int, int] = {}
            for category, _ in pairs:
                counts[category] = counts.get(category, 0) + 1
            out.append(max(sorted(counts), key=lambda c: counts[c]))
        elif mode == "vote":
            votes = cp.neighbour_vote(pairs)
            out.append(max(sorted(votes), key=lambda c: votes[c]) if votes else OTHER)
        else:
            out.append(cp.fuse(scores, cp.neighbour_vote(pairs), len(pairs)))
    return np.array(out)


def accuracy(predicted: np.ndarray, truth) -> float:
    return round(float(np.mean(predicted == truth)), 4)


class Setting:
    """Temporarily override category_prediction's constants (for the sweeps)."""

    def __init__(self, **values):
        self.values = values

    def __enter__(self):
        self.saved = {k: getattr(cp, k) for k in self.values}
        for k, v in self.values.items():
            setattr(cp, k, v)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(cp, k, v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5, help="random labelled subsets per sparse budget")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    data = load_data(args.threads, log)
    k_default = cp.NEIGHBOURS

    q_logits = [cp.category_scores_from_logits(row) for row in data["fm_queries_logits"]]
    truth = data["fm_queries"]
    gallery_labels = data["fm_gallery"]
    report: dict = {"encoder": DEFAULT_ENCODER, "queries": len(truth), "gallery": len(gallery_labels),
                    "constants": {k: getattr(cp, k) for k in (
                        "OTHER_WEIGHT", "SIMILARITY_FLOOR", "SIMILARITY_POWER", "LOGITS_WEIGHT", "NEIGHBOURS")}}

    # a. logits alone, and how Other's weight trades product recall for "Other" on non-products
    report["fm_logits_alone"] = accuracy(predict(q_logits, None, None, "logits"), truth)
    report["fm_logits_alone_by_other_weight"] = {}
    for w in (1.0, 0.3, 0.1, 0.03, 0.0):
        with Setting(OTHER_WEIGHT=w):
            report["fm_logits_alone_by_other_weight"][str(w)] = accuracy(predict(q_logits, None, None, "logits"), truth)

    # b. the vote alone over the fully labelled gallery
    index, scores = top_neighbours(data["fm_queries_features"], data["fm_gallery_features"], 20)
    report["fm_full_labels"] = {}
    for k in (5, 10, 20):
        labels_k, scores_k = gallery_labels[index[:, :k]], scores[:, :k]
        report["fm_full_labels"][f"k{k}"] = {mode: accuracy(predict(q_logits, labels_k, scores_k, mode), truth)
                                             for mode in ("majority", "vote", "fused")}

    # c. sparse labels: only `n` gallery pictures are labelled (and searchable as neighbours)
    rng = np.random.default_rng(args.seed)
    budgets = (10, 30, 100, 1000)
    sparse_neighbours = {}
    for n in budgets:
        sparse_neighbours[n] = []
        for _ in range(args.draws):
            subset = rng.choice(len(gallery_labels), n, replace=False)
            sub_index, sub_scores = top_neighbours(data["fm_queries_features"], data["fm_gallery_features"][subset],
                                                   min(20, n))
            sparse_neighbours[n].append((gallery_labels[subset][sub_index], sub_scores))
    sparse_neighbours[len(gallery_labels)] = [(gallery_labels[index], scores)]

    def sparse_table(k: int, modes=("majority", "vote", "fused")) -> dict:
        table = {}
        for n, draws in sparse_neighbours.items():
            table[str(n)] = {mode: round(float(np.mean([
                accuracy(predict(q_logits, labels[:, :k], sc[:, :k], mode), truth) for labels, sc in draws])), 4)
                for mode in modes}
        return table

    report["fm_by_labelled_count"] = {f"k{k}": sparse_table(k) for k in (5, k_default)}

    # d. furniture renders: logits alone, and fused against the fully labelled Fashion-MNIST gallery
    # (a sofa arriving in an instance whose labelled pictures are all clothes: the vote must yield).
    types = np.array([e["type"] for e in json.loads(
        (bench_root() / "bench" / "furniture" / "manifest_type.json").read_text())["gallery"]])
    proper = np.isin(types, FURNITURE_PROPER)
    f_logits = [cp.category_scores_from_logits(row) for row in data["furniture_logits"]]
    f_alone = predict(f_logits, None, None, "logits")
    f_index, f_scores = top_neighbours(data["furniture_features"], data["fm_gallery_features"], k_default)
    f_fused = predict(f_logits, gallery_labels[f_index], f_scores, "fused")
    # The fusion constants: a small sweep around the chosen values (fused accuracy per labelled count).
    sweep = {}
    for floor, power in ((0.0, 1.0), (0.5, 1.0), (0.5, 2.0), (0.6, 1.0)):
        for lw in (0.0, 0.1, 0.25, 0.5, 1.0):
            with Setting(SIMILARITY_FLOOR=floor, SIMILARITY_POWER=power, LOGITS_WEIGHT=lw):
                row = {n: r["fused"] for n, r in sparse_table(k_default, ("fused",)).items()}
                row["furniture_vs_fashion"] = accuracy(
                    predict(f_logits, gallery_labels[f_index], f_scores, "fused")[proper], FURNITURE)
                sweep[f"floor={floor} power={power} logits_weight={lw}"] = row
    report["fm_fusion_sweep"] = sweep

    report["furniture"] = {
        "pictures": len(types), "furniture_proper": int(proper.sum()),
        "logits_alone_all": accuracy(f_alone, FURNITURE),
        "logits_alone_furniture_proper": accuracy(f_alone[proper], FURNITURE),
        "fused_with_fashion_labels_furniture_proper": accuracy(f_fused[proper], FURNITURE),
        "logits_alone_by_other_weight_furniture_proper": {},
    }
    for w in (1.0, 0.3, 0.1, 0.03, 0.0):
        with Setting(OTHER_WEIGHT=w):
            report["furniture"]["logits_alone_by_other_weight_furniture_proper"][str(w)] = accuracy(
                predict([s for s, p in zip(f_logits, proper) if p], None, None, "logits"), FURNITURE)
    by_type = {}
    for t in sorted(set(types)):
        by_type[t] = accuracy(f_alone[types == t], FURNITURE)
    report["furniture"]["logits_alone_by_type"] = by_type

    if args.json:
        print(json.dumps(report))
    else:
        print_tables(report)


def print_tables(r: dict) -> None:
    print(f"encoder {r['encoder']}; Fashion-MNIST {r['queries']} queries, {r['gallery']} gallery")
    print(f"constants {r['constants']}")
    print(f"\na. logits mapping alone: {r['fm_logits_alone']}")
    print("   by OTHER_WEIGHT: " + ", ".join(f"{k}: {v}" for k, v in r["fm_logits_alone_by_other_weight"].items()))
    print("\nb. all 10,000 gallery pictures labelled     majority  weighted-vote  fused")
    for k, row in r["fm_full_labels"].items():
        print(f"   {k:<40} {row['majority']:<9} {row['vote']:<14} {row['fused']}")
    for k, table in r["fm_by_labelled_count"].items():
        print(f"\nc. {k}, labelled gallery pictures n   majority  weighted-vote  fused"
              f"   (logits alone {r['fm_logits_alone']})")
        for n, row in table.items():
            print(f"   {n:>6}  {row['majority']:<9} {row['vote']:<14} {row['fused']}")
    print("\n   fusion sweep (fused accuracy by labelled count; furniture_vs_fashion = furniture-proper renders"
          "\n   predicted Furniture against the labelled Fashion-MNIST gallery):")
    for name, row in r["fm_fusion_sweep"].items():
        print(f"   {name:<42} " + "  ".join(f"{n}: {v}" for n, v in row.items()))
    f = r["furniture"]
    print(f"\nd. furniture renders ({f['pictures']}, of which {f['furniture_proper']} furniture proper)")
    print(f"   logits alone -> Furniture: all {f['logits_alone_all']}, "
          f"furniture proper {f['logits_alone_furniture_proper']}")
    print(f"   fused against the labelled Fashion-MNIST gallery, furniture proper: "
          f"{f['fused_with_fashion_labels_furniture_proper']}")
    print("   by OTHER_WEIGHT (proper): " + ", ".join(
        f"{k}: {v}" for k, v in f["logits_alone_by_other_weight_furniture_proper"].items()))
    print("   by type: " + ", ".join(f"{k} {v}" for k, v in f["logits_alone_by_type"].items()))


if __name__ == "__main__":
    main()
