"""Top-k retrieval over item vectors: one protocol, an exact and a FAISS (approximate) backend.

    index = build_index("exact" | "hnsw" | "ivf", item_vectors)
    ids, scores = index.search(queries, k, exclude=[seen items of each query])

Scores are inner products (a model's `user_embeddings() @ item_embeddings().T` ranking). Excluded
items never appear; when fewer than k items remain, the row is padded with id -1 and score -inf.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from liverec.errors import LiverecError
from liverec.index.exact import ExactIndex

INDEX_KINDS = ("exact", "hnsw", "ivf")


class Index(Protocol):
    num_items: int
    dim: int

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> ids (Q, k) int64 and scores (Q, k) float32, best first."""
        ...


def build_index(kind: str, item_vectors: np.ndarray, **options) -> Index:
    """An index of `kind` over (I, D) item vectors; options go to the backend."""
    if kind == "exact":
        return ExactIndex(item_vectors, **options)
    if kind in ("hnsw", "ivf"):
        from liverec.index.faiss_index import FaissIndex  # faiss is an optional extra

        return FaissIndex(item_vectors, kind=kind, **options)
    raise LiverecError(f"unknown index kind {kind!r}; valid: {list(INDEX_KINDS)}")


def recall_per_query(approx: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hits, total) per query: |approx top-k ∩ exact top-k| and |exact top-k| (padding -1 ignored)."""
    if approx.shape[0] != exact.shape[0]:
        raise LiverecError("recall: the two result sets have different query counts")
    hits, total = np.zeros(len(exact), dtype=np.int64), np.zeros(len(exact), dtype=np.int64)
    for q, (a, e) in enumerate(zip(approx, exact, strict=True)):  # a benchmark report, not a hot path
        truth = set(e[e >= 0].tolist())
        hits[q], total[q] = len(truth.intersection(a[a >= 0].tolist())), len(truth)
    return hits, total


def recall_vs_exact(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / |exact top-k| (padding -1 ignored)."""
    hits, total = recall_per_query(approx, exact)
    return float(hits.sum() / total.sum()) if total.sum() else 1.0


__all__ = ["INDEX_KINDS", "ExactIndex", "Index", "build_index", "recall_per_query", "recall_vs_exact"]
