"""GF-CF (Shen et al., CIKM 2021, "How Powerful is Graph Convolution for Recommendation?").

A training-free graph filter on the normalised interaction matrix:

    R̃      = D_u^-1/2 R D_i^-1/2                         (U, I) sparse
    linear = r_u R̃ᵀ R̃                                    normalised item-item filter
    ideal  = (r_u D_i^-1/2 V) Vᵀ D_i^1/2                 ideal low-pass, V = top-k right singular vectors of R̃
    score(u, ·) = linear + α · ideal

The item-item matrix R̃ᵀR̃ is never formed: a batch of users is scored as (x R̃ᵀ) R̃, two sparse-dense
products costing O(nnz·B), so memory stays O(nnz + I·k) for any catalogue size. V comes from a
randomised SVD of the sparse R̃ (Halko et al.), seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.base import Recommender, cold_start_fallback
from liverec.models.sparse import (
    binarize,
    degree_normalized,
    gather_rows,
    take_saved_shapes,
    torch_csr,
)


@dataclass
class GFCFConfig:
    ideal_weight: float = 0.3  # α: weight of the ideal low-pass term (paper: 0.3)
    num_factors: int = 256  # k: singular vectors kept by the ideal filter (paper: 256)
    svd_iters: int = 8  # power iterations of the randomised SVD (more = closer to exact)

    def __post_init__(self) -> None:
        if self.ideal_weight < 0:
            raise LiverecError(f"gfcf: ideal_weight must be >= 0, got {self.ideal_weight}")
        if self.num_factors < 0:
            raise LiverecError(f"gfcf: num_factors must be >= 0, got {self.num_factors}")
        if self.svd_iters < 0:
            raise LiverecError(f"gfcf: svd_iters must be >= 0, got {self.svd_iters}")


class GFCF(Recommender):
    """Linear + ideal low-pass graph filter; `fit` once (no gradient training)."""

    Config = GFCFConfig
    trainable = False

    def __init__(self, config: GFCFConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        # R̃ as CSR buffers; its sparsity pattern is also each user's training history
        self.register_buffer("norm_indptr", torch.zeros(num_users + 1, dtype=torch.int64))
        self.register_buffer("norm_indices", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("norm_values", torch.zeros(0))
        self.register_buffer("item_degree", torch.zeros(num_items))  # training interactions per item
        self.register_buffer("item_factors", torch.zeros(num_items, 0))  # V: (I, k)
        self._transposed: torch.Tensor | None = None  # R̃ᵀ as CSR, built on first use after fit/load

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        take_saved_shapes(self, state_dict, prefix, ("norm_indices", "norm_values", "item_factors"))
        self._transposed = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> GFCF:
        """Normalise the (U, I) training matrix (binarised) and take its top-k right singular vectors."""
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"gfcf: training matrix is {train.shape}, model is ({self.num_users}, {self.num_items})"
            )
        r = binarize(train)
        item_deg = np.asarray(r.sum(axis=0)).ravel()
        norm = degree_normalized(r)
        device = self.norm_indptr.device
        self.norm_indptr = torch.from_numpy(norm.indptr.astype(np.int64)).to(device)
        self.norm_indices = torch.from_numpy(norm.indices.astype(np.int64)).to(device)
        self.norm_values = torch.from_numpy(norm.data).to(device)
        self.item_degree = torch.from_numpy(item_deg).to(device)
        self.item_factors = self._top_right_singular_vectors(norm, generator).to(device)
        self._transposed = None
        return self

    def _top_right_singular_vectors(self, norm: sp.csr_matrix, generator) -> torch.Tensor:
        """V: (I, k) of the sparse R̃ by randomised SVD (power iterations), seeded by `generator`."""
        k = min(self.config.num_factors, *norm.shape)
        if k == 0 or self.config.ideal_weight == 0:
            return torch.zeros(self.num_items, 0)
        coo = norm.tocoo()
        a = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]), coo.data, size=norm.shape, dtype=torch.float32,
            check_invariants=False,
        ).coalesce()
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator else 0
        with torch.random.fork_rng(devices=[]):  # svd_lowrank draws from the global RNG
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(a, q=min(k + 10, *norm.shape), niter=self.config.svd_iters)
        return v[:, :k].contiguous()  # (I, k)

    def _check_fitted(self) -> None:
        if int(self.norm_indptr[-1]) == 0:
            raise LiverecError("gfcf: the model is not fitted; call fit(train) or load a saved state")

    def _norm_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """R̃ (U, I) and R̃ᵀ (I, U) as sparse CSR; R̃ᵀ is built once per fitted or loaded state."""
        shape = (self.num_users, self.num_items)
        norm = torch_csr(self.norm_indptr, self.norm_indices, self.norm_values, shape)
        if self._transposed is None or self._transposed.device != self.norm_values.device:
            m = sp.csr_matrix(
                (self.norm_values.cpu().numpy(), self.norm_indices.cpu().numpy(),
                 self.norm_indptr.cpu().numpy()), shape=shape,
            ).T.tocsr()
            dev = self.norm_values.device
            self._transposed = torch_csr(
                torch.from_numpy(m.indptr).to(dev), torch.from_numpy(m.indices).to(dev),
                torch.from_numpy(m.data).to(dev), m.shape,
            )
        return norm, self._transposed

    def _history(self, users: torch.Tensor) -> torch.Tensor:
        """Dense (B, I) binary training rows of `users`, gathered without a loop over users."""
        _, owner, cols = gather_rows(self.norm_indptr, self.norm_indices, users)
        x = torch.zeros(users.shape[0], self.num_items, device=users.device)
        x[owner, cols] = 1.0
        return x

    def score_histories(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for dense (B, I) interaction rows (any users, e.g. new ones): (B, I)."""
        norm, norm_t = self._norm_matrices()
        linear = (norm_t @ (norm @ x.T)).T  # (B, I) = x R̃ᵀ R̃ without the (I, I) matrix
        if self.item_factors.shape[1] == 0:
            return linear
        v = self.item_factors  # (I, k)
        seen = self.item_degree > 0
        scale = torch.where(seen, self.item_degree.clamp_min(1.0).rsqrt(), 0.0)  # D_i^-1/2
        scale_back = torch.where(seen, self.item_degree.sqrt(), 0.0)  # D_i^1/2
        ideal = ((x * scale) @ v) @ v.T  # (B, I)
        return linear + self.config.ideal_weight * ideal * scale_back

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I) from their training histories; popularity for users without one."""
        self._check_fitted()
        scores = self.score_histories(self._history(users))
        user_degree = self.norm_indptr[1:] - self.norm_indptr[:-1]  # (U,)
        return cold_start_fallback(scores, users, user_degree, self.item_degree)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M), gathered from this chunk's score_all."""
        return self.score_all(users).gather(1, items)
