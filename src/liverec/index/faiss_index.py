"""Approximate inner-product search with FAISS (HNSW graph or IVF inverted lists).

Seen-item exclusion cannot be pushed into the ANN search, so each query over-fetches k + (its number
of excluded items) candidates, drops the excluded ones, and re-searches with a larger fetch for the
rare rows still short of k: no excluded item is ever returned and no row is silently cut short.
"""

from __future__ import annotations

import numpy as np

from liverec.errors import LiverecError
from liverec.index.exact import ExactIndex, check_queries, check_vectors, exclusion_pairs

# efSearch (HNSW) / nprobe (IVF) values `tune` tries, cheapest first
HNSW_EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
IVF_NPROBE = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _faiss():
    try:
        import faiss
    except ImportError as err:  # optional extra
        raise LiverecError("the FAISS index needs faiss-cpu: pip install 'liverec[serve]'") from err
    return faiss


class FaissIndex:
    """`kind="hnsw"` (graph; ef_search trades speed for recall) or `"ivf"` (nlist clusters, nprobe)."""

    def __init__(
        self, item_vectors: np.ndarray, kind: str = "hnsw", hnsw_m: int = 32,
        ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        faiss = _faiss()
        vectors = check_vectors(item_vectors, "item vectors")
        self.num_items, self.dim = vectors.shape
        self.kind = kind
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.add(vectors)
            index.hnsw.efSearch = ef_search
        elif kind == "ivf":
            nlist = nlist or max(1, min(self.num_items // 39, int(4 * np.sqrt(self.num_items))))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)  # faiss k-means is seeded (fixed default seed): reproducible
            index.add(vectors)
            index.nprobe = min(nprobe, nlist)
        else:
            raise LiverecError(f"faiss index kind must be 'hnsw' or 'ivf', got {kind!r}")
        self.index = index
        self._quantizer = quantizer if kind == "ivf" else None  # IVF does not own its quantizer

    @classmethod
    def from_file(
        cls, path, kind: str, ef_search: int = 128, nprobe: int = 16
    ) -> FaissIndex:
        """Read an index written by `faiss.write_index` (FAISS's own binary format, not pickle)."""
        faiss = _faiss()
        obj = cls.__new__(cls)
        obj.index = faiss.read_index(str(path))
        obj.kind, obj._quantizer = kind, None
        obj.num_items, obj.dim = obj.index.ntotal, obj.index.d
        if kind == "hnsw":
            obj.index.hnsw.efSearch = ef_search
        else:
            obj.index.nprobe = min(nprobe, obj.index.nlist)
        return obj

    @property
    def search_params(self) -> dict[str, int]:
        """The speed/recall knob as `from_file` takes it: {"ef_search": n} or {"nprobe": n}."""
        if self.kind == "hnsw":
            return {"ef_search": int(self.index.hnsw.efSearch)}
        return {"nprobe": int(self.index.nprobe)}

    def tune(
        self, item_vectors: np.ndarray, queries: np.ndarray, k: int = 10, target_recall: float = 0.95
    ) -> float:
        """Set efSearch (HNSW) or nprobe (IVF) to the smallest value whose recall@k against exact
        search on `queries` (e.g. a sample of user vectors) reaches `target_recall` with margin: two
        standard errors of the per-query recall, so that other users' queries reach it too (a
        sample of 1,000 users measured 0.952 where 2,000 others got 0.948 without the margin); the
        largest value tried if none does. Returns the recall on `queries` (the setting is in
        `search_params`)."""
        from liverec.index import recall_per_query

        if not 0 < target_recall <= 1:
            raise LiverecError(f"target recall must be in (0, 1], got {target_recall}")
        q = check_queries(queries, k, self.dim)
        # batches of 64 queries keep the exact (64, I) score block small even for millions of items
        truth, _ = ExactIndex(item_vectors, batch_size=64).search(q, k)
        values = HNSW_EF_SEARCH if self.kind == "hnsw" else [n for n in IVF_NPROBE if n <= self.index.nlist]
        for value in values:
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = value
            else:
                self.index.nprobe = value
            hits, total = recall_per_query(self.search(q, k)[0], truth)
            recall = float(hits.sum() / total.sum()) if total.sum() else 1.0  # as recall_vs_exact
            per_query = hits / np.maximum(total, 1)
            margin = 2 * float(per_query.std()) / np.sqrt(len(per_query))
            if recall - margin >= target_recall:
                break
        return recall

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = check_queries(queries, k, self.dim)
        num_q = q.shape[0]
        rows, items = exclusion_pairs(exclude, num_q, self.num_items)
        excluded_keys = np.unique(rows * self.num_items + items)  # sorted (row, item) keys
        per_row = np.bincount(rows, minlength=num_q)
        ids = np.full((num_q, k), -1, dtype=np.int64)
        scores = np.full((num_q, k), -np.inf, dtype=np.float32)
        todo = np.arange(num_q)
        fetch = np.minimum(k + per_row, self.num_items)
        while todo.size:
            n = int(fetch[todo].max())
            dist, found = self.index.search(q[todo], n)  # (T, n) each, -1 where nothing found
            keys = todo[:, None] * self.num_items + found
            pos = np.searchsorted(excluded_keys, keys)
            hit = excluded_keys[np.minimum(pos, max(excluded_keys.size - 1, 0))] == keys \
                if excluded_keys.size else np.zeros(found.shape, dtype=bool)
            good = (found >= 0) & ~hit
            # keep the good candidates in score order, padded with -1
            order = np.argsort(~good, axis=1, kind="stable")[:, :k]
            kept_ids = np.take_along_axis(np.where(good, found, -1), order, axis=1)
            kept_scores = np.take_along_axis(np.where(good, dist, -np.inf), order, axis=1)
            width = kept_ids.shape[1]
            ids[todo, :width], scores[todo, :width] = kept_ids, kept_scores.astype(np.float32)
            short = (good.sum(axis=1) < k) & (n < self.num_items)
            todo = todo[short]
            fetch[todo] = np.minimum(2 * n, self.num_items)  # rare: ANN missed too many; widen
        return ids, scores
