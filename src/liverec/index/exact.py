"""Exact top-k by batched matmul + top-k; excluded items are masked before the top-k."""

from __future__ import annotations

import numpy as np
import torch

from liverec.errors import LiverecError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_vectors(vectors: np.ndarray, what: str) -> np.ndarray:
    """A finite 2-D float32 array, or a clear error."""
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise LiverecError(f"{what} must be a 2-D array (n, d) with d >= 1, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise LiverecError(f"{what} contain NaN or infinite values")
    return arr


def check_queries(queries: np.ndarray, k: int, dim: int) -> np.ndarray:
    """Validated (Q, dim) float32 queries for a top-`k` search, or a clear error."""
    if not isinstance(k, int | np.integer) or k <= 0:
        raise LiverecError(f"k must be a positive integer, got {k!r}")
    q = check_vectors(queries, "queries")
    if q.shape[1] != dim:
        raise LiverecError(f"queries have dimension {q.shape[1]}, the index {dim}")
    return q


def exclusion_pairs(exclude: list[np.ndarray] | None, num_queries: int, num_items: int):
    """Flattened (row, item) pairs of the per-query exclusion lists (ids outside the catalogue dropped)."""
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(exclude) != num_queries:
        raise LiverecError(f"exclude has {len(exclude)} lists for {num_queries} queries")
    lens = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=num_queries)
    items = (np.concatenate([np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude])
             if lens.sum() else np.zeros(0, np.int64))
    rows = np.repeat(np.arange(num_queries, dtype=np.int64), lens)
    keep = (items >= 0) & (items < num_items)
    return rows[keep], items[keep]


class ExactIndex:
    """Brute-force inner-product search; `dtype` float16/bfloat16 halves memory (scores in float32)."""

    def __init__(self, item_vectors: np.ndarray, dtype: str = "float32", batch_size: int = 1024) -> None:
        if dtype not in _DTYPES:
            raise LiverecError(f"exact index dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        vectors = check_vectors(item_vectors, "item vectors")
        self.num_items, self.dim = vectors.shape
        self.dtype, self.batch_size = dtype, batch_size
        self.items = torch.from_numpy(vectors).to(_DTYPES[dtype])  # (I, D)

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = check_queries(queries, k, self.dim)
        rows, items = exclusion_pairs(exclude, q.shape[0], self.num_items)
        kk = min(k, self.num_items)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        for start in range(0, q.shape[0], self.batch_size):
            stop = min(start + self.batch_size, q.shape[0])
            block = torch.from_numpy(q[start:stop]).to(self.items.dtype) @ self.items.T  # (B, I)
            block = block.float()
            sel = (rows >= start) & (rows < stop)
            block[torch.from_numpy(rows[sel] - start), torch.from_numpy(items[sel])] = -torch.inf
            top_scores, top_ids = torch.topk(block, kk, dim=1)
            valid = torch.isfinite(top_scores)
            ids[start:stop, :kk] = torch.where(valid, top_ids, -1).numpy()
            scores[start:stop, :kk] = top_scores.numpy()
        return ids, scores
