"""Trademark SearchImageByPic on real marks: end to end at Num=10 and Num=100, each stage, and R@1 / R@10.

    IMAGESEARCH_HOME=/work/benchruns/trademark-home \\
    python benchmarks/trademark_search.py [MANIFEST] [--gallery-limit N] [--queries 100] [--num 10,100]
        [--kinds jpeg1000,photo224,photo1000,pasted1000] [--no-stages] [--json] [--keep] [--instance NAME]

MANIFEST defaults to ~/.cache/imagesearch-bench/bench/logo-simple-icons/manifest.json (3,469 one-colour marks,
224 px PNGs on white). A trademark instance (service.create_instance(name, "trademark")) holds the gallery,
each logo added with `add_image` (default parameters, ProductId = the gallery id); --gallery-limit keeps the
first N logos (the queries are then drawn from those); --keep leaves the instance and prints its name,
--instance NAME reuses one made by an earlier --keep run (same manifest and --gallery-limit).

Query kinds (--queries of each; the same pictures for every Num):
- jpeg1000: a gallery logo (seeded random choice) photographed large: its 224 px PNG scaled so that its side
  is 45-85 % of 1000 px (bicubic), turned by -8..8 degrees, placed at a random spot of a white 1000x1000
  canvas, lit by a linear gradient (brightness 0.90-1.00 across the frame in a random direction), Gaussian
  noise of sigma 2, saved as JPEG q90.
- photo224: the set's hard queries as they are (queries/hard*.jpg: the logo recoloured or not, scaled 0.6-0.9,
  turned a few degrees, pasted on a real photo; 224x224 JPEG).
- photo1000: the same hard queries upscaled to 1000x1000 (bicubic), saved as JPEG q90.
- pasted1000: each hard query at its own 224 px pasted at a random spot of a 1000x1000 frame (the next hard
  query's photo upscaled and blurred, Gaussian sigma 10), JPEG q90: a small mark in a big busy picture.

Measured: `service.search_by_picture(name, jpeg_bytes, num=N)` end to end (p50 / p90 / p99 over the queries;
the kinds and the Nums interleaved query by query, the Num order alternating, so that load on the machine
falls on all alike), this process's CPU time per search (cpu_p50_ms: the database's work is in its own
processes; on a machine shared with other work it varies less than the wall time), and R@1 / R@10 of the
query's target in those results. in_service_p50_ms: the same searches with the service's own stage
functions wrapped in timers (Tracer): decode, detect, describe, keypoints (on its own thread), search, the
wait for the keypoints after the search, rerank, and "other" (the rest: window, count, result).
Then each stage alone through the same library functions, one after another on the same pictures: decode
(intake.read_picture), detect (SubjectDetector.detect, plain-background test only on trademark), describe
(Encoder.describe; and its parts: the query's views, EfficientNetLite0Trademark.views, the picture's network
pass at 224, the views' passes at 160), keypoints (Encoder.keypoints: SIFT), search (picture_search.nearest
as the service calls it: fused HNSW walks with the keypoints of the first reranking.CANDIDATES rows), rerank
(reranking.rerank: unpacking, matching, RANSAC); with the number of views, of keypoints per query and per
candidate. In the service the picture's pass runs beside the views and the keypoints beside the search, so
the stages alone add up to more than the end-to-end time.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import measured_instance, percentile, reuse_options, summary_ms  # noqa: E402
from benchmarks.served import emit  # noqa: E402
from imagesearch_pg.service import ImageSearch, reranking  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402
from imagesearch_pg.vision import descriptors, intake, transforms  # noqa: E402

DEFAULT_MANIFEST = Path("~/.cache/imagesearch-bench/bench/logo-simple-icons/manifest.json").expanduser()
KINDS = ("jpeg1000", "photo224", "photo1000")  # and "pasted1000" on request (--kinds)
SERVICE_TYPE = "trademark"


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def photographed(logo: np.ndarray, rng: np.random.Generator, side: int = 1000) -> np.ndarray:
    """A logo as a 1000x1000 photo of it (see the module's docstring: jpeg1000)."""
    import cv2

    size = int(side * rng.uniform(0.45, 0.85))
    big = cv2.resize(logo, (size, size), interpolation=cv2.INTER_CUBIC)
    angle = float(rng.uniform(-8, 8))
    x, y = (int(v) for v in rng.integers(0, side - size + 1, 2))
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    matrix[:, 2] += (x, y)
    canvas = cv2.warpAffine(big, matrix, (side, side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255)).astype(np.float32)
    direction = rng.uniform(-1, 1, 2)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    ramp = xs * direction[0] + ys * direction[1]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    light = 1.0 - 0.10 * ramp
    canvas = canvas * light[:, :, None] + rng.normal(0, 2.0, canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def build_queries(manifest: dict, base: Path, loaded: set[str], count: int, kinds: tuple[str, ...]) -> dict:
    """{kind: [(target, jpeg bytes)]}, ``count`` of each, targets among the ``loaded`` gallery ids."""
    rng = np.random.default_rng(7)
    gallery = [g for g in manifest["gallery"] if g["id"] in loaded]
    hard = [q for q in manifest["queries"]["hard"] if q["target"] in loaded][:count]
    out: dict[str, list] = {}
    if "jpeg1000" in kinds:
        picks = rng.choice(len(gallery), size=min(count, len(gallery)), replace=False)
        logos = [(gallery[i]["id"], np.asarray(Image.open(base / gallery[i]["path"]).convert("RGB"))) for i in picks]
        out["jpeg1000"] = [(target, jpeg(photographed(logo, rng))) for target, logo in logos]
    if "photo224" in kinds:
        out["photo224"] = [(q["target"], (base / q["path"]).read_bytes()) for q in hard]
    if "photo1000" in kinds:
        out["photo1000"] = [(q["target"], jpeg(upscaled(base / q["path"]))) for q in hard]
    if "pasted1000" in kinds:
        spots = np.random.default_rng(11)
        out["pasted1000"] = [
            (q["target"], jpeg(pasted(base, q, hard[(i + 1) % len(hard)], spots))) for i, q in enumerate(hard)
        ]
    return out


def upscaled(path: Path, side: int = 1000) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC))


def pasted(base: Path, query: dict, other: dict, rng: np.random.Generator, side: int = 1000) -> np.ndarray:
    """A hard query at its own 224 px pasted at a random spot of a 1000x1000 frame: the next hard query's
    photo upscaled and blurred (Gaussian, sigma 10), so the mark is small in a big busy picture."""
    import cv2

    frame = cv2.GaussianBlur(upscaled(base / other["path"], side), (0, 0), 10)
    tile = np.asarray(Image.open(base / query["path"]).convert("RGB"))
    y, x = (int(v) for v in rng.integers(0, side - tile.shape[0] + 1, 2))
    frame[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return frame


def load_gallery(service: ImageSearch, name: str, manifest: dict, base: Path, limit: int | None, log) -> None:
    gallery = manifest["gallery"][:limit] if limit else manifest["gallery"]
    service.create_instance(name, SERVICE_TYPE, capacity=max(1, len(gallery)))
    began = time.perf_counter()
    for i, g in enumerate(gallery, start=1):
        service.add_image(name, g["id"], "0", (base / g["path"]).read_bytes())
        if i % 500 == 0:
            log(f"  added {i}/{len(gallery)} ({i / (time.perf_counter() - began):.1f} pictures/s)")
    log(f"added {len(gallery)} logos in {time.perf_counter() - began:.0f} s")


def spread_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 50), 1), "p90_ms": round(percentile(ms, 90), 1),
            "p99_ms": round(percentile(ms, 99), 1), "n": len(ms)}


class Tracer:
    """The service's own stage functions wrapped in timers while it searches: where one search's time goes
    (decode, detect, describe, keypoints on their thread, the database search, the wait for the keypoints
    after it, rerank; "other" is the rest of the end-to-end time)."""

    STAGES = ("decode", "detect", "describe", "keypoints", "search", "wait_keypoints", "rerank")

    def __init__(self, service: ImageSearch, name: str):
        from imagesearch_pg.service import picture_pipeline, searching

        self.current: dict = {}
        self._patches = []
        encoder = service.encoders.get(service.instances.cached(name).encoder)
        detector = service.pipeline.detector
        self._wrap(picture_pipeline.intake, "read_picture", "decode")
        self._wrap(detector, "detect", "detect")
        self._wrap(encoder, "describe", "describe")
        self._wrap(encoder, "keypoints", "keypoints")
        self._wrap(searching.picture_search, "nearest", "search")
        self._wrap(searching.reranking, "rerank", "rerank")

    def _wrap(self, owner, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)  # a module's function, or an object's bound method
        # A method is not the object's own attribute: undoing the patch deletes it rather than setting it.
        had_own = attribute in vars(owner) if not isinstance(owner, type(sys)) else True

        def timed_call(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.current[stage] = self.current.get(stage, 0.0) + ended - began
                self.current[f"{stage}_end"] = ended

        setattr(owner, attribute, timed_call)
        self._patches.append((owner, attribute, original, had_own))

    def start(self) -> None:
        self.current = {}

    def finish(self, total: float) -> dict:
        got = dict(self.current)
        if "keypoints_end" in got and "search_end" in got:
            got["wait_keypoints"] = max(0.0, got["keypoints_end"] - got["search_end"])
        got = {stage: got.get(stage, 0.0) for stage in self.STAGES}
        got["other"] = total - sum(v for k, v in got.items() if k != "keypoints")
        return got

    def close(self) -> None:
        for owner, attribute, original, had_own in reversed(self._patches):
            if had_own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)


def end_to_end(service: ImageSearch, name: str, queries: dict, nums: list[int], trace: bool = True) -> dict:
    """Each query searched at every Num, interleaved (kinds and Nums alternate query by query)."""
    tracer = Tracer(service, name) if trace else None
    traced = {(kind, num): [] for kind in queries for num in nums}
    times = {(kind, num): [] for kind in queries for num in nums}
    cpu_times = {(kind, num): [] for kind in queries for num in nums}
    hits = {(kind, num): [0, 0] for kind in queries for num in nums}
    longest = max(len(q) for q in queries.values())
    for i in range(longest):
        order = nums if i % 2 == 0 else nums[::-1]
        for kind, items in queries.items():
            if i >= len(items):
                continue
            target, picture = items[i]
            for num in order:
                if tracer:
                    tracer.start()
                began, cpu = time.perf_counter(), time.process_time()
                result = service.search_by_picture(name, picture, num=num)
                took = time.perf_counter() - began
                times[(kind, num)].append(took)
                cpu_times[(kind, num)].append(time.process_time() - cpu)
                if tracer:
                    traced[(kind, num)].append(tracer.finish(took))
                ranked = [m.product_id for m in result.matches]
                hits[(kind, num)][0] += ranked[:1] == [target]
                hits[(kind, num)][1] += target in ranked[:10]
    if tracer:
        tracer.close()
    return {
        f"{kind}@{num}": {
            **spread_ms(times[(kind, num)]),
            "cpu_p50_ms": round(percentile(cpu_times[(kind, num)], 50) * 1000, 1),
            "R@1": round(hits[(kind, num)][0] / len(times[(kind, num)]), 3),
            "R@10": round(hits[(kind, num)][1] / len(times[(kind, num)]), 3),
            **({"in_service_p50_ms": {
                stage: round(float(np.median([t[stage] for t in traced[(kind, num)]])) * 1000, 1)
                for stage in (*Tracer.STAGES, "other")
            }} if tracer else {}),
        }
        for kind, num in times
    }


def timed(function, items) -> tuple[list[float], list]:
    times, results = [], []
    for item in items:
        began = time.perf_counter()
        results.append(function(item))
        times.append(time.perf_counter() - began)
    return times, results


def stages(service: ImageSearch, name: str, pictures: list[bytes], nums: list[int]) -> dict:
    """Each stage of the search timed alone, on the same pictures, through the same functions."""
    instance = service.instances.cached(name)
    encoder = service.encoders.get(instance.encoder)
    rules = SERVICE_TYPES[SERVICE_TYPE]
    t_decode, images = timed(lambda q: intake.read_picture(q, SERVICE_TYPE), pictures)
    t_detect, boxes = timed(lambda im: service.pipeline.detector.detect(im, saliency=rules.saliency)[0], images)
    pairs = list(zip(images, boxes))

    def views(pair):  # describe's parts apart: the subject and its views (EfficientNetLite0Trademark.views)
        image, box = pair
        subject = transforms.bounded(transforms.crop(image, box), encoder.work_side)
        return subject, encoder.views(image, box, subject, query=True)

    t_views, made = timed(views, pairs)
    t_picture, _ = timed(lambda m: encoder.encode([m[0]]), made)
    t_shapes, _ = timed(lambda m: encoder.encode(m[1], size=encoder.silhouette_size), made)
    t_describe, described = timed(lambda pair: encoder.describe(*pair, query=True), pairs)
    t_keypoints, keypoints = timed(lambda pair: encoder.keypoints(*pair, query=True), pairs)
    searched = {}
    for num in nums:
        limit = max(num, reranking.CANDIDATES)

        def search(description):
            with service.database.reading() as conn:
                return picture_search.nearest(
                    conn, instance.id, instance.embedding_dim, description.embedding, limit, None, None,
                    list(description.silhouettes), keypoints_for=reranking.CANDIDATES,
                    silhouette_margin=encoder.silhouette_margin,
                )

        t_search, rows = timed(search, described)
        t_rerank, _ = timed(lambda item: reranking.rerank(item[0], item[1]), list(zip(rows, keypoints)))
        searched[f"search@{num}"], searched[f"rerank@{num}"] = summary_ms(t_search), summary_ms(t_rerank)
    candidate_counts = [
        len(descriptors.unpack_local(row.keypoints)[0]) for found in rows for row in found
        if row.keypoints is not None
    ]
    query_counts = [len(k[0]) for k in keypoints]
    return {
        "decode": summary_ms(t_decode),
        "detect": summary_ms(t_detect),
        "describe": summary_ms(t_describe),
        "describe.views": summary_ms(t_views),
        "describe.picture_pass": summary_ms(t_picture),
        "describe.silhouette_passes": summary_ms(t_shapes),
        "keypoints": summary_ms(t_keypoints),
        **searched,
        "views_per_query": round(float(np.mean([len(d.silhouettes) for d in described])), 2),
        "keypoints_per_query": {"mean": round(float(np.mean(query_counts)), 1), "max": int(max(query_counts))},
        "keypoints_per_candidate": {"mean": round(float(np.mean(candidate_counts)), 1),
                                    "max": int(max(candidate_counts)), "n": len(candidate_counts)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, nargs="?", default=DEFAULT_MANIFEST)
    parser.add_argument("--gallery-limit", type=int, default=None)
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind")
    parser.add_argument("--num", default="10,100", help="Num values, comma-separated")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--no-stages", action="store_true", help="end to end only")
    parser.add_argument("--json", action="store_true")
    reuse_options(parser, "the same manifest and --gallery-limit")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    nums = [int(n) for n in args.num.split(",")]
    kinds = tuple(k for k in args.kinds.split(",") if k)

    manifest = json.loads(args.manifest.read_text())
    base = args.manifest.parent
    service = ImageSearch.open()
    load = lambda name: load_gallery(service, name, manifest, base, args.gallery_limit, log)  # noqa: E731
    with measured_instance(service, args, "bench-trademark", load, log) as name:
        gallery = manifest["gallery"][: args.gallery_limit] if args.gallery_limit else manifest["gallery"]
        queries = build_queries(manifest, base, {g["id"] for g in gallery}, args.queries, kinds)
        for items in queries.values():  # warm-up: models, caches, the statements
            for _, picture in items[:3]:
                service.search_by_picture(name, picture, num=nums[0])
        report = {
            "manifest": str(args.manifest),
            "gallery": len(gallery),
            "encoder": service.describe_instance(name).encoder,
            "queries_per_kind": {kind: len(items) for kind, items in queries.items()},
            "end_to_end": end_to_end(service, name, queries, nums),
        }
        if not args.no_stages:
            report["stages"] = {
                kind: stages(service, name, [picture for _, picture in items], nums) for kind, items in queries.items()
            }
        emit(report, args.json)


if __name__ == "__main__":
    main()
