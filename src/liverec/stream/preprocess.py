"""Stream preprocessing of one micro-batch, with array operations only: dedupe and burst filtering.

- dedupe: the same (user, item, type) again within `window` seconds of the previous copy is a
  double-send (client retry, double click), not new evidence;
- bursts: a user sending more than `max_rate` events per second within the batch is a bot or a
  runaway client; all of that user's events in the batch are dropped.

Both look inside the batch only (a micro-batch spans the recent past), so they cost O(n log n) per
batch and keep no state between batches.
"""

from __future__ import annotations

import numpy as np

from liverec.stream.schema import EventBatch


def duplicate_mask(batch: EventBatch, window: float) -> np.ndarray:
    """(n,) True for events repeating the same (user, item, type) within `window` s of the last copy."""
    n = len(batch)
    if n < 2 or window <= 0:
        return np.zeros(n, dtype=bool)
    order = np.lexsort((batch.timestamp, batch.type, batch.item, batch.user))  # by key, then time
    u, i, t, s = batch.user[order], batch.item[order], batch.type[order], batch.timestamp[order]
    same_key = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])
    repeat = np.concatenate([[False], same_key & (s[1:] - s[:-1] < window)])
    out = np.zeros(n, dtype=bool)
    out[order] = repeat
    return out


def burst_mask(batch: EventBatch, max_rate: float) -> np.ndarray:
    """(n,) True for every event of users exceeding `max_rate` events/s over their span in the batch
    (the span counts as at least one second, so a user's first `max_rate` events always pass)."""
    n = len(batch)
    if n == 0 or max_rate <= 0:
        return np.zeros(n, dtype=bool)
    users, row = np.unique(batch.user, return_inverse=True)
    count = np.bincount(row, minlength=len(users))
    first = np.full(len(users), np.inf)
    last = np.full(len(users), -np.inf)
    np.minimum.at(first, row, batch.timestamp)
    np.maximum.at(last, row, batch.timestamp)
    rate = count / np.maximum(last - first, 1.0)  # (users,)
    return (rate > max_rate)[row]
