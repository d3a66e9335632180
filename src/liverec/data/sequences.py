"""Per-user item sequences from Interactions, for sequence models (SASRec and the like).

Sequence files give each event its position in the line as timestamp and timestamped data gives
unix seconds; either way a user's sequence is their items ordered by (timestamp, array order).
Everything is vectorised over users: one sort, then per-user ranks (no loop per user).
"""

from __future__ import annotations

import numpy as np

from liverec.data.interactions import Interactions
from liverec.errors import LiverecError

PAD = -1  # fills the left of a padded sequence matrix (no item has index -1)


def user_sequences(inter: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Ragged time-ordered sequences: (indptr (num_users + 1,), items (N,)).

    User u's items, oldest first, are `items[indptr[u]:indptr[u + 1]]`; ties in time keep array order.
    """
    ordered = inter.sorted_by_user_time()
    counts = np.bincount(ordered.user, minlength=inter.num_users)
    indptr = np.zeros(inter.num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, ordered.item.astype(np.int64, copy=False)


def last_items(inter: Interactions, length: int) -> np.ndarray:
    """(num_users, length) int64: each user's latest `length` items, oldest first, left-padded with PAD.

    The latest item sits in the last column, so a column's distance from the right edge is the
    item's recency; users without events get a row of PAD.
    """
    if length < 1:
        raise LiverecError(f"sequence length must be >= 1, got {length}")
    indptr, items = user_sequences(inter)
    counts = np.diff(indptr)
    user = np.repeat(np.arange(inter.num_users), counts)  # (N,) owner of each event
    from_end = indptr[user + 1] - 1 - np.arange(items.size)  # 0 = the user's latest event
    keep = from_end < length
    out = np.full((inter.num_users, length), PAD, dtype=np.int64)
    out[user[keep], length - 1 - from_end[keep]] = items[keep]
    return out


def pad_sequences(sequences: list, length: int, num_items: int) -> np.ndarray:
    """(B, length) int64 from item-index sequences (oldest first): the last `length` items of each,
    left-padded with PAD. Raises LiverecError for an empty sequence or an index outside the catalogue."""
    if length < 1:
        raise LiverecError(f"sequence length must be >= 1, got {length}")
    out = np.full((len(sequences), length), PAD, dtype=np.int64)
    for row, seq in enumerate(sequences):  # one row per request; the rows are short and few
        seq = np.asarray(seq, dtype=np.int64).reshape(-1)[-length:]
        if seq.size == 0:
            raise LiverecError(f"sequence {row} is empty: a sequence model needs at least one item")
        bad = (seq < 0) | (seq >= num_items)
        if bad.any():
            raise LiverecError(
                f"sequence {row} holds item index {int(seq[bad][0])}; valid indices are 0..{num_items - 1}"
            )
        out[row, length - seq.size :] = seq
    return out
