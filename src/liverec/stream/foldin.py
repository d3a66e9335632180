"""Weighted least-squares fold-in: new vectors for some rows of one side, the other side fixed.

For a row x (a user, or an item) with interactions e (confidence c_e, the other side's vector f_e):

    min_x  Σ_e c_e (x·f_e + β_e − 1)²  +  α0 Σ_j (x·f_j + β_j)²  +  λ (n_x + α0 N)^ν ||x||²

where the middle sum runs over every row j of the fixed side (iALS's unobserved term) and β is the
item bias of MF models (0 for iALS). Setting the gradient to zero gives

    (α0 FᵀF + Σ_e c_e f_e f_eᵀ + λ_x I) x = Σ_e c_e (1 − β_e) f_e + const

solved for a whole batch of rows at once. The conjugate-gradient path never gathers one vector per
interaction: with C the (n, N) sparse confidence matrix of the rows being solved,

    Σ_e c_e f_e (f_e·p_x)  =  (C ⊙ (P Fᵀ restricted to C's pattern)) F

is one sampled dense-dense product (SDDMM, cost nnz·D, reads F from cache) and one sparse-dense
product (SpMM), instead of materialising (nnz, D) gathers four times per CG step. The exact path
(cg_steps = 0) forms the (n, D, D) systems with the Cholesky solver of `liverec.models.ials`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liverec.models.ials import _exact_solve, batched_cg  # the iALS batched solvers
from liverec.models.sparse import torch_csr


@dataclass
class Rows:
    """The interactions of the n rows to solve, as a CSR matrix over the fixed side's rows."""

    crow: torch.Tensor  # (n + 1,) int64 row pointers
    other: torch.Tensor  # (nnz,) int64: index of the fixed-side row (f_e) of each entry
    confidence: torch.Tensor  # (nnz,) float32 c_e > 0
    target: torch.Tensor  # (nnz,) float32 1 − β_e

    @property
    def count(self) -> torch.Tensor:
        """(n,) float32 interactions per row (n_x of the penalty)."""
        return self.crow.diff().float()

    def matrix(self, values: torch.Tensor, columns: int) -> torch.Tensor:
        """(n, columns) sparse CSR with this pattern and `values` (nnz,)."""
        return torch_csr(self.crow, self.other, values, (len(self.crow) - 1, columns))


def solve_rows(
    fixed: torch.Tensor, fixed_gram: torch.Tensor, rows: Rows, start: torch.Tensor,
    const: torch.Tensor, l2: float, alpha0: float, exponent: float, cg_steps: int,
) -> torch.Tensor:
    """New vectors (n, D) for the rows; `start` (n, D) warm-starts CG, `const` (n or 1, D).

    `fixed_gram` is FᵀF (D, D) of the whole fixed side, which callers keep up to date
    incrementally (recomputing it costs N·D² per batch, the largest term for big catalogues).
    """
    n, dim = start.shape
    if n == 0:
        return start
    gram = alpha0 * fixed_gram.to(fixed.dtype)  # (D, D)
    support = (rows.count + alpha0 * fixed.shape[0]).clamp_min(1.0)  # (n,)
    penalty = l2 * support.pow(exponent)  # (n,)
    rhs = const.expand(n, dim) + rows.matrix(rows.confidence * rows.target, len(fixed)) @ fixed  # (n, D)
    if cg_steps == 0:
        owner = torch.repeat_interleave(torch.arange(n), rows.crow.diff())  # (nnz,)
        scaled = fixed[rows.other] * rows.confidence.sqrt().unsqueeze(1)  # (nnz, D): √c f
        return _exact_solve(gram, penalty, owner, scaled, rhs)
    return _sparse_cg(fixed, gram, penalty, rows, rhs, start, cg_steps)


def _sparse_cg(
    fixed: torch.Tensor, gram: torch.Tensor, penalty: torch.Tensor, rows: Rows,
    rhs: torch.Tensor, start: torch.Tensor, steps: int,
) -> torch.Tensor:
    """`steps` batched CG iterations from `start` with A p = gram p + λ_x p + (C ⊙ P Fᵀ) F: (n, D)."""
    pattern = rows.matrix(rows.confidence, len(fixed))  # values unused by the SDDMM (beta = 0)
    fixed_t = fixed.T  # (D, N)

    def matvec(p: torch.Tensor) -> torch.Tensor:
        dots = torch.sparse.sampled_addmm(pattern, p, fixed_t, beta=0.0).values()  # (nnz,) p_x·f_e
        return p @ gram + penalty.unsqueeze(1) * p + rows.matrix(dots * rows.confidence, len(fixed)) @ fixed

    return batched_cg(matvec, rhs, start, steps)


@dataclass
class RowSums:
    """Sums over every row v_j (bias b_j) of one factor table, which the other side's fold-in needs.

    Recomputing them costs rows·D² per batch, the dominant term once a side has millions of rows,
    while a batch changes only the rows it touches: they are updated by difference. Kept in float64
    so that rounding does not accumulate over millions of updates.
    """

    gram: torch.Tensor  # (D, D) Σ_j v_j v_jᵀ
    total: torch.Tensor  # (D,) Σ_j v_j
    weighted: torch.Tensor  # (D,) Σ_j b_j v_j

    @classmethod
    def of(cls, vectors: torch.Tensor, bias: torch.Tensor) -> RowSums:
        v = vectors.double()
        return cls(v.T @ v, v.sum(0), bias.double() @ v)

    def add(self, vectors: torch.Tensor, bias: torch.Tensor, sign: float = 1.0) -> None:
        """Count rows (n, D) with biases (n,) in (sign = −1: take them out)."""
        v = vectors.double()
        self.gram += sign * (v.T @ v)
        self.total += sign * v.sum(0)
        self.weighted += sign * (bias.double() @ v)

    def replace(self, old: torch.Tensor, new: torch.Tensor, bias: torch.Tensor) -> None:
        """Rows changed from `old` to `new` (n, D), same biases (n,)."""
        self.add(old, bias, -1.0)
        self.add(new, bias)
