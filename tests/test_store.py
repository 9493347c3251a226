"""Store-level behaviour on many vectors: bulk loading, HNSW recall, long result windows."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.store import bulk_load
from imagesearch_pg.store import picture_search
from imagesearch_pg.store.filters import parse_filter
from imagesearch_pg.store.tables import instances, partition

DIM = 1280


def clustered_unit_vectors(seed: int, count: int = 3000, clusters: int = 30) -> np.ndarray:
    """Non-negative vectors around random centres, L2-normalised (like the default encoder's)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    picks = centres[rng.integers(0, clusters, count)]
    vectors = np.maximum(picks + rng.standard_normal((count, DIM)).astype(np.float32), 0)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def loaded(service):
    """An instance bulk-loaded with 3,000 clustered unit vectors."""
    name = f"store-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    vectors = clustered_unit_vectors(seed=7)
    with service.database.engine.begin() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
        count = bulk_load.bulk_load(conn, instance_id, ((f"p{i}", "n", 0, v) for i, v in enumerate(vectors)))
    assert count == 3000
    yield name, instance_id, vectors
    service.delete_instance(name)


def test_bulk_load_rebuilds_the_index(engine, loaded):
    _, instance_id, _ = loaded
    with engine.connect() as conn:
        index = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexname LIKE '%hnsw'"),
            {"t": f"pictures_{instance_id}"},
        ).scalar_one()
        assert "hnsw" in index and "halfvec(1280)" in index
        assert conn.execute(sa.text(f"SELECT count(*) FROM imagesearch.pictures_{instance_id}")).scalar() == 3000


def test_search_expression_matches_the_partition_index(engine, loaded):
    # Whether the planner prefers the index at 3,000 rows is its call (an exact scan is cheap there);
    # with sequential scans priced out, the search's ORDER BY expression must be answerable by the index.
    _, instance_id, _ = loaded
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        query = picture_search.vector(partition(instance_id), np.ones(DIM, np.float32), DIM)
        statement = picture_search.walk_statement(partition(instance_id), DIM, query, 10, [])
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        plan = conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars().all()
    assert any("embedding_hnsw" in line for line in plan), plan


@pytest.mark.parametrize("limit", [10, 100, 500])
def test_hnsw_window_is_complete_ordered_and_accurate(engine, loaded, limit):
    _, instance_id, vectors = loaded
    query = vectors[5]
    with engine.connect() as conn:
        rows = picture_search.nearest(conn, instance_id, DIM, query, limit)
    assert len(rows) == limit  # never short, even past ef_search
    scores = [r.score for r in rows]
    assert scores == sorted(scores, reverse=True)
    exact = set(np.argsort(-(vectors @ query))[:limit])
    found = {int(r.product_id[1:]) for r in rows}
    assert len(found & exact) / limit >= 0.95
    assert rows[0].product_id == "p5" and rows[0].score > 0.9999


@pytest.fixture(scope="module")
def attributed(service):
    """3,000 clustered vectors with int_attr = i % 1000 and str_attr = 'even'/'odd', bulk-loaded (ANALYZEd)."""
    name = f"attrs-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic")
    vectors = clustered_unit_vectors(seed=11)
    columns = bulk_load.BULK_COLUMNS + ("int_attr", "str_attr")
    rows = ((f"p{i}", "n", 0, v, i % 1000, "even" if i % 2 == 0 else "odd") for i, v in enumerate(vectors))
    with service.database.engine.begin() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
        bulk_load.bulk_load(conn, instance_id, rows, columns=columns)
    yield instance_id, vectors
    service.delete_instance(name)


@pytest.mark.parametrize("plan_limit", [0, picture_search.EXACT_SCAN_MAX_ROWS, 10**9])
@pytest.mark.parametrize(
    "text, matches",
    [
        ("int_attr >= 0", lambda i: True),
        ('str_attr = "odd"', lambda i: i % 2 == 1),
        ("int_attr < 100", lambda i: i % 1000 < 100),
        ("int_attr = 7", lambda i: i % 1000 == 7),
        ('int_attr in (3, 4) AND str_attr = "even"', lambda i: i % 1000 in (3, 4) and i % 2 == 0),
        ("int_attr = 5000", lambda i: False),
    ],
)
def test_filtered_search_returns_the_exact_top_whatever_the_plan(engine, attributed, monkeypatch, plan_limit, text, matches):
    """Walk, exact scan, or walk falling back to the exact scan: always min(limit, matching) rows, the right ones.
    Where every match is scored exactly (all 3,000 rows are within the exact-scan limit), the rows are the
    brute-force answer: the matches' cosine similarities to the query, computed here from the float16 values
    the instance stores, best first."""
    instance_id, vectors = attributed
    monkeypatch.setattr(picture_search, "EXACT_SCAN_MAX_ROWS", plan_limit)
    exact_scan = plan_limit >= len(vectors)
    matching = np.array([i for i in range(len(vectors)) if matches(i)], int)
    stored = vectors.astype(np.float16).astype(np.float64)
    for seed, limit in ((0, 10), (1, 100)):
        query = vectors[seed * 17]
        with engine.connect() as conn:
            rows = picture_search.nearest(conn, instance_id, DIM, query, limit, parse_filter(text))
        assert len(rows) == min(limit, len(matching))
        if not len(matching):
            continue
        sent = query.astype(np.float16).astype(np.float64)
        similarity = stored[matching] @ sent / (np.linalg.norm(stored[matching], axis=1) * np.linalg.norm(sent))
        order = np.argsort(-similarity, kind="stable")[:limit]
        exact = set(matching[order])
        found = {int(r.product_id[1:]) for r in rows}
        assert found <= set(matching)
        scores = [r.score for r in rows]
        assert scores == sorted(scores, reverse=True)
        if exact_scan:
            # The same pictures and scores (to float32's precision; pictures whose scores tie that closely
            # may come in either order, and then either may be the last one in).
            np.testing.assert_allclose(scores, similarity[order], rtol=0, atol=1e-6)
            ties = {int(i) for i in matching[np.abs(similarity - similarity[order[-1]]) <= 1e-6]}
            assert found - ties == exact - ties, (sorted(found ^ exact), text, limit)
            by_id = dict(zip(matching.tolist(), similarity))
            np.testing.assert_allclose([r.score for r in rows], [by_id[int(r.product_id[1:])] for r in rows],
                                       rtol=0, atol=1e-6)
        else:
            assert len(found & exact) / len(rows) >= 0.9  # an HNSW walk is approximate by design


def test_planner_estimates_follow_the_filter(engine, attributed):
    instance_id, _ = attributed

    with engine.connect() as conn:
        def estimate(text):
            return picture_search.estimate(conn, instance_id, parse_filter(text), None).matching

        assert estimate("int_attr = 7") < 30
        assert 200 < estimate("int_attr < 100") < 500
        assert estimate("int_attr >= 0") > 2500


@pytest.mark.parametrize("filtered", [False, True])
def test_silhouette_fusion_ranks_by_the_least_distance_with_the_margin(service, engine, filtered):
    """A picture's distance is the least of its embedding's to the query and its silhouette's to each query
    silhouette plus the margin, whether the index walks merge (unfiltered) or every match is scored."""
    name = f"store-fused-{int(filtered)}"
    service.create_instance(name, "trademark")
    try:
        embeddings, silhouettes = clustered_unit_vectors(seed=11, count=600), clustered_unit_vectors(seed=12, count=600)
        with service.database.engine.begin() as conn:
            instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
            rows = (
                (f"p{i}", "n", 88888888, e, s, i % 2, f"keypoints of {i}".encode())
                for i, (e, s) in enumerate(zip(embeddings, silhouettes))
            )
            bulk_load.bulk_load(
                conn, instance_id, rows, columns=bulk_load.BULK_COLUMNS + ("silhouette", "int_attr", "keypoints")
            )
        query, views = embeddings[3], [silhouettes[40], silhouettes[41] * 0.7 + silhouettes[42] * 0.3]
        views = [v / np.linalg.norm(v) for v in views]
        margin = 0.05
        stored_silhouettes = silhouettes.astype(np.float16).astype(np.float32)  # kept as halfvec
        stored_silhouettes /= np.linalg.norm(stored_silhouettes, axis=1, keepdims=True)
        distance = np.minimum(1 - embeddings @ query, (1 - stored_silhouettes @ np.stack(views).T).min(axis=1) + margin)
        candidates = np.arange(600) if not filtered else np.arange(1, 600, 2)
        expected = candidates[np.argsort(distance[candidates])[:10]]
        with engine.connect() as conn:
            found = picture_search.nearest(
                conn, instance_id, DIM, query, 10, parse_filter("int_attr = 1") if filtered else None, None,
                views, silhouette_margin=margin, keypoints_for=4,
            )
        assert [int(r.product_id[1:]) for r in found][:3] == list(expected[:3])
        assert len({int(r.product_id[1:]) for r in found} & set(expected)) >= 9
        np.testing.assert_allclose([r.score for r in found][:3], 1 - distance[expected[:3]], atol=2e-3)
        # only the first rows carry their keypoints (a long window must not read them all)
        assert [r.keypoints for r in found[:4]] == [f"keypoints of {r.product_id[1:]}".encode() for r in found[:4]]
        assert all(r.keypoints is None for r in found[4:])
    finally:
        service.delete_instance(name)


def test_walk_breadth_grows_as_the_filter_share_falls():
    exact_max, default = picture_search.EXACT_SCAN_MAX_ROWS, picture_search.DEFAULT_BREADTH
    estimate = picture_search.Estimate
    assert picture_search.walk_breadth(None) == default  # no filter: the connection's default
    assert picture_search.walk_breadth(estimate(exact_max, 10**7)) is None  # few matches: scored exactly
    assert picture_search.walk_breadth(estimate(10**6, 10**6)) == default
    tenth = picture_search.walk_breadth(estimate(10**5, 10**6))
    assert tenth == max(default, picture_search.MATCHING_BREADTH * 10)
    assert picture_search.walk_breadth(estimate(94_999, 10**6)) is None  # under 9.5 %: scanned exactly
    walks = [picture_search.walk_breadth(estimate(m, 10**6)) for m in range(95_000, 10**6, 7919)]
    assert walks == sorted(walks, reverse=True) and walks[0] == math.ceil(picture_search.MATCHING_BREADTH / 0.095)


def test_a_broader_walk_leaves_the_connection_at_its_default(engine, attributed, monkeypatch):
    instance_id, vectors = attributed
    monkeypatch.setattr(picture_search, "EXACT_SCAN_MAX_ROWS", 0)
    with engine.connect() as conn:
        expected = picture_search.estimate(conn, instance_id, parse_filter("int_attr < 100"), None)
        assert picture_search.walk_breadth(expected) > picture_search.DEFAULT_BREADTH
        rows = picture_search.nearest(conn, instance_id, DIM, vectors[3], 10, parse_filter("int_attr < 100"))
        assert len(rows) == 10
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar_one() == str(picture_search.DEFAULT_BREADTH)


@pytest.fixture(scope="module")
def selective(service):
    """20,000 clustered vectors with int_attr = i % 10000 (``int_attr < K`` selects K/10000), bulk-loaded."""
    name = f"sel-{uuid.uuid4().hex[:12]}"
    service.create_instance(name, "generic", capacity=20_000)
    vectors = clustered_unit_vectors(seed=5, count=20_000, clusters=200)
    columns = bulk_load.BULK_COLUMNS + ("int_attr",)
    with service.database.engine.begin() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()
        bulk_load.bulk_load(conn, instance_id, ((f"p{i}", "n", 0, v, i % 10_000) for i, v in enumerate(vectors)),
                            columns=columns)
    yield name, instance_id, vectors
    service.delete_instance(name)


@pytest.mark.slow
@pytest.mark.parametrize("share", [1.0, 0.5, 0.1, 0.01, 0.001, 0.0001])
def test_filtered_recall_holds_at_every_share_with_held_out_queries(service, selective, monkeypatch, share):
    """Queries not in the index (stored vectors with noise), Num=10 through the service: recall@10 >= 0.95
    against a brute-force scan of the matching rows, and never fewer than min(10, matching) results. The
    exact-scan threshold is lowered so that the 10 % and 50 % shares of this small instance walk the index
    with the breadth their share asks for, as those of a large instance would."""
    name, _, vectors = selective
    monkeypatch.setattr(picture_search, "EXACT_SCAN_MAX_ROWS", 500)
    rng = np.random.default_rng(3)
    bound = round(share * 10_000)
    matching = np.nonzero(np.arange(len(vectors)) % 10_000 < bound)[0]
    candidates, recalls = vectors[matching], []
    for row in rng.choice(len(vectors), 40, replace=False):
        query = np.maximum(vectors[row] + 0.8 / np.sqrt(DIM) * rng.standard_normal(DIM, np.float32), 0)
        found = service.search_by_vector(name, query, num=10, filter=None if share == 1 else f"int_attr < {bound}")
        assert len(found.matches) == min(10, len(matching))
        exact = set(matching[np.argsort(-(candidates @ (query / np.linalg.norm(query))))[:10]])
        recalls.append(len({int(m.product_id[1:]) for m in found.matches} & exact) / min(10, len(matching)))
    assert np.mean(recalls) >= 0.95


def test_upsert_many_inserts_replaces_whole_and_keeps_when_a_picture_was_made(service, engine, make_instance):
    from imagesearch_pg.store import pictures as picture_store
    from imagesearch_pg.store.tables import key_digest

    instance = make_instance()
    with engine.connect() as conn:
        instance_id = conn.execute(sa.select(instances.c.id).where(instances.c.name == instance.name)).scalar_one()
    first, second = clustered_unit_vectors(seed=3, count=2)

    def row(product_id, vector, **columns):
        return {"product_id": product_id, "pic_name": "p.jpg", "category_id": 1, "category_given": False,
                "custom_content": None, "int_attr": None, "str_attr": None, "region": "0,10,0,10", "embedding": vector,
                "silhouette": None, "keypoints": None, "thumbnail": None, **columns}

    with engine.begin() as conn:
        made = picture_store.upsert_many(conn, instance_id, [row("a", first, int_attr=1, thumbnail=b"\xff\xd8"),
                                                             row("b", second, str_attr="x'); DROP TABLE x; --")])
    assert made == {key_digest("a", "p.jpg"), key_digest("b", "p.jpg")}
    part = partition(instance_id)
    with engine.connect() as conn:
        before = dict(conn.execute(sa.select(part.c.product_id, part.c.created_at)).all())
    with engine.begin() as conn:  # a later transaction: a replaced row's updated_at moves, its created_at stays
        made = picture_store.upsert_many(conn, instance_id, [row("a", second, category_id=2, int_attr=None),
                                                             row("c", first)])
    assert made == {key_digest("c", "p.jpg")}
    with engine.connect() as conn:
        stored = {r.product_id: r for r in conn.execute(sa.select(part))}
    assert set(stored) == {"a", "b", "c"}
    a = stored["a"]
    assert (a.category_id, a.int_attr, a.thumbnail) == (2, None, None)  # every column from the last write
    assert a.created_at == before["a"] and a.updated_at > a.created_at
    assert np.allclose(np.asarray(a.embedding, np.float32), second, atol=1e-3)  # halfvec: 3 digits
    assert stored["b"].str_attr == "x'); DROP TABLE x; --"  # user text is a value, never SQL
