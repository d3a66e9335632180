"""Sparse helpers shared by the models that keep the interaction matrix (EASE, GF-CF, LightGCN)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def binarize(train: sp.spmatrix) -> sp.csr_matrix:
    """A float32 CSR copy of `train` with duplicates merged, explicit zeros dropped, values 1."""
    x = sp.csr_matrix(train, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    x.data[:] = 1.0
    x.sort_indices()
    return x


def degree_normalized(r: sp.csr_matrix) -> sp.csr_matrix:
    """R̃ = D_U^-1/2 R D_I^-1/2 of a binarised (U, I) matrix, float32 CSR with sorted indices.

    The user-item block of LightGCN's Â and GF-CF's normalised matrix; users or items without
    interactions keep zero rows/columns (no division by zero).
    """
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    np.power(du, -0.5, out=du, where=du > 0)
    np.power(di, -0.5, out=di, where=di > 0)
    norm = sp.csr_matrix(sp.diags(du) @ r @ sp.diags(di), dtype=np.float32)
    norm.sort_indices()
    return norm


def torch_csr(
    crow: torch.Tensor | np.ndarray, col: torch.Tensor | np.ndarray,
    values: torch.Tensor | np.ndarray, shape: tuple[int, int],
) -> torch.Tensor:
    """A torch sparse CSR tensor from canonical parts (sorted, in range: invariants not re-checked)."""
    parts = [torch.as_tensor(p) for p in (crow, col, values)]
    parts[0], parts[1] = parts[0].long(), parts[1].long()
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on first use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(*parts, size=shape, check_invariants=False)


def gather_rows(
    indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The CSR rows `rows` (B,) of (indptr, indices), without a loop over rows.

    Returns crow (B + 1,) of the gathered block, and per entry its block row (owner) and column.
    """
    start = indptr[rows]  # (B,)
    lengths = indptr[rows + 1] - start  # (B,)
    crow = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])  # (B + 1,)
    owner = torch.repeat_interleave(torch.arange(rows.shape[0], device=rows.device), lengths)
    # position of each entry in `indices`: its row start + its offset within the row
    pos = torch.arange(owner.shape[0], device=rows.device) - crow[owner] + start[owner]
    return crow, owner, indices[pos]


def take_saved_shapes(module: nn.Module, state_dict: dict[str, Any], prefix: str, names) -> None:
    """Resize data-dependent buffers to their saved shapes before `load_state_dict` copies into them."""
    for name in names:
        saved = state_dict.get(prefix + name)
        if saved is not None:
            own = getattr(module, name)
            setattr(module, name, torch.empty(saved.shape, dtype=own.dtype, device=own.device))
