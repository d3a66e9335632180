"""Top-k ranking metrics as pure functions of a hit matrix (formulas in docs/metrics.md).

`hits` (U, K) bool: row = user, column = position in the user's top-K list (rank = column + 1),
True where that item is relevant. `n_relevant` (U,): how many relevant items the user has.
Each metric returns per-user values at cut-off `k` (default: all K columns), as float64 numpy
for numpy input and as float64 torch (same device) for torch input. Users with no relevant item
score 0 on every metric.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from liverec.errors import LiverecError

Array = np.ndarray | torch.Tensor


def _prepare(hits: Array, n_relevant: Array, k: int | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Torch views of the first k columns and float64 n_relevant; remembers the input kind."""
    was_numpy = not isinstance(hits, torch.Tensor)
    h = torch.as_tensor(np.asarray(hits, dtype=bool)) if was_numpy else hits.bool()
    if h.dim() != 2:
        raise LiverecError(f"hits must be a (users, K) matrix, got shape {tuple(h.shape)}")
    k = h.shape[1] if k is None else k
    if not 0 < k <= h.shape[1]:
        raise LiverecError(f"cut-off k={k} must lie in [1, {h.shape[1]}] (the columns of hits)")
    n = torch.as_tensor(np.asarray(n_relevant) if was_numpy else n_relevant, device=h.device)
    return h[:, :k], n.to(torch.float64).reshape(-1), was_numpy


def _out(values: torch.Tensor, was_numpy: bool) -> Array:
    return values.cpu().numpy() if was_numpy else values


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    """1 / log2(rank + 1) for rank = 1..k."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))


def recall_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """#hits in the top k / n_relevant."""
    h, n, np_in = _prepare(hits, n_relevant, k)
    return _out(_safe_div(h.sum(1, dtype=torch.float64), n), np_in)


def precision_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """#hits in the top k / k."""
    h, n, np_in = _prepare(hits, n_relevant, k)
    return _out(torch.where(n > 0, h.sum(1, dtype=torch.float64) / h.shape[1], 0.0), np_in)


def hit_rate_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """1 if any of the top k is relevant, else 0."""
    h, n, np_in = _prepare(hits, n_relevant, k)
    return _out((h.any(1) & (n > 0)).to(torch.float64), np_in)


def ndcg_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """DCG / IDCG with binary gains, discount 1/log2(rank+1), IDCG over min(k, n_relevant) hits."""
    h, n, np_in = _prepare(hits, n_relevant, k)
    disc = _discounts(h.shape[1], h.device)  # (k,)
    dcg = (h.to(torch.float64) * disc).sum(1)
    ideal_cum = torch.cat([disc.new_zeros(1), torch.cumsum(disc, 0)])  # ideal DCG of 0..k hits
    idcg = ideal_cum[n.clamp(0, h.shape[1]).long()]
    return _out(_safe_div(dcg, idcg), np_in)


def mrr_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """1 / rank of the first relevant item within the top k, else 0."""
    h, _, np_in = _prepare(hits, n_relevant, k)
    first = h.to(torch.int8).argmax(1)  # first True (0 when none, masked below)
    rr = 1.0 / (first.to(torch.float64) + 1.0)
    return _out(torch.where(h.any(1), rr, 0.0), np_in)


def map_at_k(hits: Array, n_relevant: Array, k: int | None = None) -> Array:
    """Sum over hit ranks r <= k of precision@r, divided by min(k, n_relevant)."""
    h, n, np_in = _prepare(hits, n_relevant, k)
    hf = h.to(torch.float64)
    ranks = torch.arange(1, h.shape[1] + 1, dtype=torch.float64, device=h.device)
    prec_at_r = torch.cumsum(hf, 1) / ranks
    return _out(_safe_div((prec_at_r * hf).sum(1), n.clamp(max=h.shape[1])), np_in)


def item_coverage(topk_items: Array, num_items: int) -> float:
    """Fraction of the catalogue that appears in at least one top-k list."""
    if num_items <= 0:
        raise LiverecError("num_items must be positive")
    t = topk_items if isinstance(topk_items, torch.Tensor) else torch.as_tensor(np.asarray(topk_items))
    seen = torch.zeros(num_items, dtype=torch.bool, device=t.device)
    seen[t.reshape(-1).long()] = True  # a scatter: much cheaper than torch.unique's sort
    return float(seen.sum()) / num_items


# Metric name (reported as f"{name}@{k}") -> per-user function.
METRICS: dict[str, Callable[..., Array]] = {
    "Recall": recall_at_k,
    "NDCG": ndcg_at_k,
    "HR": hit_rate_at_k,
    "MRR": mrr_at_k,
    "Precision": precision_at_k,
    "MAP": map_at_k,
}
