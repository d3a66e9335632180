"""Id bookkeeping of the online trainer, all vectorised per micro-batch.

- `GrowableIds`: raw ids -> row indices, where new ids get the next free index. Lookups use a
  sorted copy of the keys + searchsorted, so a micro-batch of ids is mapped in one call. Indices
  move only when expired rows are removed (`keep`); `IdVocab` (sorted raw ids) is produced when a
  version is published, together with the permutation that sorts the rows.
- `KeyTable`: per-id numbers for ids that have no model row (frequency-filter counts, sessions),
  from which rows can also be dropped; saved as arrays with the online state.
- `occurrence`: the running count of each id within a batch (1 for its first event, 2, ...).
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

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where `mask` is False; the kept rows are renumbered 0.. in their order."""
        self.raw = self.raw[mask]
        order = np.argsort(self.raw, kind="stable")
        self._keys, self._rows = self.raw[order], order.astype(np.int64)

    def sorted_vocab(self) -> tuple[IdVocab, np.ndarray]:
        """(IdVocab of the sorted ids, perm) with vocab.raw == raw[perm]: row perm[k] -> index k."""
        return IdVocab(self._keys.copy()), self._rows.copy()


def occurrence(keys: np.ndarray) -> np.ndarray:
    """(n,) int64: 1 for the first event of each key in the batch, 2 for its second, ..."""
    n = len(keys)
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # grouped by key, arrival order within a key
    grouped = inverse[order]
    first = np.r_[True, grouped[1:] != grouped[:-1]] if n else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # position of the group's first
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - start + 1
    return out


class KeyTable:
    """Text ids (kept sorted) with numeric columns; ids can be added and dropped in bulk."""

    def __init__(self, columns: dict[str, np.ndarray], keys: np.ndarray | None = None) -> None:
        self.keys = np.asarray(keys if keys is not None else np.zeros(0, dtype=str), dtype=str)
        self.columns = columns  # name -> (len(keys),) array, aligned with keys

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) per id; position is only meaningful where found."""
        if not len(self.keys):
            return np.zeros(len(text), np.int64), np.zeros(len(text), bool)
        pos = np.clip(np.searchsorted(self.keys, text), 0, len(self.keys) - 1)
        return pos, self.keys[pos] == text

    def get(self, text: np.ndarray, defaults: dict[str, float]) -> dict[str, np.ndarray]:
        """The columns named in `defaults` for each id; the default for ids not in the table."""
        pos, found = self.find(text)
        return {name: np.where(found, self.columns[name][pos] if len(self.keys) else default, default)
                .astype(self.columns[name].dtype) for name, default in defaults.items()}

    def put(self, unique_text: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Set the columns of `unique_text` (no repeats), adding the ids the table lacks."""
        pos, found = self.find(unique_text)
        for name, column in self.columns.items():
            column[pos[found]] = values[name][found]
        new = ~found
        if new.any():
            keys = np.concatenate([self.keys, unique_text[new]])
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            for name, column in self.columns.items():
                self.columns[name] = np.concatenate([column, values[name][new].astype(column.dtype)])[order]

    def keep(self, mask: np.ndarray) -> None:
        self.keys = self.keys[mask]
        self.columns = {name: column[mask] for name, column in self.columns.items()}

    def drop(self, text: np.ndarray) -> None:
        """Remove these ids (those absent are ignored)."""
        pos, found = self.find(np.asarray(text, dtype=str))
        mask = np.ones(len(self.keys), bool)
        mask[pos[found]] = False
        self.keep(mask)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The table as named arrays for safetensors (ids as a (n, width) uint8 matrix of UTF-8)."""
        encoded = np.char.encode(self.keys, "utf-8") if len(self.keys) else np.zeros(0, "S1")
        width = max(encoded.dtype.itemsize, 1)
        out = {f"{prefix}.keys": encoded.astype(f"S{width}").view(np.uint8).reshape(len(encoded), width)}
        out.update({f"{prefix}.{name}": column for name, column in self.columns.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, columns: dict[str, np.ndarray]) -> KeyTable:
        """The table saved by `arrays`, or an empty one with `columns` when it was not saved."""
        if f"{prefix}.keys" not in arrays:
            return cls(columns)
        raw = np.ascontiguousarray(arrays[f"{prefix}.keys"])
        keys = np.char.decode(raw.view(f"S{raw.shape[1]}").ravel(), "utf-8") if len(raw) else None
        return cls({name: arrays[f"{prefix}.{name}"] for name in columns}, keys)


def pending_table() -> KeyTable:
    """Ids waiting to enter the model: events seen so far and the event time of the last one."""
    return KeyTable({"count": np.zeros(0, np.int64), "last": np.zeros(0)})


def admit(ids: GrowableIds, pending: KeyTable, text: np.ndarray, timestamp: np.ndarray,
          min_count: int) -> np.ndarray:
    """(n,) True where the event's id is in the model or reaches `min_count` events with it (the
    frequency filter); counts the other ids' events in `pending`, across batches."""
    admitted = ids.lookup(text) >= 0
    waiting = np.flatnonzero(~admitted)
    if not len(waiting):
        return admitted
    key = text[waiting]
    admitted[waiting] = pending.get(key, {"count": 0})["count"] + occurrence(key) >= min_count
    unique, code = np.unique(key, return_inverse=True)
    last = np.full(len(unique), -np.inf)
    np.maximum.at(last, code, timestamp[waiting])
    before = pending.get(unique, {"count": 0, "last": -np.inf})
    pending.put(unique, {"count": before["count"] + np.bincount(code, minlength=len(unique)),
                         "last": np.maximum(before["last"], last)})
    return admitted
