"""Interaction containers: RawEvents (as read, raw ids) and Interactions (encoded, CSR-ready)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class RawEvents:
    """Events as a reader returns them, one array entry per event, raw ids.

    `timestamp` is unix seconds, or the position in the user's sequence for sequence files.
    `given_split` holds "train"/"valid"/"test" per event when the source ships its own split.
    `item_titles` maps raw item id -> title when the data set has titles.
    """

    user: np.ndarray  # (N,) raw user ids (int64 or str)
    item: np.ndarray  # (N,) raw item ids
    rating: np.ndarray | None = None  # (N,) float32 explicit rating / weight
    timestamp: np.ndarray | None = None  # (N,) int64
    given_split: np.ndarray | None = None  # (N,) str: "train" | "valid" | "test"
    item_titles: dict = field(default_factory=dict)
    name: str = ""

    def __len__(self) -> int:
        return len(self.user)

    def select(self, mask: np.ndarray) -> RawEvents:
        """Subset of events (boolean mask or index array)."""

        def pick(a):
            return None if a is None else a[mask]

        return RawEvents(
            self.user[mask], self.item[mask], pick(self.rating), pick(self.timestamp),
            pick(self.given_split), self.item_titles, self.name,
        )


@dataclass
class Interactions:
    """Encoded interactions over a fixed (num_users, num_items) id space.

    Arrays are aligned, one entry per interaction. `timestamp` orders events (ties broken by
    array order); `weight` is the confidence / rating when the model uses one.
    """

    user: np.ndarray  # (N,) int64 in [0, num_users)
    item: np.ndarray  # (N,) int64 in [0, num_items)
    num_users: int
    num_items: int
    timestamp: np.ndarray | None = None  # (N,) int64
    weight: np.ndarray | None = None  # (N,) float32

    def __len__(self) -> int:
        return len(self.user)

    def csr(self, weighted: bool = False) -> sp.csr_matrix:
        """(num_users, num_items) CSR matrix; values are 1 (or weights), duplicates summed."""
        data = self.weight if (weighted and self.weight is not None) else np.ones(len(self), np.float32)
        m = sp.csr_matrix(
            (data.astype(np.float32), (self.user, self.item)), shape=(self.num_users, self.num_items)
        )
        m.sum_duplicates()
        return m

    def users_with_interactions(self) -> np.ndarray:
        """Sorted unique user indices that have at least one interaction."""
        return np.unique(self.user)

    def item_counts(self) -> np.ndarray:
        """(num_items,) interaction count per item."""
        return np.bincount(self.item, minlength=self.num_items)

    def select(self, mask: np.ndarray) -> Interactions:
        def pick(a):
            return None if a is None else a[mask]

        return Interactions(
            self.user[mask], self.item[mask], self.num_users, self.num_items,
            pick(self.timestamp), pick(self.weight),
        )

    def sorted_by_user_time(self) -> Interactions:
        """Events ordered by user, then timestamp (stable: ties keep array order)."""
        keys = (self.user,) if self.timestamp is None else (self.timestamp, self.user)
        order = np.lexsort(keys)
        return self.select(order)

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        first = parts[0]

        def cat(name):
            arrs = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrs) else np.concatenate(arrs)

        return Interactions(
            np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]),
            first.num_users, first.num_items, cat("timestamp"), cat("weight"),
        )
