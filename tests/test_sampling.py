"""Negative samplers: properties (hypothesis) and the semantics of each sampler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liverec.errors import LiverecError
from liverec.sampling import (
    HardNegativeSampler,
    InBatchSampler,
    PopularitySampler,
    UniformSampler,
)


def csr_from_pairs(pairs: list[tuple[int, int]], num_users: int, num_items: int) -> sp.csr_matrix:
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(pairs)), (u, i)), shape=(num_users, num_items))


@st.composite
def positives_and_users(draw):
    """A random positives matrix where every user keeps at least one negative, and a user batch."""
    num_users = draw(st.integers(1, 8))
    num_items = draw(st.integers(2, 30))
    rows = []
    for u in range(num_users):
        # anything from empty to "all but one item" (which exercises the exact fallback)
        owned = draw(st.sets(st.integers(0, num_items - 1), max_size=num_items - 1))
        rows.extend((u, i) for i in owned)
    users = draw(st.lists(st.integers(0, num_users - 1), min_size=1, max_size=20))
    return csr_from_pairs(rows, num_users, num_items), np.array(users, dtype=np.int64)


def make(kind: str, pos: sp.csr_matrix):
    if kind == "uniform":
        return UniformSampler(pos)
    if kind == "popularity":  # default counts (users per item; many zero) unless all are zero
        return PopularitySampler(pos, alpha=0.75, counts=None if pos.nnz else np.ones(pos.shape[1]))
    if kind == "in_batch":
        return InBatchSampler(pos)
    return HardNegativeSampler(pos, pool_size=6, score_fn=lambda u, c: c.astype(float))


KINDS = ["uniform", "popularity", "in_batch", "hard"]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(data=positives_and_users(), n=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_never_a_positive_right_shape_and_deterministic(kind, data, n, seed):
    pos, users = data
    sampler = make(kind, pos)
    batch_pos = np.random.default_rng(seed).integers(0, pos.shape[1], users.size)
    neg = sampler.sample(users, n, np.random.default_rng(seed), pos_items=batch_pos)
    assert neg.shape == (users.size, n) and neg.dtype == np.int64
    assert np.all((neg >= 0) & (neg < pos.shape[1]))
    dense = pos.toarray() > 0
    assert not dense[users[:, None], neg].any()
    again = sampler.sample(users, n, np.random.default_rng(seed), pos_items=batch_pos)
    np.testing.assert_array_equal(neg, again)


@pytest.mark.parametrize("kind", KINDS)
def test_user_with_every_item_raises(kind):
    pos = csr_from_pairs([(0, 0), (0, 1), (0, 2), (1, 0)], 2, 3)
    sampler = make(kind, pos)
    with pytest.raises(LiverecError, match="user 0"):
        sampler.sample(np.array([1, 0]), 2, np.random.default_rng(0), pos_items=np.array([0, 1]))


def test_only_negative_left_is_found():
    # user 0 owns 999 of 1000 items: rejection alone would almost never succeed
    pos = csr_from_pairs([(0, i) for i in range(1000) if i != 637], 1, 1000)
    for sampler in (UniformSampler(pos), PopularitySampler(pos, counts=np.ones(1000))):
        neg = sampler.sample(np.zeros(50, dtype=np.int64), 4, np.random.default_rng(1))
        assert np.all(neg == 637)


def test_uniform_is_uniform_over_negatives():
    pos = csr_from_pairs([(0, 0), (0, 1)], 1, 6)
    neg = UniformSampler(pos).sample(np.zeros(20_000, dtype=np.int64), 1, np.random.default_rng(0))
    freq = np.bincount(neg[:, 0], minlength=6) / neg.size
    np.testing.assert_allclose(freq, [0, 0, 0.25, 0.25, 0.25, 0.25], atol=0.02)


def test_popularity_frequencies_follow_count_power_alpha():
    counts = np.array([1.0, 16.0, 81.0, 256.0, 0.0])
    pos = sp.csr_matrix((2, 5))  # no positives: pure popularity
    sampler = PopularitySampler(pos, alpha=0.5, counts=counts)
    neg = sampler.sample(np.zeros(40_000, dtype=np.int64), 5, np.random.default_rng(0))
    freq = np.bincount(neg.ravel(), minlength=5) / neg.size
    expected = np.array([1, 4, 9, 16, 0]) / 30
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_popularity_default_counts_are_users_per_item():
    pos = csr_from_pairs([(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)], 5, 3)  # counts 4, 1, 0
    neg = PopularitySampler(pos, alpha=1.0).sample(np.full(20_000, 4), 1, np.random.default_rng(0))
    freq = np.bincount(neg.ravel(), minlength=3) / neg.size
    np.testing.assert_allclose(freq, [0.8, 0.2, 0.0], atol=0.02)


def test_popularity_excludes_positives_and_renormalises():
    pos = csr_from_pairs([(0, 3)], 1, 4)
    sampler = PopularitySampler(pos, alpha=1.0, counts=np.array([1.0, 1.0, 2.0, 100.0]))
    neg = sampler.sample(np.zeros(20_000, dtype=np.int64), 1, np.random.default_rng(0))
    freq = np.bincount(neg.ravel(), minlength=4) / neg.size
    np.testing.assert_allclose(freq, [0.25, 0.25, 0.5, 0.0], atol=0.02)


def test_in_batch_draws_from_batch_positives_except_own():
    # users 0..2 each own one item; the batch's positive items are 10, 11, 12
    pos = csr_from_pairs([(0, 10), (1, 11), (2, 12)], 3, 50)
    users = np.array([0, 1, 2])
    neg = InBatchSampler(pos).sample(users, 40, np.random.default_rng(0), pos_items=np.array([10, 11, 12]))
    for u, own in zip(users, [10, 11, 12], strict=True):
        assert set(neg[u]) == {10, 11, 12} - {own}


def test_in_batch_falls_back_to_uniform_when_batch_has_no_negative():
    pos = csr_from_pairs([(0, 1), (0, 2)], 1, 10)
    neg = InBatchSampler(pos).sample(np.array([0]), 200, np.random.default_rng(0), pos_items=np.array([1, 2]))
    assert not np.isin(neg, [1, 2]).any()
    assert len(np.unique(neg)) > 3  # genuinely spread over the catalogue, not one item


def test_in_batch_needs_pos_items():
    with pytest.raises(LiverecError, match="pos_items"):
        InBatchSampler(csr_from_pairs([(0, 1)], 1, 5)).sample(np.array([0]), 1, np.random.default_rng(0))


def test_hard_returns_top_scored_of_pool_in_order():
    pos = csr_from_pairs([(0, 19), (1, 0)], 2, 20)
    # 300 draws over 19 negatives miss one of the top three with probability < 1e-6
    sampler = HardNegativeSampler(pos, pool_size=300, score_fn=lambda u, c: torch.from_numpy(c * 1.0))
    neg = sampler.sample(np.array([0, 1]), 3, np.random.default_rng(0))
    np.testing.assert_array_equal(neg, [[18, 17, 16], [19, 18, 17]])


def test_hard_scores_users_with_their_candidates():
    seen = {}

    def score_fn(users, cand):
        seen["shapes"] = (users.shape, cand.shape)
        return -cand.astype(float)  # prefers small item ids

    pos = csr_from_pairs([(0, 0)], 3, 30)
    neg = HardNegativeSampler(pos, pool_size=80, score_fn=score_fn).sample(
        np.array([0, 2]), 2, np.random.default_rng(0)
    )
    assert seen["shapes"] == ((2,), (2, 80))
    np.testing.assert_array_equal(neg, [[1, 2], [0, 1]])


def test_hard_rejects_more_negatives_than_pool():
    sampler = HardNegativeSampler(csr_from_pairs([(0, 0)], 1, 9), pool_size=4, score_fn=lambda u, c: c)
    with pytest.raises(LiverecError, match="pool"):
        sampler.sample(np.array([0]), 5, np.random.default_rng(0))


def test_bad_inputs_raise():
    sampler = UniformSampler(csr_from_pairs([(0, 0)], 2, 5))
    with pytest.raises(LiverecError, match="Generator"):
        sampler.sample(np.array([0]), 1, 42)
    with pytest.raises(LiverecError, match="user indices"):
        sampler.sample(np.array([2]), 1, np.random.default_rng(0))
    with pytest.raises(LiverecError):
        PopularitySampler(sp.csr_matrix((1, 3)), counts=np.zeros(3))


def test_positives_matrix_is_not_modified():
    pos = sp.csr_matrix((np.ones(3), (np.array([0, 0, 0]), np.array([2, 1, 2]))), shape=(1, 4))
    before = (pos.indptr.copy(), pos.indices.copy(), pos.data.copy())
    UniformSampler(pos)
    for a, b in zip(before, (pos.indptr, pos.indices, pos.data), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sample_shared_is_seeded_and_in_range():
    pos = sp.random(20, 50, density=0.2, format="csr", random_state=0)
    for sampler in (UniformSampler(pos), PopularitySampler(pos)):
        a = sampler.sample_shared(30, np.random.default_rng(1))
        b = sampler.sample_shared(30, np.random.default_rng(1))
        assert a.shape == (30,) and a.dtype == np.int64
        assert np.array_equal(a, b) and a.min() >= 0 and a.max() < 50


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(1, 60))
def test_shared_collisions_equal_is_positive(seed, n):
    rng = np.random.default_rng(seed)
    pos = sp.random(15, 40, density=0.3, format="csr", random_state=seed)
    sampler = UniformSampler(pos)
    users = rng.integers(0, 15, size=12)  # repeats on purpose
    shared = sampler.sample_shared(n, rng)  # with replacement: repeats too
    expected = sampler.is_positive(users[:, None], shared[None, :])
    assert np.array_equal(sampler.shared_collisions(users, shared), expected)
