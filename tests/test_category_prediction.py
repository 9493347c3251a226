"""Category prediction: the curated ImageNet mapping (data), the logits / neighbour-vote / fusion rules on
hand-made inputs, and real photos (scikit-image samples) through the real default encoder.

No benchmark data is needed; the accuracy measurements live in benchmarks/categories.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from imagesearch_pg.categories import CATEGORIES, OTHER
from imagesearch_pg.vision import category_prediction as cp
from imagesearch_pg.service_types import SERVICE_TYPES

DATA = Path(cp.__file__).resolve().parent / "data"
CLASS_NAMES = (DATA / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
TOPS, DRESS, BOTTOMS, BAG, SHOES, SNACK, BOTTLE, FURNITURE = 0, 1, 2, 3, 4, 6, 8, 9


def logits_on(*classes: int, high: float = 12.0) -> np.ndarray:
    """ImageNet logits with (nearly) all the softmax mass spread evenly over ``classes``."""
    logits = np.zeros(1000, np.float32)
    logits[list(classes)] = high
    return logits


# ---------------------------------------------------------------- the mapping file

def test_mapping_file_covers_the_13_real_categories_with_their_names():
    raw = json.loads(cp.MAPPING_FILE.read_text(encoding="utf-8"))
    assert sorted(int(c) for c in raw) == sorted(set(CATEGORIES) - {OTHER})
    for category, entry in raw.items():
        assert entry["name"] == CATEGORIES[int(category)]
        assert entry["imagenet"], f"category {category} maps no ImageNet class"


def test_mapping_indices_are_valid_unique_and_named_as_in_imagenet_classes():
    assert len(CLASS_NAMES) == 1000
    raw = json.loads(cp.MAPPING_FILE.read_text(encoding="utf-8"))
    owner: dict[int, str] = {}
    for category, entry in raw.items():
        for index, name in entry["imagenet"]:
            assert isinstance(index, int) and 0 <= index < 1000
            assert name == CLASS_NAMES[index], f"class {index} is {CLASS_NAMES[index]!r}, not {name!r}"
            assert index not in owner, f"class {index} ({name}) is in categories {owner[index]} and {category}"
            owner[index] = category


def test_mapping_spot_checks():
    mapping = cp.load_mapping()
    by_name = {name: i for i, name in enumerate(CLASS_NAMES)}
    expected = {
        "jersey": TOPS, "gown": DRESS, "miniskirt": DRESS, "jean": BOTTOMS, "purse": BAG, "backpack": BAG,
        "running shoe": SHOES, "sandal": SHOES, "sunglasses": 5, "necklace": 5, "pretzel": SNACK, "lipstick": 7,
        "perfume": 7, "wine bottle": BOTTLE, "water bottle": BOTTLE, "studio couch": FURNITURE,
        "rocking chair": FURNITURE, "wardrobe": FURNITURE, "teddy": 20, "brassiere": 21, "laptop": 22,
        "cellular telephone": 22, "mouse": 22,
    }
    for name, category in expected.items():
        assert by_name[name] in mapping[category], name
    mapped = {i for indices in mapping.values() for i in indices}
    for name in ("tabby", "golden retriever", "airliner", "tripod", "missile"):  # not products: Other
        assert by_name[name] not in mapped, name


def test_load_mapping_is_cached():
    assert cp.load_mapping() is cp.load_mapping()


# ---------------------------------------------------------------- logits -> category scores

def test_scores_from_logits_are_a_distribution_over_all_14_categories():
    scores = cp.category_scores_from_logits(np.random.default_rng(0).normal(size=1000))
    assert set(scores) == set(CATEGORIES)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in scores.values())


def test_scores_sum_the_mass_of_every_class_of_a_category():
    # Split between two shoe classes, neither dominant alone: the category is still confidently Shoes.
    scores = cp.category_scores_from_logits(logits_on(770, 630))  # running shoe, Loafer
    assert scores[SHOES] > 0.99
    assert cp.category_scores_from_logits(logits_on(281))[OTHER] > 0.99  # tabby: unmapped -> Other


def test_scores_from_logits_refuse_a_wrong_shape():
    with pytest.raises(ValueError):
        cp.category_scores_from_logits(np.zeros(1001))


# ---------------------------------------------------------------- the neighbour vote

def test_neighbour_weight_is_zero_up_to_the_floor_and_one_for_an_identical_picture():
    assert cp.neighbour_weight(0.0) == 0.0
    assert cp.neighbour_weight(cp.SIMILARITY_FLOOR) == 0.0
    assert cp.neighbour_weight(1.0) == pytest.approx(1.0)
    weights = [cp.neighbour_weight(s) for s in np.linspace(cp.SIMILARITY_FLOOR, 1.0, 11)]
    assert weights == sorted(weights)


def test_neighbour_vote_sums_weights_per_category_and_drops_distant_neighbours():
    assert cp.neighbour_vote([]) == {}
    votes = cp.neighbour_vote([(TOPS, 0.9), (TOPS, 0.8), (SHOES, 0.7), (BAG, 0.3)])
    assert set(votes) == {TOPS, SHOES}
    assert votes[TOPS] == pytest.approx(cp.neighbour_weight(0.9) + cp.neighbour_weight(0.8))
    assert votes[TOPS] > votes[SHOES]


def test_one_close_neighbour_outweighs_several_distant_ones():
    votes = cp.neighbour_vote([(DRESS, 0.95)] + [(TOPS, 0.6)] * 5)
    assert votes[DRESS] > votes[TOPS]


# ---------------------------------------------------------------- fusion

def fused(logits: np.ndarray, neighbours: list[tuple[int, float]]) -> int:
    return cp.fuse(cp.category_scores_from_logits(logits), cp.neighbour_vote(neighbours), len(neighbours))


def test_without_neighbours_the_logits_decide():
    assert fused(logits_on(748), []) == BAG  # purse
    assert fused(logits_on(281, 282, 285), []) == OTHER  # cats


def test_other_must_win_by_a_wide_margin_on_logits_alone():
    # 85% of the mass on unmapped classes, 15% on a shoe: a product instance's picture is the shoe ...
    logits = np.full(1000, -30.0)
    logits[281] = 0.0
    logits[770] = np.log(0.15 / 0.85)
    assert fused(logits, []) == SHOES
    # ... but 99% on a cat is a cat.
    logits[770] = np.log(0.01 / 0.99)
    assert fused(logits, []) == OTHER


def test_unanimous_close_neighbours_beat_confident_logits():
    assert fused(logits_on(748), [(SHOES, 0.92)] * 10) == SHOES


def test_a_single_close_neighbour_beats_the_logits_but_weak_ones_do_not():
    assert fused(logits_on(748), [(SHOES, 0.9)]) == SHOES
    assert fused(logits_on(748), [(SHOES, 0.6), (SHOES, 0.6)]) == BAG


def test_neighbours_below_the_floor_leave_the_decision_to_the_logits():
    # A sofa arriving in an instance labelled only with clothes: its nearest labelled pictures are far.
    neighbours = [(TOPS, 0.45)] * 10
    assert fused(logits_on(831), neighbours) == FURNITURE  # studio couch


def test_n_labelled_neighbours_zero_ignores_any_vote():
    scores = cp.category_scores_from_logits(logits_on(748))
    assert cp.fuse(scores, {SHOES: 5.0}, 0) == BAG
    assert cp.fuse(scores, {SHOES: 5.0}, 5) == SHOES


def test_ties_are_deterministic():
    uniform = {c: 1 / len(CATEGORIES) for c in CATEGORIES}
    assert cp.fuse(uniform, {TOPS: 0.5, SHOES: 0.5}, 2) == TOPS
    assert cp.fuse({}, {}, 0) == OTHER


# ---------------------------------------------------------------- real photos through the real encoder

@pytest.fixture(scope="module")
def encoder(encoders):
    return encoders.get(SERVICE_TYPES["generic"].default_encoder)


def encode(encoder, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    out = encoder.run(images, outputs=("features", "logits"))
    features = out["features"] / np.linalg.norm(out["features"], axis=1, keepdims=True)
    return features, out["logits"]


def test_real_photos_by_logits_alone(encoder):
    photos = {
        "coffee": skimage.data.coffee(),  # a cup of espresso: drinks are 瓶饮 -> Bottle
        "chelsea": skimage.data.chelsea(),  # a cat -> Other
        "astronaut": skimage.data.astronaut(),  # a person in a space suit -> Other
        "rocket": skimage.data.rocket(),  # -> Other
    }
    _, logits = encode(encoder, list(photos.values()))
    predicted = {name: cp.fuse(cp.category_scores_from_logits(row), {}, 0) for name, row in zip(photos, logits)}
    assert predicted == {"coffee": BOTTLE, "chelsea": OTHER, "astronaut": OTHER, "rocket": OTHER}


def test_the_instances_own_labels_override_the_mapping(encoder):
    # The instance files its coffee photo under Snack; a mirrored, slightly cropped copy follows the label,
    # while the cat (far from every labelled picture) stays Other.
    coffee, cat, rocket = skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()
    gallery, _ = encode(encoder, [coffee, rocket])
    gallery_labels = [SNACK, OTHER]
    queries, logits = encode(encoder, [np.ascontiguousarray(coffee[20:-20, ::-1]), cat])

    def predict(row: int) -> int:
        scores = np.clip(gallery @ queries[row], 0, 1)
        neighbours = sorted(zip(gallery_labels, scores.tolist()), key=lambda p: -p[1])[: cp.NEIGHBOURS]
        return cp.predict_category(logits[row], neighbours)

    assert predict(0) == SNACK
    assert predict(1) == OTHER
