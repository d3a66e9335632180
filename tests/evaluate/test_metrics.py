"""Ranking metrics against hand-computed values (see docs/metrics.md for the formulas)."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
import torch

from liverec.errors import LiverecError
from liverec.evaluate.metrics import (
    METRICS,
    hit_rate_at_k,
    item_coverage,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# user 0: 2 relevant, hits at ranks 1 and 3
# user 1: 3 relevant, no hit
# user 2: 5 relevant (more than k = 4), hits at ranks 2, 3, 4
# user 3: nothing relevant
HITS = np.array(
    [
        [1, 0, 1, 0],
        [0, 0, 0, 0],
        [0, 1, 1, 1],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)
N_REL = np.array([2, 3, 5, 0])

D = [1 / log2(r + 1) for r in range(1, 5)]  # discounts of ranks 1..4

EXPECTED_AT_4 = {
    "Recall": [1.0, 0.0, 3 / 5, 0.0],
    "Precision": [2 / 4, 0.0, 3 / 4, 0.0],
    "HR": [1.0, 0.0, 1.0, 0.0],
    "NDCG": [(D[0] + D[2]) / (D[0] + D[1]), 0.0, (D[1] + D[2] + D[3]) / sum(D), 0.0],
    "MRR": [1.0, 0.0, 1 / 2, 0.0],
    # precision@r summed over hit ranks, over min(k, n_relevant)
    "MAP": [(1 + 2 / 3) / 2, 0.0, (1 / 2 + 2 / 3 + 3 / 4) / 4, 0.0],
}

EXPECTED_AT_2 = {
    "Recall": [1 / 2, 0.0, 1 / 5, 0.0],
    "Precision": [1 / 2, 0.0, 1 / 2, 0.0],
    "HR": [1.0, 0.0, 1.0, 0.0],
    "NDCG": [D[0] / (D[0] + D[1]), 0.0, D[1] / (D[0] + D[1]), 0.0],
    "MRR": [1.0, 0.0, 1 / 2, 0.0],
    "MAP": [1 / 2, 0.0, (1 / 2) / 2, 0.0],
}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_at_full_width(name):
    got = METRICS[name](HITS, N_REL)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, EXPECTED_AT_4[name], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_at_smaller_k_uses_first_columns(name):
    np.testing.assert_allclose(METRICS[name](HITS, N_REL, k=2), EXPECTED_AT_2[name], rtol=1e-12)
    np.testing.assert_allclose(METRICS[name](HITS[:, :2], N_REL), EXPECTED_AT_2[name], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_torch_input_gives_torch_output(name):
    got = METRICS[name](torch.from_numpy(HITS), torch.from_numpy(N_REL))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), EXPECTED_AT_4[name], rtol=1e-12)


def test_named_functions_are_the_table_entries():
    assert METRICS == {
        "Recall": recall_at_k, "NDCG": ndcg_at_k, "HR": hit_rate_at_k,
        "MRR": mrr_at_k, "Precision": precision_at_k, "MAP": map_at_k,
    }


def test_perfect_ranking_scores_one():
    hits = np.array([[1, 1, 0]], dtype=bool)  # both relevant items on top
    n = np.array([2])
    for fn in (recall_at_k, ndcg_at_k, hit_rate_at_k, mrr_at_k, map_at_k):
        assert fn(hits, n)[0] == pytest.approx(1.0)
    assert precision_at_k(hits, n)[0] == pytest.approx(2 / 3)


def test_ndcg_ideal_capped_at_k():
    # 10 relevant items, the top 3 all relevant: IDCG uses min(k, n) = 3 positions -> NDCG 1
    assert ndcg_at_k(np.ones((1, 3), bool), np.array([10]))[0] == pytest.approx(1.0)


def test_empty_batch():
    for fn in METRICS.values():
        assert fn(np.zeros((0, 5), bool), np.zeros(0)).shape == (0,)


def test_bad_k_raises():
    with pytest.raises(LiverecError):
        recall_at_k(HITS, N_REL, k=5)
    with pytest.raises(LiverecError):
        ndcg_at_k(HITS, N_REL, k=0)


def test_item_coverage():
    topk = np.array([[0, 1], [1, 2], [2, 0]])
    assert item_coverage(topk, 10) == pytest.approx(0.3)
    assert item_coverage(torch.tensor([[4, 4]]), 8) == pytest.approx(1 / 8)
