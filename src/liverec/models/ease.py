"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

    min_B ||X − XB||² + λ||B||²   s.t. diag(B) = 0
    G = XᵀX + λI,  P = G⁻¹,  B_ij = −P_ij / P_jj  (i ≠ j),  B_jj = 0
    score(u, ·) = X_u B

X is the binarised training matrix. The model keeps X (as CSR index buffers) and B, so a saved
state dict scores on its own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import get_lapack_funcs

from liverec.errors import LiverecError
from liverec.models.base import Recommender

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MIRROR_BLOCK = 1024  # rows per step when copying P's lower triangle to the upper one


@dataclass
class EASEConfig:
    l2: float = 500.0  # λ: L2 penalty on B (Steck: hundreds to thousands on ML-20M / Netflix)
    dtype: str = "float32"  # precision of G⁻¹ and B: "float32" (half the memory) or "float64"

    def __post_init__(self) -> None:
        if self.l2 <= 0:
            raise LiverecError(f"ease: l2 must be > 0 (G must be invertible), got {self.l2}")
        if self.dtype not in _DTYPES:
            raise LiverecError(f"ease: dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")


def ease_weights_inplace(gram: np.ndarray, l2: float) -> np.ndarray:
    """Turn the symmetric (I, I) XᵀX (C or Fortran order) into B, in place; returns B in C order.

    Peak memory is this one matrix: LAPACK potrf/potri overwrite it, the triangle is mirrored in
    row blocks, and the column scaling is in place (float32: 6.7 GB for Gowalla's 40,981 items).
    """
    gram = _c_order(gram)
    n = gram.shape[0]
    gram.flat[:: n + 1] += l2  # G + λI
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (gram,))
    # G is symmetric, so gram.T is G in Fortran order: LAPACK works on it without a copy
    factor, info = potrf(gram.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise LiverecError(f"ease: XᵀX + λI is not positive definite (potrf info={info}); raise l2")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise LiverecError(f"ease: inverting XᵀX + λI failed (potri info={info}); raise l2")
    p = inverse.T  # C order, the memory of `gram`; potri filled only its lower triangle
    for start in range(0, n, _MIRROR_BLOCK):
        stop = min(start + _MIRROR_BLOCK, n)
        p[start:stop, stop:] = p[stop:, start:stop].T
        block = p[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        block[upper] = block.T[upper]
    diag = p.diagonal().copy()  # (I,) P_jj
    p /= -diag  # B_ij = −P_ij / P_jj: column j scaled by its own diagonal entry
    p.flat[:: n + 1] = 0.0
    return p


def _c_order(symmetric: np.ndarray) -> np.ndarray:
    """The same symmetric matrix as a C-contiguous array (a transposed view when it is Fortran)."""
    if not symmetric.flags.c_contiguous:
        symmetric = symmetric.T if symmetric.flags.f_contiguous else np.ascontiguousarray(symmetric)
    return symmetric


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
        for name in ("item_weights", "train_indices"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                own = getattr(self, name)
                setattr(self, name, torch.empty(saved.shape, dtype=own.dtype, device=own.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> EASE:
        """Compute B from the (U, I) training matrix (values ignored: X is binarised)."""
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"ease: training matrix is {train.shape}, model is ({self.num_users}, {self.num_items})"
            )
        x = sp.csr_matrix(train, dtype=np.float32, copy=True)
        x.sum_duplicates()
        x.eliminate_zeros()
        x.data[:] = 1.0
        np_dtype = np.float32 if self.config.dtype == "float32" else np.float64
        # peak: this dense (I, I) matrix plus, briefly, the sparse XᵀX it is made from
        gram = _c_order((x.T @ x).astype(np_dtype).toarray())  # (I, I)
        device = self.train_indptr.device
        if device.type == "cuda":  # cuSOLVER is orders faster; the GPU holds G, L and P at once
            g = torch.from_numpy(gram).to(device)
            del gram
            g.diagonal().add_(self.config.l2)
            weights = torch.cholesky_inverse(torch.linalg.cholesky(g))  # P: (I, I)
            del g
            weights.div_(-weights.diagonal().clone())  # B_ij = −P_ij / P_jj
            weights.fill_diagonal_(0.0)
        else:
            weights = torch.from_numpy(ease_weights_inplace(gram, self.config.l2))
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
        start = self.train_indptr[users]  # (B,)
        lengths = self.train_indptr[users + 1] - start  # (B,)
        crow = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])  # (B + 1,) row starts
        owner = torch.repeat_interleave(torch.arange(users.shape[0], device=users.device), lengths)
        # position of each output entry in train_indices: its row start + its offset in the row
        pos = torch.arange(owner.shape[0], device=users.device) - crow[owner] + start[owner]
        values = torch.ones(owner.shape[0], dtype=self.item_weights.dtype, device=users.device)
        with warnings.catch_warnings():  # torch flags sparse CSR as beta on first use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow,
                self.train_indices[pos],
                values,
                size=(users.shape[0], self.num_items),
                check_invariants=False,
            )

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I): X_u B for the users' training histories."""
        self._check_fitted()
        return self._history(users) @ self.item_weights  # (B, I)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M), gathered from this chunk's score_all."""
        return self.score_all(users).gather(1, items)
