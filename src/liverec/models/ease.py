"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

    min_B ||X − XB||² + λ||B||²   s.t. diag(B) = 0
    G = XᵀX + λI,  P = G⁻¹,  B_ij = −P_ij / P_jj  (i ≠ j),  B_jj = 0
    score(u, ·) = X_u B

X is the binarised training matrix. The model keeps X (as CSR index buffers) and B, so a saved
state dict scores on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.base import Recommender
from liverec.models.sparse import binarize, gather_rows, take_saved_shapes, torch_csr

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class EASEConfig:
    l2: float = 500.0  # λ: L2 penalty on B (Steck: hundreds to thousands on ML-20M / Netflix)
    dtype: str = "float32"  # precision of G⁻¹ and B: "float32" (half the memory) or "float64"

    def __post_init__(self) -> None:
        if self.l2 <= 0:
            raise LiverecError(f"ease: l2 must be > 0 (G must be invertible), got {self.l2}")
        if self.dtype not in _DTYPES:
            raise LiverecError(f"ease: dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """B from the symmetric (I, I) XᵀX, consuming `gram` (its memory is released early).

    Peak memory is about two (I, I) matrices (float32 Gowalla, 40,981 items: ~13.4 GB): G + λI is
    factored into L, G is dropped, then P = G⁻¹ is formed from L and scaled in place into B.
    (torch's MKL/cuSOLVER Cholesky; scipy's OpenBLAS potrf crashed at this size.)
    """
    gram.diagonal().add_(l2)  # G + λI
    factor, info = torch.linalg.cholesky_ex(gram)  # L: (I, I)
    del gram
    if int(info) != 0:
        raise LiverecError(f"ease: XᵀX + λI is not positive definite (info={int(info)}); raise l2")
    weights = torch.cholesky_inverse(factor)  # P: (I, I), may come back column-major
    del factor
    if not weights.is_contiguous():
        weights = weights.mT  # P is symmetric: the transposed view is the same matrix, row-major
    weights.div_(-weights.diagonal().clone())  # B_ij = −P_ij / P_jj: column j by its own P_jj
    weights.fill_diagonal_(0.0)
    return weights


class EASE(Recommender):
    """Closed-form item-item linear autoencoder; `fit` once, then score from stored histories."""

    Config = EASEConfig
    trainable = False

    def __init__(self, config: EASEConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        dtype = _DTYPES[config.dtype]
        # B is items × items (GBs): it stays empty until fit() or load_state_dict() sizes it
        self.register_buffer("item_weights", torch.zeros(0, 0, dtype=dtype))  # B: (I, I)
        indptr = torch.zeros(num_users + 1, dtype=torch.int64)  # (U + 1,) row starts of X
        self.register_buffer("train_indptr", indptr)
        self.register_buffer("train_indices", torch.zeros(0, dtype=torch.int64))  # (nnz,) items

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # B and the history indices have data-dependent sizes: take the saved shapes first
        take_saved_shapes(self, state_dict, prefix, ("item_weights", "train_indices"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> EASE:
        """Compute B from the (U, I) training matrix (values ignored: X is binarised)."""
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"ease: training matrix is {train.shape}, model is ({self.num_users}, {self.num_items})"
            )
        x = binarize(train)
        np_dtype = np.float32 if self.config.dtype == "float32" else np.float64
        device = self.train_indptr.device
        gram = (x.T @ x).astype(np_dtype).toarray()  # (I, I), Fortran order from scipy
        gram = torch.from_numpy(gram.T if gram.flags.f_contiguous else gram).to(device)  # symmetric
        weights = ease_weights(gram, self.config.l2)
        self.item_weights = weights.to(device)
        self.train_indptr = torch.from_numpy(x.indptr.astype(np.int64)).to(device)
        self.train_indices = torch.from_numpy(x.indices.astype(np.int64)).to(device)
        return self

    def _check_fitted(self) -> None:
        if self.item_weights.shape != (self.num_items, self.num_items):
            raise LiverecError(
                "ease: the model is not fitted; call fit(train) or load a saved state"
            )

    def _history(self, users: torch.Tensor) -> torch.Tensor:
        """Sparse CSR (B, I) of the users' training rows, gathered without a loop over users."""
        crow, owner, cols = gather_rows(self.train_indptr, self.train_indices, users)
        values = torch.ones(owner.shape[0], dtype=self.item_weights.dtype, device=users.device)
        return torch_csr(crow, cols, values, (users.shape[0], self.num_items))

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I): X_u B for the users' training histories."""
        self._check_fitted()
        return self._history(users) @ self.item_weights  # (B, I)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M), gathered from this chunk's score_all."""
        return self.score_all(users).gather(1, items)
