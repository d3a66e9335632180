"""A growable id space: raw ids -> row indices, where new ids get the next free index.

Lookups are vectorised (a sorted copy of the keys + searchsorted), so a micro-batch of ids is mapped
in one call. Indices never move while the trainer runs; `IdVocab` (sorted raw ids) is produced
only when a version is published, together with the permutation that sorts the rows.
"""

from __future__ import annotations

import numpy as np

from liverec.data.vocab import IdVocab, _parse_int_ids  # the same int-id parsing as IdVocab

_NOT_AN_INT = np.iinfo(np.int64).min


class GrowableIds:
    """Raw ids in index order (`raw[i]` is the id of row i), int64 or str like IdVocab."""

    def __init__(self, vocab: IdVocab) -> None:
        self.raw = np.asarray(vocab.raw)  # (n,) in index order
        self._keys = self.raw  # an IdVocab is already sorted: index = position
        self._rows = np.arange(len(self.raw), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.raw)

    def _as_keys(self, text: np.ndarray) -> np.ndarray:
        if self.raw.dtype.kind in "iu":
            keys = _parse_int_ids(text)
            if (keys == _NOT_AN_INT).any():  # a non-integer id arrives: the space becomes text
                self.raw = self.raw.astype(str)
                order = np.argsort(self.raw, kind="stable")
                self._keys, self._rows = self.raw[order], order.astype(np.int64)
                return text
            return keys
        return text

    def lookup(self, text: np.ndarray) -> np.ndarray:
        """Text ids (n,) -> row indices (n,), -1 for ids not seen yet."""
        keys = self._as_keys(np.asarray(text, dtype=str))
        if not len(self._keys):
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._keys, keys), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == keys, self._rows[pos], -1)

    def add(self, text: np.ndarray) -> np.ndarray:
        """Indices of `text` ids, giving unseen ids new rows (in order of first appearance)."""
        idx = self.lookup(text)
        missing = idx < 0
        if missing.any():
            keys = self._as_keys(np.asarray(text, dtype=str)[missing])
            uniq, first = np.unique(keys, return_index=True)  # sorted
            appearance = np.argsort(first, kind="stable")  # new rows in order of first appearance
            rows = np.empty(len(uniq), dtype=np.int64)
            rows[appearance] = np.arange(len(self.raw), len(self.raw) + len(uniq))
            self.raw = np.concatenate([self.raw, uniq[appearance]])
            keys_dtype = np.result_type(self._keys.dtype, uniq.dtype)  # wider text: no truncation
            self._keys = self._keys.astype(keys_dtype, copy=False)
            at = np.searchsorted(self._keys, uniq)  # uniq is sorted: inserting keeps keys sorted
            self._keys = np.insert(self._keys, at, uniq)
            self._rows = np.insert(self._rows, at, rows)
            idx = self.lookup(text)
        return idx

    def sorted_vocab(self) -> tuple[IdVocab, np.ndarray]:
        """(IdVocab of the sorted ids, perm) with vocab.raw == raw[perm]: row perm[k] -> index k."""
        return IdVocab(self._keys.copy()), self._rows.copy()
