"""IdVocab: raw ids (ints or strings, as the data set spells them) <-> contiguous indices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liverec.errors import LiverecError

_NOT_AN_INT = np.iinfo(np.int64).min  # never a raw id: text ids that are not integers stay unknown


def _parse_int_ids(values: np.ndarray) -> np.ndarray:
    """Text ids -> int64, each on its own: one non-integer id does not make the others unknown."""
    text = np.char.strip(np.asarray(values).astype(str))
    digits = np.where(np.char.startswith(text, "-"), np.char.replace(text, "-", "", count=1), text)
    width = np.char.str_len(digits)
    # ASCII digits only: isdigit alone would also read "１" (fullwidth) or "٣" as integer ids, and
    # stripping digits alone would accept "\x006" (numpy drops the NUL left at the end)
    ascii_digits = (width > 0) & np.char.isdigit(digits) & (
        np.char.str_len(np.char.strip(digits, "0123456789")) == 0
    )
    ok = ascii_digits & (
        (width < 19) | ((width == 19) & (digits <= str(np.iinfo(np.int64).max)))  # fits int64
    )
    out = np.full(text.shape, _NOT_AN_INT, dtype=np.int64)
    out[ok] = text[ok].astype(np.int64)
    return out


@dataclass(frozen=True)
class IdVocab:
    """Maps raw ids to 0..n-1. `raw[i]` is the raw id of index i (int64 or str array)."""

    raw: np.ndarray

    @classmethod
    def from_raw(cls, values: np.ndarray) -> tuple[IdVocab, np.ndarray]:
        """Build a vocab from raw ids in sorted order; return it and the encoded `values`."""
        uniq, inverse = np.unique(np.asarray(values), return_inverse=True)
        return cls(uniq), inverse.astype(np.int64)

    def __len__(self) -> int:
        return len(self.raw)

    def encode(self, values: np.ndarray | list, missing: str = "raise") -> np.ndarray:
        """Raw ids -> indices. `missing="raise"` errors on unknown ids, `"mask"` gives -1."""
        values = np.asarray(values)
        if self.raw.dtype.kind in "iu" and values.dtype.kind in "UOS":
            values = _parse_int_ids(values)
        elif self.raw.dtype.kind in "UO" and values.dtype.kind not in "UO":
            values = values.astype(str)
        pos = np.searchsorted(self.raw, values)
        pos = np.clip(pos, 0, max(len(self.raw) - 1, 0))
        found = (self.raw[pos] == values) if len(self.raw) else np.zeros(len(values), bool)
        if missing == "raise" and not np.all(found):
            unknown = values[~found][:5].tolist()
            raise LiverecError(f"unknown id(s) {unknown}: not in the training vocabulary")
        return np.where(found, pos, -1).astype(np.int64)

    def decode(self, indices: np.ndarray | list) -> np.ndarray:
        """Indices -> raw ids."""
        return self.raw[np.asarray(indices, dtype=np.int64)]

    def to_json(self) -> dict:
        kind = "int" if self.raw.dtype.kind in "iu" else "str"
        return {"kind": kind, "raw": self.raw.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> IdVocab:
        dtype = np.int64 if obj["kind"] == "int" else str
        return cls(np.asarray(obj["raw"], dtype=dtype))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> IdVocab:
        return cls.from_json(json.loads(Path(path).read_text()))
