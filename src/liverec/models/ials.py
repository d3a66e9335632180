"""iALS as in Rendle et al. 2021, "Revisiting the Performance of iALS on Item Recommendation
Benchmarks" (RecSys 2022).

    L(W, H) = Σ_{(u,i)∈S} (w_u·h_i − 1)²  +  α0 Σ_u Σ_i (w_u·h_i)²
              + λ Σ_u (|I_u| + α0|I|)^ν ||w_u||²  +  λ Σ_i (|U_i| + α0|U|)^ν ||h_i||²

Alternating least squares: with H fixed every w_u has the closed form
    (α0 HᵀH + Σ_{i∈I_u} h_i h_iᵀ + λ_u I) w_u = Σ_{i∈I_u} h_i,
solved for a batch of rows at once (batched Cholesky), or approximately by a few conjugate-gradient
steps warm-started at the current w_u. Items are solved the same way with W fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.base import Recommender

_OUTER_BUDGET = 1 << 24  # floats of h_i h_iᵀ outer products materialised at once (~64 MB float32)


@dataclass
class IALSConfig:
    embedding_dim: int = 64  # D: size of the user factors w_u and item factors h_i
    l2: float = 0.002  # λ: base L2 penalty, scaled per row by (|I_u| + α0·|I|)^ν
    unobserved_weight: float = 0.1  # α0: weight of the squared score of every (user, item) pair
    regularization_exponent: float = 1.0  # ν: 0 = plain λ, 1 = the paper's frequency scaling
    epochs: int = 16  # alternating sweeps (items, then users) run by fit()
    init_std: float = 0.1  # factors start as N(0, (init_std / √D)²), as in the paper's code
    cg_steps: int = 0  # 0 = exact batched Cholesky solves; > 0 = conjugate-gradient steps per sweep
    solve_batch_size: int = 4096  # rows solved together; exact solves hold batch × D² floats

    def __post_init__(self) -> None:
        if (
            self.embedding_dim < 1
            or self.epochs < 0
            or self.cg_steps < 0
            or self.solve_batch_size < 1
        ):
            raise LiverecError(
                "ials: embedding_dim and solve_batch_size must be >= 1, epochs and cg_steps >= 0"
            )
        if self.l2 <= 0 or self.unobserved_weight < 0 or self.init_std < 0:
            raise LiverecError(
                f"ials: need l2 > 0 (keeps every solve positive definite), unobserved_weight >= 0 "
                f"and init_std >= 0; got {self.l2}, {self.unobserved_weight}, {self.init_std}"
            )


class _Rows(NamedTuple):
    """One side of the binary training matrix as CSR: the rows to solve for."""

    indptr: np.ndarray  # (n + 1,) int64 on the CPU, for slicing bounds without device syncs
    indices: torch.Tensor  # (nnz,) int64 column ids, on the model's device
    counts: torch.Tensor  # (n,) int64 entries per row, on the model's device


def _binary(train: sp.spmatrix) -> sp.csr_matrix:
    """CSR copy with explicit zeros dropped and every stored value set to 1."""
    x = sp.csr_matrix(train, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    x.data[:] = 1.0
    return x


class IALS(Recommender):
    """Implicit alternating least squares with frequency-scaled regularisation."""

    Config = IALSConfig
    trainable = False

    def __init__(self, config: IALSConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        dim = config.embedding_dim
        self.register_buffer("user_factors", torch.zeros(num_users, dim))  # W: (U, D)
        self.register_buffer("item_factors", torch.zeros(num_items, dim))  # H: (I, D)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw W and H from N(0, (init_std / √D)²) (pass a generator to seed)."""
        std = self.config.init_std / math.sqrt(self.config.embedding_dim)
        device = generator.device if generator is not None else torch.device("cpu")
        for factors in (self.user_factors, self.item_factors):
            drawn = torch.randn(
                factors.shape, generator=generator, device=device, dtype=factors.dtype
            )
            factors.copy_(drawn * std)

    # ---- training -----------------------------------------------------------------------------

    def _rows(self, x: sp.csr_matrix) -> _Rows:
        device = self.item_factors.device
        indptr = x.indptr.astype(np.int64)
        return _Rows(
            indptr,
            torch.from_numpy(x.indices.astype(np.int64)).to(device),
            torch.from_numpy(np.diff(indptr)).to(device),
        )

    def _check_shape(self, train: sp.spmatrix) -> sp.csr_matrix:
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"ials: training matrix is {train.shape}, model is ({self.num_users}, {self.num_items})"
            )
        return _binary(train)

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> IALS:
        """Initialise the factors and run `epochs` alternating sweeps on the (U, I) matrix."""
        x = self._check_shape(train)
        by_user, by_item = self._rows(x), self._rows(x.T.tocsr())
        self.reset_parameters(generator)
        for _ in range(self.config.epochs):
            self._sweep(by_user, by_item)
        return self

    def fit_epoch(self, train: sp.csr_matrix) -> IALS:
        """One more sweep from the current factors (for monitoring the loss, or warm restarts)."""
        x = self._check_shape(train)
        self._sweep(self._rows(x), self._rows(x.T.tocsr()))
        return self

    @torch.no_grad()
    def _sweep(self, by_user: _Rows, by_item: _Rows) -> None:
        # Items first, users last: the final user factors are then exactly what fold_in_users
        # computes from the final item factors, so live fold-in and batch training agree.
        self.item_factors = self._solve(
            self.user_factors, by_item, self.item_factors, self.config.cg_steps
        )
        self.user_factors = self._solve(
            self.item_factors, by_user, self.user_factors, self.config.cg_steps
        )

    @torch.no_grad()
    def fold_in_users(self, rows: sp.csr_matrix) -> torch.Tensor:
        """Exact user factors (n, D) for new histories rows (n, I), given the item factors."""
        if rows.shape[1] != self.num_items:
            raise LiverecError(
                f"ials: fold-in rows have {rows.shape[1]} columns, model has {self.num_items} items"
            )
        start = torch.zeros(
            rows.shape[0],
            self.config.embedding_dim,
            dtype=self.item_factors.dtype,
            device=self.item_factors.device,
        )  # (n, D)
        return self._solve(self.item_factors, self._rows(_binary(rows)), start, cg_steps=0)

    def _solve(
        self, fixed: torch.Tensor, rows: _Rows, current: torch.Tensor, cg_steps: int
    ) -> torch.Tensor:
        """Minimise L over one side's factors given the other side `fixed` (n_other, D) -> (n, D)."""
        alpha0, dim = self.config.unobserved_weight, fixed.shape[1]
        gram = alpha0 * (fixed.T @ fixed)  # (D, D): α0 HᵀH, shared by every row
        # λ_u = λ (|I_u| + α0 |I|)^ν; the clamp only matters for empty rows when α0·|I| < 1
        support = (rows.counts.to(fixed.dtype) + alpha0 * fixed.shape[0]).clamp_min(1.0)  # (n,)
        penalty = self.config.l2 * support.pow(self.config.regularization_exponent)  # (n,) λ_u
        out = torch.empty_like(current)  # (n, D)
        n, step = current.shape[0], self.config.solve_batch_size
        for s in range(0, n, step):
            e = min(s + step, n)
            lo, hi = int(rows.indptr[s]), int(rows.indptr[e])
            batch = torch.arange(e - s, device=fixed.device)
            owner = torch.repeat_interleave(batch, rows.counts[s:e])  # (nnz_b,) row of each entry
            vecs = fixed[rows.indices[lo:hi]]  # (nnz_b, D): h_i of every interaction in the batch
            rhs = fixed.new_zeros(e - s, dim).index_add_(0, owner, vecs)  # (b, D): Σ_{i∈I_u} h_i
            if cg_steps == 0:
                out[s:e] = _exact_solve(gram, penalty[s:e], owner, vecs, rhs)
            else:
                out[s:e] = _conjugate_gradient(
                    gram, penalty[s:e], owner, vecs, rhs, current[s:e], cg_steps
                )
        return out

    # ---- scoring ------------------------------------------------------------------------------

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M)."""
        w = self.user_factors[users]  # (B, D)
        return torch.bmm(self.item_factors[items], w.unsqueeze(-1)).squeeze(-1)  # (B, M)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I)."""
        return self.user_factors[users] @ self.item_factors.T  # (B, I)

    def user_embeddings(self) -> torch.Tensor:
        """(U, D) user factors W."""
        return self.user_factors

    def item_embeddings(self) -> torch.Tensor:
        """(I, D) item factors H."""
        return self.item_factors


def _exact_solve(
    gram: torch.Tensor,
    penalty: torch.Tensor,
    owner: torch.Tensor,
    vecs: torch.Tensor,
    rhs: torch.Tensor,
) -> torch.Tensor:
    """Batched (α0 HᵀH + Σ h_i h_iᵀ + λ_u I) w = rhs by Cholesky: (b, D)."""
    b, dim = rhs.shape
    a = gram.expand(b, dim, dim).clone()  # (b, D, D)
    a.diagonal(dim1=1, dim2=2).add_(penalty.unsqueeze(1))
    chunk = max(1, _OUTER_BUDGET // (dim * dim))  # bounds the (chunk, D, D) outer products
    for c in range(0, owner.shape[0], chunk):
        v = vecs[c : c + chunk]  # (c, D)
        a.index_add_(0, owner[c : c + chunk], v.unsqueeze(2) * v.unsqueeze(1))  # Σ h_i h_iᵀ
    return torch.cholesky_solve(rhs.unsqueeze(-1), torch.linalg.cholesky(a)).squeeze(-1)  # (b, D)


def _conjugate_gradient(
    gram: torch.Tensor,
    penalty: torch.Tensor,
    owner: torch.Tensor,
    vecs: torch.Tensor,
    rhs: torch.Tensor,
    start: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """`steps` batched CG iterations from `start` without forming A (O(nnz·D) per step): (b, D)."""

    def matvec(p: torch.Tensor) -> torch.Tensor:  # A p = α0 HᵀH p + Σ h_i (h_i·p) + λ_u p
        dots = (vecs * p[owner]).sum(1, keepdim=True)  # (nnz_b, 1)
        return (
            p @ gram
            + penalty.unsqueeze(1) * p
            + torch.zeros_like(p).index_add_(0, owner, vecs * dots)
        )

    return batched_cg(matvec, rhs, start, steps)


def batched_cg(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, start: torch.Tensor, steps: int
) -> torch.Tensor:
    """`steps` conjugate-gradient iterations on every row of (b, D) at once: A_b x_b = rhs_b, with
    `matvec(p)` giving the rows A_b p_b (each A_b symmetric positive definite)."""
    tiny = torch.finfo(rhs.dtype).tiny  # rows already solved have zero residual: avoid 0 / 0
    x = start.clone()  # (b, D)
    r = rhs - matvec(x)  # (b, D) residual
    p = r.clone()
    rs = (r * r).sum(1)  # (b,)
    for _ in range(steps):
        ap = matvec(p)
        step = rs / (p * ap).sum(1).clamp_min(tiny)  # (b,)
        x += step.unsqueeze(1) * p
        r -= step.unsqueeze(1) * ap
        rs_next = (r * r).sum(1)
        p = r + (rs_next / rs.clamp_min(tiny)).unsqueeze(1) * p
        rs = rs_next
    return x
