"""The embedded event log: one SQLite file in WAL mode (readers never block the writer).

    events        offset (1, 2, ...), user, item, type, value, timestamp, received, context
    offsets       consumer group -> next offset to read (partition 0)
    dead_letters  invalid events with the reason, keyed by offset (re-delivery is idempotent)

Columns are stored as sent (nullable, untyped): the consumer validates, so a malformed event
reaches the dead-letter table instead of failing the producer's append. `synchronous=FULL`: an
append that returned survives a crash of the machine, not only of the process.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from liverec.stream.log import Position
from liverec.stream.schema import DeadLetters, Event, EventBatch, make_batch

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (offset INTEGER PRIMARY KEY AUTOINCREMENT, user, item, "
    "type, value, timestamp, received REAL NOT NULL, context)",
    "CREATE TABLE IF NOT EXISTS offsets (grp TEXT NOT NULL, partition INTEGER NOT NULL, "
    "next INTEGER NOT NULL, PRIMARY KEY (grp, partition))",
    "CREATE TABLE IF NOT EXISTS dead_letters (partition INTEGER NOT NULL, offset INTEGER NOT NULL, "
    "user, item, type, value, timestamp, context, reason TEXT NOT NULL, at REAL NOT NULL, "
    "PRIMARY KEY (partition, offset))",
)
_POLL_SLEEP = 0.002  # seconds between checks for new rows while waiting in `poll`


class SQLiteEventLog:
    """`EventLog` over one SQLite file; safe to share between threads and between processes."""

    def __init__(self, path: str | Path, group: str = "liverec-online") -> None:
        self.path = Path(path)
        self.group = group
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection shared by the server's threads
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._conn.execute(statement)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(events)")}
        if "context" not in columns:  # a log written before contexts existed
            self._conn.execute("ALTER TABLE events ADD COLUMN context")
        self._conn.commit()
        self._next = self.committed().get(0, 1)

    # ---- producer ---------------------------------------------------------------------------

    def append(self, events: list[Event]) -> list[int]:
        """Write events; returns the offsets assigned (consecutive)."""
        import json

        now = time.time()
        rows = [
            (e.user, e.item, e.type, e.value, e.timestamp, now,
             json.dumps(e.context) if isinstance(e.context, dict) else e.context)
            for e in events
        ]
        if not rows:
            return []
        with self._lock:  # the only writer of this connection: offsets of one batch are consecutive
            self._conn.execute("BEGIN IMMEDIATE")  # takes the write lock before reading the sequence
            last = self._last_offset()
            self._conn.executemany(
                "INSERT INTO events (user, item, type, value, timestamp, received, context) "
                "VALUES (?,?,?,?,?,?,?)", rows,
            )
            self._conn.commit()
        return list(range(last + 1, last + 1 + len(rows)))

    def _last_offset(self) -> int:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def read(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        """Events with offset > `after`, oldest first (for inspection; consumers use `poll`)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT offset, user, item, type, value, timestamp, context FROM events "
                "WHERE offset > ? ORDER BY offset LIMIT ?", (after, limit),
            ).fetchall()
        return [(r[0], Event(*r[1:])) for r in rows]

    # ---- consumer ---------------------------------------------------------------------------

    def poll(self, max_events: int, timeout: float) -> tuple[EventBatch, np.ndarray]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                # a missing timestamp means "when received": SQLite substitutes the receive time
                rows = self._conn.execute(
                    "SELECT offset, user, item, type, value, coalesce(timestamp, received), context "
                    "FROM events WHERE offset >= ? ORDER BY offset LIMIT ?", (self._next, max_events),
                ).fetchall()
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SLEEP)
        cols = list(zip(*rows, strict=True)) if rows else [()] * 7
        offset = np.asarray(cols[0], dtype=np.int64)
        raw = dict(zip(("user", "item", "type", "value", "timestamp", "context"), cols[1:], strict=True))
        batch, reason = make_batch(raw, np.zeros(len(rows), np.int64), offset)
        if rows:
            self._next = int(offset[-1]) + 1
        return batch, reason

    def position(self) -> Position:
        return {0: self._next}

    def seek(self, position: Position) -> None:
        self._next = int(position.get(0, 1))

    def commit(self, position: Position) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO offsets (grp, partition, next) VALUES (?, 0, ?) "
                "ON CONFLICT (grp, partition) DO UPDATE SET next = excluded.next",
                (self.group, int(position.get(0, 1))),
            )
            self._conn.commit()

    def committed(self) -> Position:
        with self._lock:
            row = self._conn.execute(
                "SELECT next FROM offsets WHERE grp = ? AND partition = 0", (self.group,)
            ).fetchone()
        return {0: int(row[0])} if row else {}

    def end(self) -> Position:
        """The position after the newest event (where a consumer starting 'at the end' begins)."""
        with self._lock:
            return {0: self._last_offset() + 1}

    def dead_letter(self, dead: DeadLetters) -> None:
        b, now = dead.batch, time.time()
        rows = list(zip(b.partition.tolist(), b.offset.tolist(), b.user.tolist(), b.item.tolist(),
                        b.type.tolist(), b.value.tolist(), b.timestamp.tolist(), b.context.tolist(),
                        dead.reason.tolist(), [now] * len(dead), strict=True))
        if not rows:
            return
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?,?,?,?,?,?,?)", rows
            )
            self._conn.commit()

    def dead_letters(self) -> list[tuple[int, str]]:
        """(offset, reason) of every dead letter, oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT offset, reason FROM dead_letters ORDER BY partition, offset"
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
