"""Index backends: exact equals brute force, exclusion is exact, ANN recall is high on clustered data."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.errors import LiverecError
from liverec.index import build_index, recall_per_query, recall_vs_exact

faiss = pytest.importorskip("faiss")


def clustered(num_items=3000, dim=16, clusters=30, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    items = centers[rng.integers(0, clusters, num_items)] + 0.3 * rng.normal(size=(num_items, dim))
    queries = centers[rng.integers(0, clusters, 200)] + 0.3 * rng.normal(size=(200, dim))
    return items.astype(np.float32), queries.astype(np.float32), rng


def brute_force(items, queries, k, exclude):
    scores = queries @ items.T
    for row, ex in enumerate(exclude):
        scores[row, ex] = -np.inf
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=1)


def random_exclusions(rng, num_queries, num_items, most=50):
    return [rng.choice(num_items, size=rng.integers(0, most), replace=False) for _ in range(num_queries)]


def test_exact_matches_brute_force_with_exclusions():
    items, queries, rng = clustered()
    exclude = random_exclusions(rng, len(queries), len(items))
    ids, scores = build_index("exact", items, batch_size=64).search(queries, 10, exclude)
    ref_ids, ref_scores = brute_force(items, queries, 10, exclude)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    # ties aside, the same items; and never an excluded one
    assert recall_vs_exact(ids, ref_ids) > 0.999
    for row, ex in enumerate(exclude):
        assert not set(ids[row]).intersection(ex.tolist())


def test_fewer_items_than_k_pads_with_minus_one():
    items = np.eye(3, dtype=np.float32)
    for kind in ("exact", "hnsw"):
        ids, scores = build_index(kind, items).search(items[:1], 5, [np.array([1])])
        assert sorted(ids[0, :2].tolist()) == [0, 2]
        assert (ids[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


@pytest.mark.parametrize("kind,options", [("hnsw", {}), ("ivf", {"nprobe": 8})])
def test_ann_recall_and_exclusion(kind, options):
    items, queries, rng = clustered()
    exclude = random_exclusions(rng, len(queries), len(items))
    exact_ids, _ = build_index("exact", items).search(queries, 10, exclude)
    ids, scores = build_index(kind, items, **options).search(queries, 10, exclude)
    assert recall_vs_exact(ids, exact_ids) >= 0.9
    assert (ids >= 0).all() and (np.diff(scores, axis=1) <= 1e-6).all()  # full rows, best first
    for row, ex in enumerate(exclude):
        assert not set(ids[row]).intersection(ex.tolist())


def test_heavy_exclusion_still_fills_k():
    # exclude the 200 items nearest to each query: over-fetch must reach beyond them
    items, queries, _ = clustered(num_items=1000)
    exclude = list(brute_force(items, queries, 200, [np.zeros(0, int)] * len(queries))[0])
    ids, _ = build_index("hnsw", items, ef_search=32).search(queries, 10, exclude)
    assert (ids >= 0).all()
    for row, ex in enumerate(exclude):
        assert not set(ids[row]).intersection(ex.tolist())


def test_bad_inputs_raise():
    items = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(LiverecError, match="unknown index kind"):
        build_index("lsh", items)
    with pytest.raises(LiverecError, match="2-D"):
        build_index("exact", np.ones(5))
    with pytest.raises(LiverecError, match="NaN"):
        build_index("exact", np.full((2, 2), np.nan))
    index = build_index("exact", items)
    with pytest.raises(LiverecError, match="k must be"):
        index.search(items, 0)
    with pytest.raises(LiverecError, match="dimension"):
        index.search(np.ones((1, 3)), 2)
    with pytest.raises(LiverecError, match="exclude has"):
        index.search(items, 2, [np.array([0])])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tune_reaches_the_target_recall_with_the_least_effort(kind):
    from liverec.index.faiss_index import HNSW_EF_SEARCH, IVF_NPROBE

    items, queries, _ = clustered(num_items=5000, dim=32, clusters=60)
    index = build_index(kind, items, hnsw_m=8, ef_construction=40) if kind == "hnsw" else \
        build_index(kind, items)
    recall = index.tune(items, queries, k=10, target_recall=0.97)
    truth, _ = build_index("exact", items).search(queries, 10)
    # the recall it reports is the one its setting gives
    assert recall == pytest.approx(recall_vs_exact(index.search(queries, 10)[0], truth))
    (name, value), = index.search_params.items()
    values = HNSW_EF_SEARCH if kind == "hnsw" else IVF_NPROBE
    assert value in values
    def lower_bound(found):  # recall minus two standard errors of the per-query recall
        hits, total = recall_per_query(found, truth)
        per_query = hits / total
        return hits.sum() / total.sum() - 2 * per_query.std() / np.sqrt(len(per_query))

    if value != values[-1]:
        assert lower_bound(index.search(queries, 10)[0]) >= 0.97
    if value != values[0]:  # one step less would have missed the target (with its margin)
        smaller = values[values.index(value) - 1]
        less = build_index(kind, items, hnsw_m=8, ef_construction=40) if kind == "hnsw" else \
            build_index(kind, items)
        if kind == "hnsw":
            less.index.hnsw.efSearch = smaller
        else:
            less.index.nprobe = smaller
        assert lower_bound(less.search(queries, 10)[0]) < 0.97


def test_tune_rejects_a_target_outside_0_1():
    items, queries, _ = clustered(num_items=500)
    with pytest.raises(LiverecError, match="target recall"):
        build_index("hnsw", items).tune(items, queries, target_recall=1.5)
