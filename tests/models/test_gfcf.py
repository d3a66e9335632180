"""GF-CF: the batched sparse computation equals the paper's dense formula."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.gfcf import GFCF, GFCFConfig


def dense_gfcf(r: np.ndarray, alpha: float, k: int) -> np.ndarray:
    du = np.where(r.sum(1) > 0, 1 / np.sqrt(np.maximum(r.sum(1), 1e-12)), 0.0)
    di = np.where(r.sum(0) > 0, 1 / np.sqrt(np.maximum(r.sum(0), 1e-12)), 0.0)
    norm = du[:, None] * r * di[None, :]
    linear = r @ norm.T @ norm  # (U, I) via the dense (I, I) filter
    _, _, vt = np.linalg.svd(norm)
    v = vt[:k].T  # (I, k)
    inv = np.where(di > 0, 1 / np.where(di > 0, di, 1), 0.0)
    ideal = (r * di) @ v @ v.T * inv
    return linear + alpha * ideal


@pytest.mark.parametrize("alpha,k", [(0.0, 0), (0.3, 3), (1.0, 5)])
def test_matches_dense_formula(alpha, k):
    rng = np.random.default_rng(0)
    r = (rng.random((12, 9)) < 0.35).astype(np.float32)
    r[5] = 0  # a user without history scores 0 everywhere
    r[:, 7] = 0  # an item nobody has: no division by zero
    model = GFCF(GFCFConfig(ideal_weight=alpha, num_factors=k, svd_iters=6), 12, 9)
    model.fit(sp.csr_matrix(r), torch.Generator().manual_seed(0))
    got = model.score_all(torch.arange(12)).double().numpy()
    expected = dense_gfcf(r.astype(np.float64), alpha, k)
    warm_users, warm_items = np.flatnonzero(r.sum(1)), np.flatnonzero(r.sum(0))
    assert 5 not in warm_users and 7 not in warm_items and len(warm_users) >= 8
    grid = np.ix_(warm_users, warm_items)
    np.testing.assert_allclose(got[grid], expected[grid], atol=1e-4)
    np.testing.assert_allclose(got[5, warm_items], r.sum(0)[warm_items])  # popularity


def test_unfitted_and_bad_shape_raise():
    model = GFCF(GFCFConfig(), 3, 4)
    with pytest.raises(LiverecError, match="not fitted"):
        model.score_all(torch.arange(3))
    with pytest.raises(LiverecError, match="training matrix"):
        model.fit(sp.csr_matrix(np.ones((2, 4))))
    with pytest.raises(LiverecError, match="ideal_weight"):
        GFCFConfig(ideal_weight=-1)
