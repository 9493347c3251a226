"""Predicting a product picture's category without a text-image model (pure functions, no database).

Two signals, fused (notes/models.md, "Category prediction without a text-image model"):

* the encoder's ImageNet-1k logits, through a curated mapping of ImageNet classes to the product
  categories kept as data in ``data/imagenet_categories.json`` (every class not listed there is Other);
* a vote of the instance's own labelled pictures nearest to the new one (the service finds them with a
  kNN query over its pictures; ``Score`` is the clipped cosine similarity 0-1).

Measured with ``benchmarks/categories.py`` (Fashion-MNIST mapped to the product categories, 1,000
queries against a 10,000-picture gallery; furniture renders). The constants below come from there:

* Logits alone are weak on Fashion-MNIST (28 px grey thumbnails look like hatchets and can openers to an
  ImageNet model) and good on furniture photos; the summed softmax mass of the ~790 unmapped classes
  ("Other") is large even for clear product pictures, so Other must win by a wide margin
  (``OTHER_WEIGHT``) -- a cat, an astronaut or a rocket still does.
* The vote decides almost everything once labelled neighbours are similar; a neighbour's weight grows
  with its similarity above ``SIMILARITY_FLOOR`` (about the similarity of unrelated pictures), squared, so
  that with few labelled pictures the distant ones hardly count. That weighting, not the logits, is what
  lifts accuracy with 10-100 labelled pictures.
* The logits count as ``LOGITS_WEIGHT`` pseudo-neighbours: they decide when no labelled neighbour is
  similar (a sofa arriving in an instance labelled only with clothes) and break near-ties otherwise.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from imagesearch_pg.categories import CATEGORIES, OTHER

MAPPING_FILE = Path(__file__).resolve().parent / "data" / "imagenet_categories.json"
NUM_IMAGENET_CLASSES = 1000

# Fusion constants, chosen by measurement (benchmarks/categories.py; see the module docstring).
OTHER_WEIGHT = 0.1  # Other's logit mass is scaled by this before comparing it with real categories
SIMILARITY_FLOOR = 0.5  # neighbours at or below this cosine similarity carry no vote
SIMILARITY_POWER = 2.0  # weight = ((score - floor) / (1 - floor)) ** power
LOGITS_WEIGHT = 0.25  # the logits' distribution counts as this many identical neighbours
NEIGHBOURS = 10  # how many labelled nearest pictures the service should ask for


@lru_cache(maxsize=1)
def load_mapping() -> dict[int, tuple[int, ...]]:
    """Category id -> the ImageNet class indices that mean it (Other is every class not listed).

    Read once from ``data/imagenet_categories.json``; the names stored alongside the indices there
    are for reviewers (the tests check them against ``imagenet_classes.txt``) and are ignored here.
    """
    raw = json.loads(MAPPING_FILE.read_text(encoding="utf-8"))
    mapping = {int(category): tuple(int(index) for index, _name in entry["imagenet"])
               for category, entry in raw.items()}
    unknown = set(mapping) - (set(CATEGORIES) - {OTHER})
    if unknown:
        raise ValueError(f"{MAPPING_FILE.name} names categories outside the table: {sorted(unknown)}")
    return mapping


@lru_cache(maxsize=1)
def _class_to_column() -> tuple[np.ndarray, tuple[int, ...]]:
    # The column of each ImageNet class in a (categories..., Other) vector, for a single bincount.
    mapping = load_mapping()
    order = tuple(sorted(mapping)) + (OTHER,)
    columns = np.full(NUM_IMAGENET_CLASSES, len(order) - 1, dtype=np.intp)
    for column, category in enumerate(order[:-1]):
        columns[list(mapping[category])] = column
    return columns, order


def category_scores_from_logits(logits: np.ndarray) -> dict[int, float]:
    """Softmax probability mass of each category over ImageNet's 1000 classes; unmapped classes go to Other.

    Every category of the table gets an entry and the values sum to 1. Mass, not the top class: a
    picture split between 'running shoe' and 'Loafer' is confidently Shoes even if neither class is.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if logits.shape != (NUM_IMAGENET_CLASSES,):
        raise ValueError(f"expected {NUM_IMAGENET_CLASSES} ImageNet logits, got shape {logits.shape}")
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    columns, order = _class_to_column()
    mass = np.bincount(columns, weights=probabilities, minlength=len(order))
    return {category: float(m) for category, m in zip(order, mass)}


def neighbour_weight(score: float) -> float:
    """A labelled neighbour's say: 0 at or below ``SIMILARITY_FLOOR``, rising to 1 for an identical picture.

    Squared so that a close neighbour (0.9 -> 0.64) outweighs several distant ones (0.6 -> 0.04): with few
    labelled pictures the k nearest include far ones, and counting them equally is what makes a plain
    majority vote poor there (Fashion-MNIST, 10 labelled: plain k=10 vote 0.56, weighted 0.8).
    """
    if score <= SIMILARITY_FLOOR:
        return 0.0
    return min(1.0, (score - SIMILARITY_FLOOR) / (1.0 - SIMILARITY_FLOOR)) ** SIMILARITY_POWER


def neighbour_vote(neighbours: list[tuple[int, float]]) -> dict[int, float]:
    """Similarity-weighted vote of the nearest labelled pictures: category -> summed ``neighbour_weight``.

    ``neighbours`` are (category, score) pairs, score the clipped cosine similarity 0-1 as the search returns
    it. The sums are deliberately NOT normalised: their total is the evidence the neighbours carry (how many,
    how similar), which is what ``fuse`` weighs against the logits. Categories whose neighbours all fall
    below the floor are absent.
    """
    votes: dict[int, float] = {}
    for category, score in neighbours:
        weight = neighbour_weight(float(score))
        if weight > 0.0:
            votes[int(category)] = votes.get(int(category), 0.0) + weight
    return votes


def fuse(logit_scores: dict[int, float], vote_scores: dict[int, float], n_labelled_neighbours: int) -> int:
    """The predicted category: argmax of ``votes + LOGITS_WEIGHT * logits'``.

    ``logits'`` is ``logit_scores`` with Other's mass scaled by ``OTHER_WEIGHT`` and renormalised. This is a
    pseudo-count (Dirichlet-prior) rule: the logits act like ``LOGITS_WEIGHT`` identical neighbours, so the
    trust in the vote grows with the number and similarity of labelled neighbours (both carried by the
    unnormalised vote) and the logits decide alone when there are none (``n_labelled_neighbours == 0``) or
    none is similar. Ties go to the lower category id, Other last.
    """
    adjusted = {c: (OTHER_WEIGHT * m if c == OTHER else m) for c, m in logit_scores.items()}
    total = sum(adjusted.values())
    combined = {c: LOGITS_WEIGHT * m / total for c, m in adjusted.items()} if total > 0 else {}
    if n_labelled_neighbours > 0:
        for category, evidence in vote_scores.items():
            combined[category] = combined.get(category, 0.0) + evidence
    if not combined:
        return OTHER
    return max(sorted(combined), key=lambda c: combined[c])


def predict_category(logits: np.ndarray | None, neighbours: list[tuple[int, float]]) -> int:
    """For the service: the new picture's ImageNet logits (None when its encoder has none, e.g. a user's
    model) and its labelled nearest (category, score) pairs."""
    logit_scores = {} if logits is None else category_scores_from_logits(logits)
    return fuse(logit_scores, neighbour_vote(neighbours), len(neighbours))
