"""Fold-in solvers: sparse CG reaches the exact solution; running sums stay equal to recomputed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.stream.foldin import Rows, RowSums, solve_rows
from liverec.stream.online import OnlineConfig, OnlineState
from liverec.stream.schema import make_batch


def random_rows(n: int, fixed_rows: int, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    m = sp.random(n, fixed_rows, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    m.data = 1.0 + 4.0 * m.data  # confidences in [1, 5]
    one_each = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), rng.integers(0, fixed_rows, n))), m.shape)
    m = (m + one_each).tocsr()  # every row has an interaction
    m.sort_indices()
    return Rows(crow=torch.from_numpy(m.indptr.astype(np.int64)), other=torch.from_numpy(m.indices.astype(np.int64)),
                confidence=torch.from_numpy(m.data), target=torch.from_numpy(rng.uniform(0.5, 1.0, m.nnz).astype(np.float32)))


def test_sparse_cg_converges_to_the_exact_solve():
    gen = torch.Generator().manual_seed(0)
    fixed = torch.randn(30, 6, generator=gen, dtype=torch.float64).float()
    rows = random_rows(9, 30, seed=1)
    start, const = torch.zeros(9, 6), torch.randn(1, 6, generator=gen)
    args = (fixed, fixed.double().T @ fixed.double(), rows)
    exact = solve_rows(*args, start, const, 0.1, 0.05, 0.5, cg_steps=0)
    cg = solve_rows(*args, start, const, 0.1, 0.05, 0.5, cg_steps=12)  # CG is exact after D steps
    assert torch.allclose(cg, exact, atol=1e-4)


def test_row_sums_follow_replacements():
    gen = torch.Generator().manual_seed(0)
    v, b = torch.randn(20, 4, generator=gen), torch.randn(20, generator=gen)
    sums = RowSums.of(v, b)
    idx = torch.tensor([3, 7, 11])
    new = torch.randn(3, 4, generator=gen)
    sums.replace(v[idx], new, b[idx])
    v[idx] = new
    sums.add(torch.ones(2, 4), torch.zeros(2))
    expected = RowSums.of(torch.cat([v, torch.ones(2, 4)]), torch.cat([b, torch.zeros(2)]))
    for got, want in ((sums.gram, expected.gram), (sums.total, expected.total), (sums.weighted, expected.weighted)):
        assert torch.allclose(got, want, atol=1e-9)


def test_online_state_keeps_sums_and_item_counts_current(registries, tmp_path: Path):
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    state = OnlineState.load(registry, OnlineConfig(item_fold_in_max=3))  # both rare and popular items
    rng = np.random.default_rng(0)
    for k in range(3):
        n = 200
        cols = {"user": [str(u) for u in rng.integers(0, 80, n)], "item": [str(i) for i in rng.integers(0, 100, n)],
                "type": ["click"] * n, "value": [1.0] * n, "timestamp": [1.7e9] * n, "context": [None] * n}
        batch, reason = make_batch(cols, np.zeros(n, np.int64), np.arange(k * n, (k + 1) * n))
        state.apply(batch)
    assert (state.item_users == np.bincount(state.history.indices, minlength=state.history.shape[1])).all()
    for sums, vectors, bias in ((state.user_sums, state.P, state.user_bias), (state.item_sums, state.Q, state.item_bias)):
        want = RowSums.of(vectors, bias)
        assert torch.allclose(sums.gram, want.gram, atol=1e-6)
        assert torch.allclose(sums.total, want.total, atol=1e-6)
        assert torch.allclose(sums.weighted, want.weighted, atol=1e-6)
