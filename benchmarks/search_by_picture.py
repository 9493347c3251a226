"""SearchImageByPic end to end on a 1000x1000 JPEG, and the cost of each stage.

    python benchmarks/search_by_picture.py [--service-type generic] [--rows 10000] [--queries 100] [--json]

A temporary instance holds --rows pictures (synthetic vectors bulk-loaded, as in benchmarks/search.py,
plus the query photos themselves added with AddImage; on trademark instances each synthetic row also gets a
synthetic silhouette and the SIFT keypoints of a drawn logo-like mark, so that the re-ranking reads data the
size of a trademark gallery's). Each query is a different 1000x1000 JPEG (q90)
made from scikit-image's photos; the end-to-end time is `search_by_picture` with default parameters.
The stages are then timed one by one on the same pictures through the same library functions.
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

from benchmarks.common import summary_ms  # noqa: E402
from benchmarks.search import clustered_vectors  # noqa: E402
from imagesearch_pg.service import ImageSearch, reranking  # noqa: E402
from imagesearch_pg.store import bulk_load  # noqa: E402
from imagesearch_pg.store import picture_search  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402
from imagesearch_pg.vision import descriptors, intake  # noqa: E402
from imagesearch_pg.vision.subject import whole  # noqa: E402


def query_pictures(count: int) -> list[bytes]:
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.rocket(), data.astronaut(), data.immunohistochemistry()]
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        photo = Image.fromarray(photos[i % len(photos)]).resize((1000, 1000), Image.BICUBIC)
        shifted = np.roll(np.asarray(photo), int(rng.integers(0, 200)), axis=1)  # each query differs
        buffer = io.BytesIO()
        Image.fromarray(shifted).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def drawn_marks(count: int) -> list[np.ndarray]:
    """Logo-like pictures (a word and a shape on white), whose keypoints stand in for a trademark gallery's:
    about as many per picture as the public logo set's (mean 45)."""
    import cv2

    rng = np.random.default_rng(5)
    marks = []
    for i in range(count):
        mark = np.full((300, 300, 3), 255, np.uint8)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, 3))
        cv2.putText(mark, word, (20, 200), int(rng.integers(0, 8)), 2.5, colour, int(rng.integers(4, 12)))
        cv2.circle(mark, (int(rng.integers(60, 240)), 80), int(rng.integers(15, 50)), colour, -1)
        marks.append(mark)
    return marks


def timed(function, items) -> list[float]:
    times = []
    for item in items:
        began = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-type", default="generic", choices=["product", "generic", "fabric", "trademark"])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    service = ImageSearch.open()
    name = f"bench-bypic-{int(time.time())}"
    service.create_instance(name, args.service_type, capacity=args.rows + 100)
    try:
        instance_id = service.instances.cached(name).id
        with service.database.transaction() as conn:
            vectors = clustered_vectors(args.rows)
            rows = ((f"s{i}", "0", 88888888, v) for i, v in enumerate(vectors))
            columns = bulk_load.BULK_COLUMNS
            encoder = service.encoders.registry.get(service.describe_instance(name).encoder)
            if encoder.silhouettes:
                silhouettes = clustered_vectors(args.rows, seed=1)
                stored_keypoints = [
                    descriptors.pack_local(descriptors.local_features(mark, both_polarities=False))
                    for mark in drawn_marks(50)
                ]
                rows = (row + (silhouettes[i], stored_keypoints[i % 50]) for i, row in enumerate(rows))
                columns += ("silhouette", "keypoints")
            bulk_load.bulk_load(conn, instance_id, rows, columns=columns)
        queries = query_pictures(args.queries)
        for i, picture in enumerate(queries[:5]):
            service.add_image(name, f"q{i}", "0", picture)
        service.search_by_picture(name, queries[0])  # warm-up: model load, caches

        end_to_end = timed(lambda picture: service.search_by_picture(name, picture), queries)

        dim = service.describe_instance(name).embedding_dim
        decoded = [intake.read_picture(q, args.service_type) for q in queries]
        rules = SERVICE_TYPES[args.service_type]  # as the service does

        def detect(image):
            if not rules.crops:
                return [whole(*image.shape[:2])]
            return service.pipeline.detector.detect(image, saliency=rules.saliency)

        boxes = [detect(image)[0] for image in decoded]
        pairs = list(zip(decoded, boxes))
        described = [encoder.describe(im, box, query=True) for im, box in pairs]
        limit = reranking.CANDIDATES if encoder.silhouettes else 10

        def search_only(description):
            silhouettes = None if description.silhouettes is None else list(description.silhouettes)
            with service.database.reading() as conn:
                return picture_search.nearest(
                    conn, instance_id, dim, description.embedding, limit, None, None, silhouettes,
                    keypoints_for=limit if encoder.silhouettes else 0, silhouette_margin=encoder.silhouette_margin,
                )

        def rerank_only(item):
            keypoints, rows = item
            reranking.rerank(rows, keypoints)

        stages = {
            "decode": summary_ms(timed(lambda q: intake.read_picture(q, args.service_type), queries)),
            "detect": summary_ms(timed(detect, decoded)),
            "describe": summary_ms(timed(lambda pair: encoder.describe(*pair, query=True), pairs)),
            "search": summary_ms(timed(search_only, described)),
        }
        if encoder.silhouettes:
            # In the service the keypoints are found on another thread while describe and search run.
            stages["keypoints"] = summary_ms(timed(lambda pair: encoder.keypoints(*pair, query=True), pairs))
            found = [(encoder.keypoints(*pair, query=True), search_only(d)) for pair, d in zip(pairs, described)]
            stages["rerank"] = summary_ms(timed(rerank_only, found))
        report = {
            "service_type": args.service_type,
            "rows": args.rows,
            "picture": "1000x1000 JPEG q90",
            "end_to_end": summary_ms(end_to_end),
            "stages": stages,
        }
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    finally:
        service.delete_instance(name)
        service.close()


if __name__ == "__main__":
    main()
