"""The event schema and its validation, one micro-batch at a time.

An event says that `user` did `type` to `item` (view, click, purchase, rating, or a generic
interaction) with a `value` (a weight, or the rating) at `timestamp`, with an optional `context`
object (device, page, ...). Logs store events as they were sent; consumers validate a whole batch
with array operations and route the rows that fail to a dead-letter store with the reason.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EVENT_TYPES = ("view", "click", "purchase", "rating", "interaction")
MAX_ID_LENGTH = 256  # characters of a user or item id
MAX_CONTEXT_BYTES = 4096  # encoded JSON of one event's context
FUTURE_SLACK_SECONDS = 86_400.0  # clocks disagree; a timestamp a day ahead is a bug, not skew


@dataclass(frozen=True)
class Event:
    """One event as a producer sends it (nothing is checked here: consumers validate)."""

    user: Any  # raw user id (str; numbers are read as their decimal text)
    item: Any  # raw item id
    type: Any = "interaction"  # one of EVENT_TYPES
    value: Any = 1.0  # weight (>= 0) or the rating
    timestamp: Any = None  # event time in unix seconds; None = when the log received it
    context: Any = None  # optional JSON object

    def to_json(self) -> dict:
        out = {"user": self.user, "item": self.item, "type": self.type, "value": self.value}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.context is not None:
            out["context"] = self.context
        return out


@dataclass
class EventBatch:
    """Columns of a micro-batch, each of length n, in log order."""

    user: np.ndarray  # (n,) str
    item: np.ndarray  # (n,) str
    type: np.ndarray  # (n,) str
    value: np.ndarray  # (n,) float64
    timestamp: np.ndarray  # (n,) float64 unix seconds
    context: np.ndarray  # (n,) object: JSON text or None
    partition: np.ndarray  # (n,) int64 log partition (0 for the SQLite log)
    offset: np.ndarray  # (n,) int64 position within the partition
    # set by stream preprocessing (`liverec.stream.preprocess.sessionise`), None before
    session: np.ndarray | None = None  # (n,) int64 session id, unique across users
    session_index: np.ndarray | None = None  # (n,) int64 position of the event in its session

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> EventBatch:
        """The sub-batch at `rows` (a boolean mask or indices)."""
        return EventBatch(**{name: None if col is None else col[rows] for name, col in vars(self).items()})


@dataclass
class DeadLetters:
    """Events that failed validation: the rows as received plus why, for the dead-letter store."""

    batch: EventBatch
    reason: np.ndarray  # (n,) str

    def __len__(self) -> int:
        return len(self.reason)


def _text(raw: Sequence) -> np.ndarray | None:
    """The common case fast: a column with no None, as fixed-width text (numbers as their decimal
    text); None when some row is None or not a scalar (the caller takes the row-checking path)."""
    if None in raw:  # a C-level scan, far cheaper than an object array
        return None
    try:
        text = np.array(raw, dtype=str)
    except (TypeError, ValueError):
        return None
    return text if text.shape == (len(raw),) else None


def _ids(raw: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Raw id column -> (text, why-invalid) ; numbers become their decimal text."""
    text = _text(raw) if "" not in raw else None
    if text is not None and text.dtype.itemsize // 4 <= MAX_ID_LENGTH:  # no row can be invalid
        return text, np.full(len(text), "")
    col = np.asarray(raw, dtype=object)
    missing = np.equal(col, None)
    text = np.where(missing, "", col).astype(str)
    length = np.char.str_len(text) if len(text) else np.zeros(0, np.int64)
    why = np.where(missing | (length == 0), "missing id",
                   np.where(length > MAX_ID_LENGTH, f"id longer than {MAX_ID_LENGTH}", ""))
    return text, why


def _floats(raw: list) -> tuple[np.ndarray, np.ndarray]:
    """Raw numbers -> (float64 with NaN where unreadable, True where a value was given)."""
    col = np.asarray(raw, dtype=object)
    given = ~np.equal(col, None)
    try:
        return np.where(given, col, np.nan).astype(np.float64), given
    except (TypeError, ValueError):  # some row holds text or a list: read rows one by one
        return np.array([_to_float(x) for x in col], dtype=np.float64), given


def _to_float(x: Any) -> float:
    if isinstance(x, bool):  # JSON true is not a number
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _contexts(raw: list) -> tuple[np.ndarray, np.ndarray]:
    """Context column -> (JSON text or None, why-invalid); text is kept as given, objects encoded."""
    col = np.asarray(raw, dtype=object)
    why = np.full(len(col), "", dtype=object)
    present = np.flatnonzero(~np.equal(col, None))
    for i in present:  # only rows that carry a context; most events have none
        x = col[i]
        if isinstance(x, dict):
            col[i] = json.dumps(x, separators=(",", ":"))
        elif not (isinstance(x, str) and x.startswith("{")):
            why[i] = "context must be a JSON object"
            continue
        if len(col[i]) > MAX_CONTEXT_BYTES:
            why[i] = f"context over {MAX_CONTEXT_BYTES} bytes"
    return col, why


def make_batch(
    columns: dict[str, list], partition: np.ndarray, offset: np.ndarray, received: float | None = None
) -> tuple[EventBatch, np.ndarray]:
    """Raw columns (user, item, type, value, timestamp, context) -> (batch, why-invalid per row).

    Missing timestamps become `received` (default now); a missing value is 1.
    """
    now = time.time()
    received = now if received is None else received
    user, why_user = _ids(columns["user"])
    item, why_item = _ids(columns["item"])
    kind = _text(columns["type"])
    if kind is None:  # some types missing (they default to "interaction") or not scalars
        kind = np.asarray(columns["type"], dtype=object)
        kind = np.where(np.equal(kind, None), "interaction", kind).astype(str)
    value, value_given = _floats(columns["value"])
    value = np.where(value_given, value, 1.0)
    stamp, stamp_given = _floats(columns["timestamp"])
    stamp = np.where(stamp_given, stamp, received)
    context, why_context = _contexts(columns["context"])
    checks = [  # first failing check wins, in this order
        (why_user != "", _prefixed("user: ", why_user)),
        (why_item != "", _prefixed("item: ", why_item)),
        (~np.isin(kind, EVENT_TYPES), f"type must be one of {', '.join(EVENT_TYPES)}"),
        (~np.isfinite(value), "value must be a finite number"),
        (value < 0, "value must be >= 0"),
        (~np.isfinite(stamp) | (stamp < 0), "timestamp must be a finite number >= 0"),
        (stamp > now + FUTURE_SLACK_SECONDS, "timestamp more than a day in the future"),
        (why_context != "", why_context),
    ]
    batch = EventBatch(user, item, kind, value, stamp, context,
                       np.asarray(partition, np.int64), np.asarray(offset, np.int64))
    return batch, _reasons(checks, len(user))


def _prefixed(prefix: str, why: np.ndarray) -> np.ndarray | str:
    """prefix + why per row, built only when some row has a reason (object arrays are slow)."""
    return prefix + why.astype(object) if (why != "").any() else prefix


def _reasons(checks: list[tuple[np.ndarray, Any]], n: int) -> np.ndarray:
    """(n,) str: the first failing check's text per row, "" for valid rows. Texts are assembled
    for the failing rows only: in a healthy stream that is none, and object arrays are slow."""
    failed_any = np.zeros(n, dtype=bool)
    for failed, _ in checks:
        failed_any |= failed
    bad = np.flatnonzero(failed_any)
    if not len(bad):
        return np.full(n, "")
    reason = np.full(len(bad), "", dtype=object)
    for failed, text in reversed(checks):
        text = text[bad] if isinstance(text, np.ndarray) else text
        reason = np.where(failed[bad], text, reason)
    reason = reason.astype(str)
    out = np.full(n, "", dtype=reason.dtype)
    out[bad] = reason
    return out


def validate(batch: EventBatch, reason: np.ndarray) -> tuple[EventBatch, DeadLetters]:
    """Split a batch into its valid rows and its dead letters (rows with a non-empty reason)."""
    bad = reason != ""
    return batch.take(~bad), DeadLetters(batch.take(bad), reason[bad])


def events_to_columns(events: list[Event]) -> dict[str, list]:
    """Producer-side helper: Event objects -> the raw columns `make_batch` reads."""
    return {
        "user": [e.user for e in events], "item": [e.item for e in events],
        "type": [e.type for e in events], "value": [e.value for e in events],
        "timestamp": [e.timestamp for e in events], "context": [e.context for e in events],
    }
