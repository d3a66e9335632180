"""EASE against the closed form written directly in numpy (Steck 2019, eq. 8)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.ease import EASE, EASEConfig, ease_weights


def numpy_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """B = I − P · diagMat(1 / diag(P)), P = (XᵀX + λI)⁻¹, in float64."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p / np.diag(p)


def tiny_matrix(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((9, 7)) < 0.4).astype(np.float64)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_matches_numpy_closed_form(dtype: str, tol: float) -> None:
    x = tiny_matrix()
    model = EASE(EASEConfig(l2=2.0, dtype=dtype), 9, 7).fit(sp.csr_matrix(x))
    expected = numpy_ease(x, 2.0)
    np.testing.assert_allclose(model.item_weights.numpy(), expected, atol=tol)
    assert np.all(np.diag(model.item_weights.numpy()) == 0)
    np.testing.assert_allclose(model.score_all(torch.arange(9)).numpy(), x @ expected, atol=tol)


def test_values_are_binarised() -> None:
    x = tiny_matrix()
    weighted = sp.csr_matrix(x * np.arange(1, 8))  # counts / ratings must not change B
    model = EASE(EASEConfig(l2=2.0, dtype="float64"), 9, 7).fit(weighted)
    np.testing.assert_allclose(model.item_weights.numpy(), numpy_ease(x, 2.0), atol=1e-10)


def test_ease_weights_matches_closed_form() -> None:
    x = tiny_matrix(1)
    weights = ease_weights(torch.from_numpy(x.T @ x), 3.0)
    np.testing.assert_allclose(weights.numpy(), numpy_ease(x, 3.0), atol=1e-10)


def test_scoring_before_fit_is_an_error() -> None:
    with pytest.raises(LiverecError, match="not fitted"):
        EASE(EASEConfig(), 3, 4).score_all(torch.tensor([0]))


def test_bad_config_is_an_error() -> None:
    with pytest.raises(LiverecError, match="dtype"):
        EASEConfig(dtype="float16")
    with pytest.raises(LiverecError, match="l2"):
        EASEConfig(l2=0.0)
