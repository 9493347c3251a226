"""Geometric re-ranking of a search's first results, for encoders that store keypoints (trademark).

The global vectors bring the right mark into the first few dozen results; SIFT keypoints matched under one
similarity transform (descriptors.verify) tell a true copy (tens of inliers) from a look-alike (0-4).
Chosen in benchmarks/recipes.py (on the even queries, reported on the odd ones): the first 50 results,
moved up at 8 inliers or more.
"""

from __future__ import annotations

from types import SimpleNamespace
from imagesearch_pg.vision import descriptors

CANDIDATES = 50
MIN_INLIERS = 8


def rerank(rows: list, query_keypoints, stored: dict[tuple[str, str], bytes]) -> list:
    """``rows`` (best first, each with product_id, pic_name, score) with the verified ones among the first
    CANDIDATES moved to the front, most inliers first.

    A verified row's score becomes ``top + (1 - top) * n / (n + MIN_INLIERS)``, ``top`` being the best score
    of the rows left unverified: scores stay in 0..1, ordered as the rows are, and grow with the inliers ``n``.
    """
    checked = [
        (position, descriptors.unpack_local(stored[(row.product_id, row.pic_name)]))
        for position, row in enumerate(rows[:CANDIDATES])
        if (row.product_id, row.pic_name) in stored
    ]
    inliers = dict(zip((p for p, _ in checked), descriptors.verify_many(query_keypoints, [f for _, f in checked])))
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
