"""Event filters on RawEvents: dedupe, binarize, k-core. Vectorised; the original order is kept."""

from __future__ import annotations

import numpy as np

from liverec.data.interactions import RawEvents
from liverec.errors import LiverecError


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Raw ids (int or str) -> dense codes 0..n-1 and n."""
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniq)


def dedupe(ev: RawEvents, keep: str = "last") -> RawEvents:
    """One event per (user, item) pair: the latest by timestamp ("last") or the earliest ("first").

    Without timestamps, or between events with the same timestamp, array order decides.
    """
    if keep not in ("last", "first"):
        raise LiverecError(f"dedupe keep={keep!r}: use 'last' or 'first'")
    if len(ev) == 0:
        return ev
    user, _ = _codes(ev.user)
    item, n_items = _codes(ev.item)
    pair = user * n_items + item
    position = np.arange(len(ev))
    keys = (position, pair) if ev.timestamp is None else (position, ev.timestamp, pair)
    order = np.lexsort(keys)  # grouped by pair, each group in (time, position) order
    sorted_pair = pair[order]
    if keep == "last":
        boundary = np.r_[sorted_pair[1:] != sorted_pair[:-1], True]
    else:
        boundary = np.r_[True, sorted_pair[1:] != sorted_pair[:-1]]
    kept = np.sort(order[boundary])
    return ev if len(kept) == len(ev) else ev.select(kept)


def binarize(ev: RawEvents, min_rating: float) -> RawEvents:
    """Keep events with rating >= min_rating (ratings are kept, as weights for models that use them)."""
    if ev.rating is None:
        raise LiverecError(
            f"min_rating={min_rating} needs ratings, but data set {ev.name or '(unnamed)'} has none; "
            "drop min_rating"
        )
    return ev.select(ev.rating >= min_rating)


def k_core(ev: RawEvents, min_user: int = 0, min_item: int = 0) -> RawEvents:
    """Drop users with < min_user and items with < min_item events, repeated until stable."""
    if min_user <= 1 and min_item <= 1:
        return ev
    user, n_users = _codes(ev.user)
    item, n_items = _codes(ev.item)
    alive = np.ones(len(ev), dtype=bool)
    while True:  # each round only removes; a handful of rounds in practice
        user_count = np.bincount(user[alive], minlength=n_users)
        item_count = np.bincount(item[alive], minlength=n_items)
        ok = alive & (user_count[user] >= min_user) & (item_count[item] >= min_item)
        if ok.sum() == alive.sum():
            break
        alive = ok
    return ev if alive.all() else ev.select(alive)
