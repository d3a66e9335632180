"""An append-only event log in one SQLite file (WAL mode: readers never block the writer)."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Event:
    user: str  # raw user id
    item: str  # raw item id
    type: str = "interaction"  # e.g. click, purchase, rating
    value: float = 1.0  # weight or rating
    timestamp: float | None = None  # event time (seconds); None = time received


class SQLiteEventLog:
    """`append(events)` returns the offsets assigned; `read(after, limit)` replays from an offset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer connection shared by the server's threads
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS events (offset INTEGER PRIMARY KEY AUTOINCREMENT, "
            "user TEXT NOT NULL, item TEXT NOT NULL, type TEXT NOT NULL, value REAL NOT NULL, "
            "timestamp REAL NOT NULL, received REAL NOT NULL)"
        )
        self._conn.commit()

    def append(self, events: list[Event]) -> list[int]:
        now = time.time()
        rows = [(e.user, e.item, e.type, float(e.value), now if e.timestamp is None else e.timestamp, now)
                for e in events]
        if not rows:
            return []
        with self._lock:  # the only writer: offsets of one batch are consecutive
            last = self._last_offset()
            self._conn.executemany(
                "INSERT INTO events (user, item, type, value, timestamp, received) VALUES (?,?,?,?,?,?)",
                rows,
            )
            self._conn.commit()
        return list(range(last + 1, last + 1 + len(rows)))

    def _last_offset(self) -> int:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def read(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT offset, user, item, type, value, timestamp FROM events WHERE offset > ? "
                "ORDER BY offset LIMIT ?", (after, limit),
            ).fetchall()
        return [(r[0], Event(r[1], r[2], r[3], r[4], r[5])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
