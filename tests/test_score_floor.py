"""The score's floor (README: "Score = max(0, 1 - cosine distance), i.e. the cosine similarity floored at 0,
in 0..1 (imagesearch.cosine_score() in SQL)"): a query pointing away from stored pictures scores them 0,
never below, through the service and through SQL; between the floor and 1 the score is the cosine."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg import categories
from imagesearch_pg.store import bulk_load
from imagesearch_pg.store.tables import instances

DIM = 1280  # the generic service type's default encoder


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{v:.9g}" for v in vector) + "]"


@pytest.fixture
def pointed(make_instance, engine):
    """An instance of: ``v`` (non-negative, as the default encoder's features are), five more non-negative
    pictures, and ``u``, whose cosine with -v is 0.6. Yields (name, v)."""
    name = make_instance("generic").name
    rng = np.random.default_rng(104)
    v = unit(np.abs(rng.standard_normal(DIM)))
    w = rng.standard_normal(DIM)
    w = unit(w - (w @ v) * v)  # orthogonal to v
    u = unit(-0.6 * v + 0.8 * w)
    rows = [("v", "1", categories.OTHER, v), ("u", "1", categories.OTHER, u)]
    rows += [(f"n{i}", "1", categories.OTHER, unit(np.abs(rng.standard_normal(DIM)))) for i in range(5)]
    with engine.begin() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
        bulk_load.bulk_load(conn, instance_id, iter(rows))
    return name, v


def test_a_picture_opposite_the_query_scores_0_through_the_service(service, pointed):
    name, v = pointed
    scores = {m.product_id: m.score for m in service.search_by_vector(name, -v, num=10).matches}
    assert len(scores) == 7
    assert scores["v"] == 0.0  # cosine -1: 1 - distance would be -1
    assert scores["u"] == pytest.approx(0.6, abs=2e-3)  # cosine 0.6 (stored as float16)
    assert all(scores[f"n{i}"] == 0.0 for i in range(5))  # cosines <= 0 with a non-negative picture
    assert min(scores.values()) == 0.0 and max(scores.values()) <= 1.0


def test_a_picture_opposite_the_query_scores_0_through_sql(engine, pointed):
    name, v = pointed
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT product_id, score FROM imagesearch.search_by_vector(:i, CAST(:q AS vector))"),
                            {"i": name, "q": literal(-v)}).all()
        scores = dict(rows)
        assert len(scores) == 7 and scores["v"] == 0.0 and all(scores[f"n{i}"] == 0.0 for i in range(5))
        assert scores["u"] == pytest.approx(0.6, abs=2e-3)
        opposite = conn.execute(sa.text(
            "SELECT CAST(:v AS vector) <=> CAST(:n AS vector), imagesearch.cosine_score(CAST(:v AS vector) <=> CAST(:n AS vector))"),
            {"v": literal(v), "n": literal(-v)}).one()
        assert opposite[0] == pytest.approx(2.0) and opposite[1] == 0.0
        edges = conn.execute(sa.text(
            "SELECT imagesearch.cosine_score(2.0), imagesearch.cosine_score(1.5), imagesearch.cosine_score(1.0),"
            " imagesearch.cosine_score(0.25), imagesearch.cosine_score(0.0), imagesearch.cosine_score(-1e-7)")).one()
        assert tuple(edges) == (0.0, 0.0, 0.0, 0.75, 1.0, 1.0)
