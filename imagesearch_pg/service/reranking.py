"""Geometric re-ranking of a search's first results, for encoders that store keypoints (trademark).

The global vectors bring the right mark into the first few dozen results; SIFT keypoints matched under one
similarity transform (descriptors.verify_many) tell a true copy (tens of inliers) from a look-alike (0-4).
Chosen in benchmarks/recipes.py (on the even queries, reported on the odd ones): moved up at 8 inliers or
more. The first 50 results were checked at first; 30 keep logo hard R@1 at 0.466 (0.471 with 50, through
benchmarks/quality.py) for 40 % less matching, which the 80 ms search budget needed (docs/benchmarks.md).
"""

from __future__ import annotations

from types import SimpleNamespace
from imagesearch_pg.vision import descriptors

CANDIDATES = 30
MIN_INLIERS = 8


def rerank(rows: list, query_keypoints, known: dict | None = None) -> list:
    """``rows`` (best first, each with product_id, pic_name, score and the stored ``keypoints``, None for a
    picture stored without them) with the verified ones among the first CANDIDATES moved to the front,
    most inliers first. ``known``: inlier counts by (product_id, pic_name) from an earlier call with the same
    query, used and extended, so that a longer window of the same search verifies each picture once.

    A verified row's score becomes ``top + (1 - top) * n / (n + MIN_INLIERS)``, ``top`` being the best score
    of the rows left unverified: scores stay in 0..1, ordered as the rows are, and grow with the inliers ``n``.
    """
    known = {} if known is None else known
    fresh = [
        ((row.product_id, row.pic_name), descriptors.unpack_local(row.keypoints))
        for row in rows[:CANDIDATES]
        if row.keypoints is not None and (row.product_id, row.pic_name) not in known
    ]
    counts = descriptors.verify_many(query_keypoints, [f for _, f in fresh], min_matches=MIN_INLIERS)
    known.update(zip((key for key, _ in fresh), counts))
    inliers = {
        position: known.get((row.product_id, row.pic_name), 0) for position, row in enumerate(rows[:CANDIDATES])
    }
    verified: list[tuple[int, object]] = []
    others = []
    for position, row in enumerate(rows):
        if inliers.get(position, 0) >= MIN_INLIERS:
            verified.append((inliers[position], row))
        else:
            others.append(row)
    if not verified:
        return rows
    top = max((row.score for row in others), default=0.0)
    verified.sort(key=lambda pair: (-pair[0], -pair[1].score))  # stable for ties: best cosine first
    moved = [
        SimpleNamespace(**{**row._mapping, "score": top + (1.0 - top) * inliers / (inliers + MIN_INLIERS)})
        for inliers, row in verified
    ]
    return moved + others
