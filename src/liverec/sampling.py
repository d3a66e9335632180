"""Negative samplers: uniform, popularity, in-batch and hard negatives, excluding each user's positives.

Every sampler is built from the (num_users, num_items) matrix of positives and draws with an
explicit `np.random.Generator`, so a seed fully determines the negatives. All work is vectorised:

1. draw candidates for the whole batch at once;
2. find the ones that are positives by encoding (user, item) as `user * num_items + item` and
   looking the keys up with `np.searchsorted` in the sorted keys of the positives;
3. redraw only the colliding entries, for a few rounds;
4. for the rare entries still colliding (users who own most of the catalogue), draw exactly from the
   user's complement. A user who owns every item has no negative: `LiverecError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from liverec.errors import LiverecError

ScoreFn = Callable[[np.ndarray, np.ndarray], Any]  # users (B,), cand (B, P) -> (B, P) np/torch


class NegativeSampler:
    """Base class: positive-key lookup, rejection rounds and the exact fallback.

    Subclasses implement `_draw(users (B,), n, rng, pos_items) -> (B, n)` (with possible positives)
    and may pass item weights to the exact fallback through `_weights`.
    """

    max_rounds: ClassVar[int] = 8  # rejection rounds before the exact fallback
    _weights: np.ndarray | None = None  # (num_items,) sampling weights; None = uniform

    def __init__(self, positives: sp.spmatrix) -> None:
        csr = sp.csr_matrix(positives, copy=True)
        csr.sum_duplicates()  # canonical form: sorted, unique columns per row -> sorted keys
        self.num_users, self.num_items = csr.shape
        self._indptr = csr.indptr.astype(np.int64)
        self._indices = csr.indices.astype(np.int64)
        self._num_positives = np.diff(self._indptr)
        rows = np.repeat(np.arange(self.num_users, dtype=np.int64), self._num_positives)
        self._keys = rows * self.num_items + self._indices  # (nnz,) sorted

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is a positive; `users` and `items` broadcast."""
        keys = np.asarray(users, dtype=np.int64) * self.num_items + np.asarray(items, dtype=np.int64)
        if self._keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.searchsorted(self._keys, keys)
        np.minimum(pos, self._keys.size - 1, out=pos)
        return self._keys[pos] == keys

    def sample(
        self, users: np.ndarray, n: int, rng: np.random.Generator, pos_items: np.ndarray | None = None
    ) -> np.ndarray:
        """(B, n) int64 negatives for `users` (B,): never one of the user's positives."""
        users = self._check(users, n, rng)
        cand = self._draw(users, n, rng, pos_items)
        return self._reject(users, cand, rng, pos_items)

    def sample_shared(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) int64 negatives shared by a whole batch, drawn from the sampler's item distribution.

        Collisions with a row's positives are not removed here (they differ per row): mask them
        with `shared_collisions(users, shared)`.
        """
        if not isinstance(rng, np.random.Generator):
            raise LiverecError("pass rng=np.random.default_rng(seed): samplers take an explicit Generator")
        if n < 0:
            raise LiverecError(f"number of negatives must be >= 0, got {n}")
        return self._draw(np.zeros(1, dtype=np.int64), n, rng, None)[0]

    def shared_collisions(self, users: np.ndarray, shared: np.ndarray) -> np.ndarray:
        """(B, N) bool: whether shared[j] is one of users[b]'s positives.

        Equals `is_positive(users[:, None], shared[None, :])` but costs O(B·degree + B·N) instead of
        B·N binary searches: each row's positives are looked up in an item -> slot table.
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        uniq, inverse = np.unique(np.asarray(shared, dtype=np.int64), return_inverse=True)
        slot = np.full(self.num_items, -1, dtype=np.int64)
        slot[uniq] = np.arange(uniq.size)
        lens = self._num_positives[users]
        items = self._indices[_segment_positions(self._indptr[users], lens)]
        rows = np.repeat(np.arange(users.size), lens)
        hit = slot[items]
        found = hit >= 0
        mask = np.zeros((users.size, uniq.size), dtype=bool)
        mask[rows[found], hit[found]] = True
        return mask[:, inverse]

    # -- internals ---------------------------------------------------------------------------

    def _draw(
        self, users: np.ndarray, n: int, rng: np.random.Generator, pos_items: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError

    def _check(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(rng, np.random.Generator):
            raise LiverecError("pass rng=np.random.default_rng(seed): samplers take an explicit Generator")
        if n < 0:
            raise LiverecError(f"number of negatives must be >= 0, got {n}")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if users.size and (users.min() < 0 or users.max() >= self.num_users):
            raise LiverecError(f"user indices must lie in [0, {self.num_users}); check the id space")
        full = users[self._num_positives[users] >= self.num_items]
        if full.size and n > 0:
            raise LiverecError(
                f"user {int(full[0])} interacted with all {self.num_items} items: no negative to sample; "
                "filter such users out before training"
            )
        return users

    def _reject(
        self, users: np.ndarray, cand: np.ndarray, rng: np.random.Generator,
        pos_items: np.ndarray | None,
    ) -> np.ndarray:
        """Redraw colliding entries for a few rounds, then fix what is left exactly."""
        bad = self.is_positive(users[:, None], cand)
        for _ in range(self.max_rounds):
            rows, cols = np.nonzero(bad)
            if rows.size == 0:
                return cand
            fresh = self._draw(users[rows], 1, rng, pos_items)[:, 0]
            cand[rows, cols] = fresh
            bad[rows, cols] = self.is_positive(users[rows], fresh)
        rows, cols = np.nonzero(bad)
        if rows.size:
            cand[rows, cols] = self._fallback(users, rows, rng, pos_items)
        return cand

    def _fallback(
        self, users: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
        pos_items: np.ndarray | None,
    ) -> np.ndarray:
        return self._exact(users[rows], rng)

    def _exact(self, entry_users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One exact draw per entry from the user's negatives, weighted by `_weights`.

        Builds a dense negative mask only for the distinct users involved, in chunks, so memory
        stays bounded even when many users need the fallback.
        """
        out = np.empty(entry_users.size, dtype=np.int64)
        uniq, inv = np.unique(entry_users, return_inverse=True)
        step = max(1, (1 << 22) // max(self.num_items, 1))
        for s in range(0, uniq.size, step):
            chunk = uniq[s : s + step]
            neg = np.ones((chunk.size, self.num_items), dtype=bool)
            lens = self._num_positives[chunk]
            local = np.repeat(np.arange(chunk.size), lens)
            neg[local, self._indices[_segment_positions(self._indptr[chunk], lens)]] = False
            row_of, items = np.nonzero(neg)  # negatives, grouped by row, sorted
            count = np.bincount(row_of, minlength=chunk.size)
            start = np.cumsum(count) - count
            sel = np.flatnonzero((inv >= s) & (inv < s + chunk.size))
            r = inv[sel] - s
            u = rng.random(sel.size)
            pick = start[r] + np.minimum((u * count[r]).astype(np.int64), count[r] - 1)
            if self._weights is not None:
                cum = np.cumsum(self._weights[items])
                lo = np.where(start[r] > 0, cum[np.maximum(start[r] - 1, 0)], 0.0)
                hi = cum[start[r] + count[r] - 1]
                weighted = np.searchsorted(cum, lo + u * (hi - lo), side="right")
                # clip to the row's own segment so rounding can never pick another row's item
                weighted = np.clip(weighted, start[r], start[r] + count[r] - 1)
                pick = np.where(hi > lo, weighted, pick)  # all-zero weights: uniform instead
            out[sel] = items[pick]
        return out


def _segment_positions(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(start, start + len) for each segment, without a Python loop."""
    total = int(lens.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts, lens) + offsets


class UniformSampler(NegativeSampler):
    """Items drawn uniformly from those the user has no positive for."""

    def _draw(self, users, n, rng, pos_items):
        return rng.integers(0, self.num_items, size=(users.size, n), dtype=np.int64)


class PopularitySampler(NegativeSampler):
    """Items drawn with probability proportional to `count ** alpha` (word2vec's 0.75 by default).

    `counts` defaults to the number of users with a positive for the item. Items with zero weight
    are never drawn, unless they are all a user has left (then uniformly among them).
    """

    def __init__(
        self, positives: sp.spmatrix, alpha: float = 0.75, counts: np.ndarray | None = None
    ) -> None:
        super().__init__(positives)
        if counts is None:
            counts = np.bincount(self._indices, minlength=self.num_items)
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (self.num_items,) or np.any(counts < 0):
            raise LiverecError(f"counts must be {self.num_items} non-negative numbers")
        self.alpha = alpha
        self._weights = counts**alpha
        self._cdf = np.cumsum(self._weights)
        if self.num_items and self._cdf[-1] <= 0:
            raise LiverecError("all popularity weights are zero: no item can be sampled")

    def _draw(self, users, n, rng, pos_items):
        u = rng.random((users.size, n)) * self._cdf[-1]
        items = np.searchsorted(self._cdf, u, side="right")  # zero-weight items own no interval
        return np.minimum(items, self.num_items - 1).astype(np.int64, copy=False)


class InBatchSampler(NegativeSampler):
    """Negatives drawn (with replacement) from the batch's positive items `pos_items`.

    Entries that keep hitting the user's own positives are redrawn among the batch items that are
    negatives for this user; if the batch holds none, uniformly from the whole catalogue.
    """

    def sample(self, users, n, rng, pos_items=None):
        if pos_items is None or len(pos_items) == 0:
            raise LiverecError("InBatchSampler.sample needs pos_items: the batch's positive items")
        pos_items = np.asarray(pos_items, dtype=np.int64).reshape(-1)
        return super().sample(users, n, rng, pos_items)

    def _draw(self, users, n, rng, pos_items):
        return pos_items[rng.integers(0, pos_items.size, size=(users.size, n))]

    def _fallback(self, users, rows, rng, pos_items):
        """Exact draw among the batch items that are negatives for the user, else uniform."""
        brows, inv = np.unique(rows, return_inverse=True)
        valid = ~self.is_positive(users[brows][:, None], pos_items[None, :])  # (R, P)
        count = valid.sum(axis=1)
        cols = np.nonzero(valid)[1]  # grouped by row
        start = np.cumsum(count) - count
        c = count[inv]
        pick = start[inv] + np.minimum((rng.random(rows.size) * c).astype(np.int64), c - 1)
        out = np.empty(rows.size, dtype=np.int64)
        has = c > 0
        out[has] = pos_items[cols[pick[has]]]
        if not np.all(has):
            out[~has] = self._exact(users[rows[~has]], rng)
        return out


class HardNegativeSampler(UniformSampler):
    """Top-`n` scored items of a uniform candidate pool of `pool_size` negatives per user.

    `score_fn(users (B,), cand (B, P))` returns (B, P) scores as numpy or torch (typically the
    model being trained, under `torch.no_grad()`); the result is ordered by decreasing score.
    """

    def __init__(self, positives: sp.spmatrix, pool_size: int = 64, score_fn: ScoreFn | None = None) -> None:
        super().__init__(positives)
        if pool_size <= 0:
            raise LiverecError(f"pool_size must be positive, got {pool_size}")
        if score_fn is None:
            raise LiverecError("HardNegativeSampler needs score_fn(users, candidates) -> scores")
        self.pool_size = pool_size
        self.score_fn = score_fn

    def sample(self, users, n, rng, pos_items=None):
        if n > self.pool_size:
            raise LiverecError(f"asked for {n} hard negatives from a pool of {self.pool_size}")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        pool = super().sample(users, self.pool_size, rng)  # (B, P)
        scores = self.score_fn(users, pool)
        if hasattr(scores, "detach"):  # torch tensor
            scores = scores.detach().float().cpu().numpy()
        scores = np.array(scores, dtype=np.float64)  # a copy: repeats are overwritten below
        if scores.shape != pool.shape:
            raise LiverecError(f"score_fn returned shape {scores.shape}, expected {pool.shape}")
        # the pool is drawn with replacement: rank repeats last so the top n are distinct items
        by_item = np.argsort(pool, axis=1, kind="stable")
        sorted_pool = np.take_along_axis(pool, by_item, axis=1)
        repeat = np.zeros(pool.shape, dtype=bool)
        repeat[:, 1:] = sorted_pool[:, 1:] == sorted_pool[:, :-1]
        is_repeat = np.empty_like(repeat)
        np.put_along_axis(is_repeat, by_item, repeat, axis=1)
        scores[is_repeat] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(pool, order, axis=1)
