"""iALS: every sweep lowers the paper's objective; fold-in reproduces trained user factors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from liverec.models.ials import IALS, IALSConfig

NUM_USERS, NUM_ITEMS = 30, 20


def random_matrix(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((NUM_USERS, NUM_ITEMS)) < 0.2).astype(np.float32))


def ials_loss(x: np.ndarray, w: np.ndarray, h: np.ndarray, cfg: IALSConfig) -> float:
    """Rendle et al. 2021, eq. (3), written out densely in float64."""
    alpha0, nu = cfg.unobserved_weight, cfg.regularization_exponent
    scores = w @ h.T  # (U, I)
    observed = ((scores - 1.0) ** 2 * x).sum()
    unobserved = alpha0 * (scores**2).sum()
    user_reg = cfg.l2 * ((x.sum(1) + alpha0 * x.shape[1]) ** nu * (w**2).sum(1)).sum()
    item_reg = cfg.l2 * ((x.sum(0) + alpha0 * x.shape[0]) ** nu * (h**2).sum(1)).sum()
    return float(observed + unobserved + user_reg + item_reg)


@pytest.mark.parametrize("cg_steps", [0, 2])
@pytest.mark.parametrize("nu", [1.0, 0.0])
def test_objective_decreases_every_epoch(cg_steps: int, nu: float) -> None:
    x = random_matrix()
    cfg = IALSConfig(
        embedding_dim=6,
        l2=0.05,
        unobserved_weight=0.3,
        regularization_exponent=nu,
        epochs=0,
        init_std=1.0,
        cg_steps=cg_steps,
        solve_batch_size=7,
    )
    model = IALS(cfg, NUM_USERS, NUM_ITEMS).double()  # float64: compare losses without noise
    model.fit(x, torch.Generator().manual_seed(0))  # epochs=0: initialisation only
    dense = x.toarray().astype(np.float64)
    losses = [ials_loss(dense, model.user_factors.numpy(), model.item_factors.numpy(), cfg)]
    for _ in range(6):
        model.fit_epoch(x)
        losses.append(ials_loss(dense, model.user_factors.numpy(), model.item_factors.numpy(), cfg))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


def test_fold_in_reproduces_trained_user_factors() -> None:
    x = random_matrix(1)
    model = IALS(
        IALSConfig(embedding_dim=5, epochs=4, solve_batch_size=8), NUM_USERS, NUM_ITEMS
    ).double()
    model.fit(x, torch.Generator().manual_seed(0))
    users = [2, 5, 11, 29]
    folded = model.fold_in_users(x[users])
    torch.testing.assert_close(folded, model.user_factors[users], rtol=0, atol=1e-10)


def test_fold_in_solves_the_normal_equations_of_a_new_history() -> None:
    cfg = IALSConfig(embedding_dim=4, l2=0.1, unobserved_weight=0.2, regularization_exponent=0.5)
    model = IALS(cfg, NUM_USERS, NUM_ITEMS).double()
    model.fit(random_matrix(2), torch.Generator().manual_seed(0))
    history = [1, 4, 9]
    rows = sp.csr_matrix((np.ones(3), ([0, 0, 0], history)), shape=(1, NUM_ITEMS))
    h = model.item_factors.numpy()
    penalty = (
        cfg.l2 * (len(history) + cfg.unobserved_weight * NUM_ITEMS) ** cfg.regularization_exponent
    )
    a = cfg.unobserved_weight * h.T @ h + h[history].T @ h[history] + penalty * np.eye(4)
    expected = np.linalg.solve(a, h[history].sum(0))
    np.testing.assert_allclose(model.fold_in_users(rows).numpy()[0], expected, atol=1e-10)


def test_conjugate_gradient_with_d_steps_matches_the_exact_solve() -> None:
    x = random_matrix(3)
    exact_cfg = IALSConfig(embedding_dim=4, epochs=0, solve_batch_size=6)
    exact = IALS(exact_cfg, NUM_USERS, NUM_ITEMS).double().fit(x, torch.Generator().manual_seed(0))
    cg_cfg = IALSConfig(embedding_dim=4, epochs=0, cg_steps=4, solve_batch_size=6)
    cg = IALS(cg_cfg, NUM_USERS, NUM_ITEMS).double().fit(x, torch.Generator().manual_seed(0))
    exact.fit_epoch(x)
    cg.fit_epoch(x)  # CG converges in at most D steps on a D-dimensional system
    torch.testing.assert_close(cg.item_factors, exact.item_factors, rtol=0, atol=1e-8)
    torch.testing.assert_close(cg.user_factors, exact.user_factors, rtol=0, atol=1e-8)
