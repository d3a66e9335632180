"""Weighted least-squares fold-in: new vectors for some rows of one side, the other side fixed.

For a row x (a user, or an item) with interactions e (confidence c_e, the other side's vector f_e):

    min_x  Σ_e c_e (x·f_e + β_e − 1)²  +  α0 Σ_j (x·f_j + β_j)²  +  λ (n_x + α0 N)^ν ||x||²

where the middle sum runs over every row j of the fixed side (iALS's unobserved term) and β is the
item bias of MF models (0 for iALS). Setting the gradient to zero gives

    (α0 FᵀF + Σ_e c_e f_e f_eᵀ + λ_x I) x = Σ_e c_e (1 − β_e) f_e + const

solved for a whole batch of rows at once with the batched Cholesky or conjugate-gradient solvers of
`liverec.models.ials` (confidence enters as √c_e · f_e, since (√c f)(√c f)ᵀ = c f fᵀ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liverec.models.ials import _conjugate_gradient, _exact_solve  # the iALS batch solvers


@dataclass
class Rows:
    """The interactions of the n rows to solve, flattened (nnz entries)."""

    owner: torch.Tensor  # (nnz,) int64: which of the n rows each entry belongs to
    other: torch.Tensor  # (nnz,) int64: index of the fixed-side row (f_e)
    confidence: torch.Tensor  # (nnz,) float32 c_e > 0
    target: torch.Tensor  # (nnz,) float32 1 − β_e
    count: torch.Tensor  # (n,) float32 interactions per row (n_x of the penalty)


def solve_rows(
    fixed: torch.Tensor, rows: Rows, start: torch.Tensor, const: torch.Tensor,
    l2: float, alpha0: float, exponent: float, cg_steps: int,
) -> torch.Tensor:
    """New vectors (n, D) for the rows; `start` (n, D) warm-starts CG, `const` (n or 1, D)."""
    n, dim = start.shape
    if n == 0:
        return start
    gram = alpha0 * (fixed.T @ fixed)  # (D, D)
    support = (rows.count + alpha0 * fixed.shape[0]).clamp_min(1.0)  # (n,)
    penalty = l2 * support.pow(exponent)  # (n,)
    vecs = fixed[rows.other]  # (nnz, D)
    rhs = const.expand(n, dim).clone().index_add_(
        0, rows.owner, vecs * (rows.confidence * rows.target).unsqueeze(1)
    )  # (n, D)
    scaled = vecs * rows.confidence.sqrt().unsqueeze(1)  # (nnz, D): √c f
    if cg_steps == 0:
        return _exact_solve(gram, penalty, rows.owner, scaled, rhs)
    return _conjugate_gradient(gram, penalty, rows.owner, scaled, rhs, start, cg_steps)
