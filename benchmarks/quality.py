"""Retrieval quality through the service layer, exactly as a user's pictures go.

    python benchmarks/quality.py MANIFEST [--max-queries N] [--service-type product|generic|fabric|trademark]
                                 [--unlabelled] [--encoder NAME] [--json]

A temporary instance of the service type is created (and deleted afterwards) in the configured database;
every gallery picture is added with AddImage semantics (`add_image`, default parameters, the file's own
bytes; ProductId = the gallery id); every query is searched with SearchImageByPic semantics
(`search_by_picture`, default parameters, Num=100). Manifests are those of ../shared/bench (see its README).

- R@1 / R@10: the query's `target` is the first result / among the first 10.
- cat_P@1: the first result's gallery category equals the query's category.
- cat_mAP: average precision of the same-category results over the first 100 results (the protocol's Num
  limit; not the mAP@all of the bench baselines), normalised by min(100, same-category pictures).
- product_cat_acc (product instances, Fashion-MNIST): the predicted CategoryId of the query (PicInfo)
  equals the query's category mapped to the 14 product categories. With --unlabelled the gallery is added
  without CategoryIds, so only the picture itself informs the prediction.
Pictures smaller than the service type's minimum side (Fashion-MNIST's 28 px) are upscaled to it first,
as a user would have to; a query that is itself in the gallery never counts itself (leave-one-out).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagesearch_pg.service import ImageSearch  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402

# Fashion-MNIST classes -> product CategoryIds (categories.md), as the issue defines them.
FASHION_TO_CATEGORY = {
    "T-shirt/top": 0, "Pullover": 0, "Coat": 0, "Shirt": 0, "Trouser": 2, "Dress": 1,
    "Sandal": 4, "Sneaker": 4, "Ankle boot": 4, "Bag": 3,
}


def picture_bytes(path: Path, min_side: int) -> bytes:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if min(image.size) >= min_side:
            return data
        scale = min_side / min(image.size)
        bigger = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                             Image.BICUBIC)
    out = io.BytesIO()
    bigger.save(out, format="PNG")
    return out.getvalue()


def average_precision(relevant: list[bool], total_relevant: int) -> float:
    hits, precision_sum = 0, 0.0
    for rank, is_relevant in enumerate(relevant, start=1):
        if is_relevant:
            hits += 1
            precision_sum += hits / rank
    return precision_sum / max(1, min(len(relevant), total_relevant))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--max-queries", type=int, default=None, help="queries per split")
    parser.add_argument("--service-type", default="generic", choices=["product", "generic", "fabric", "trademark"])
    parser.add_argument("--unlabelled", action="store_true", help="product: add the gallery without CategoryIds")
    parser.add_argument("--encoder", default=None, help="an encoder other than the service type's default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    manifest = json.loads(args.manifest.read_text())
    base = args.manifest.parent
    gallery = manifest["gallery"]
    min_side = SERVICE_TYPES[args.service_type].min_side
    product_categories = args.service_type == "product" and all(
        g.get("category") in FASHION_TO_CATEGORY for g in gallery
    )

    service = ImageSearch.open()
    name = f"bench-quality-{os.getpid()}"
    options = {"encoder": args.encoder} if args.encoder else {}
    service.create_instance(name, args.service_type, capacity=max(1, len(gallery)), **options)
    try:
        path_to_id = {g["path"]: g["id"] for g in gallery}
        category_of = {g["id"]: g.get("category") for g in gallery}
        category_count: dict[str, int] = {}
        for g in gallery:
            category_count[str(g.get("category"))] = category_count.get(str(g.get("category")), 0) + 1

        began = time.perf_counter()
        for i, g in enumerate(gallery, start=1):
            labelled = product_categories and not args.unlabelled
            service.add_image(
                name, g["id"], "0", picture_bytes(base / g["path"], min_side),
                category_id=FASHION_TO_CATEGORY[g["category"]] if labelled else None,
            )
            if i % 500 == 0:
                log(f"added {i}/{len(gallery)}")
        add_rate = len(gallery) / (time.perf_counter() - began)

        splits, times = {}, []
        for split, queries in manifest["queries"].items():
            queries = queries[: args.max_queries] if args.max_queries else queries
            r1 = r10 = 0
            cat_p1, cat_ap, cat_acc = [], [], []
            for q in queries:
                began = time.perf_counter()
                result = service.search_by_picture(name, picture_bytes(base / q["path"], min_side), num=100)
                times.append(time.perf_counter() - began)
                self_id = path_to_id.get(q["path"])
                ranked = [a.product_id for a in result.matches if a.product_id != self_id]
                if q.get("target") is not None:
                    r1 += ranked[:1] == [q["target"]]
                    r10 += q["target"] in ranked[:10]
                if q.get("category") is not None:
                    relevant = [category_of[pid] == q["category"] for pid in ranked]
                    cat_p1.append(bool(relevant[:1] and relevant[0]))
                    others = category_count.get(str(q["category"]), 0) - (self_id is not None)
                    cat_ap.append(average_precision(relevant, others))
                    if product_categories:
                        cat_acc.append(result.pic_info.category_id == FASHION_TO_CATEGORY[q["category"]])
            n = len(queries)
            has_target = any(q.get("target") is not None for q in queries)
            splits[split] = {
                "n": n,
                "R@1": round(r1 / n, 4) if has_target else None,
                "R@10": round(r10 / n, 4) if has_target else None,
                "cat_P@1": round(float(np.mean(cat_p1)), 4) if cat_p1 else None,
                "cat_mAP": round(float(np.mean(cat_ap)), 4) if cat_ap else None,
            }
            if cat_acc:
                splits[split]["product_cat_acc"] = round(float(np.mean(cat_acc)), 4)
            log(f"{split}: {splits[split]}")
        report = {
            "manifest": str(args.manifest),
            "service_type": args.service_type,
            "encoder": service.describe_instance(name).encoder,
            "gallery": len(gallery),
            "splits": splits,
            "encode_img_per_s": round(add_rate, 1),
            "search_p50_ms": round(statistics.median(times) * 1000, 1),
        }
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    finally:
        service.delete_instance(name)
        service.close()


if __name__ == "__main__":
    main()
