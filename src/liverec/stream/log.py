"""The `EventLog` protocol shared by the embedded SQLite log and Kafka, and `open_log(url)`.

A log is read by one consumer group at a time. Its position is a mapping partition -> next offset
to read (SQLite has the single partition 0). A consumer that keeps its own state (the online
trainer stores the position inside each published model version) calls `seek` on start, so the
log's own committed offsets are only a report of progress (lag), not the source of truth.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from liverec.errors import LiverecError
from liverec.stream.schema import DeadLetters, Event, EventBatch

Position = dict[int, int]  # partition -> next offset to read


class EventLog(Protocol):
    def append(self, events: list[Event]) -> None:
        """Write events (as sent; consumers validate them)."""
        ...

    def poll(self, max_events: int, timeout: float) -> tuple[EventBatch, np.ndarray]:
        """Up to `max_events` events after the current position (waiting up to `timeout` seconds
        for the first), with the reason each is invalid ("" when valid); advances the position."""
        ...

    def position(self) -> Position:
        """Next offset to read per partition (what `poll` has handed out so far)."""
        ...

    def seek(self, position: Position) -> None:
        """Continue reading from `position`; partitions it does not name start at the beginning."""
        ...

    def commit(self, position: Position) -> None:
        """Record the consumer group's progress in the log (for monitoring and lag)."""
        ...

    def committed(self) -> Position:
        """The group's last committed position."""
        ...

    def end(self) -> Position:
        """The position after the newest event (where a consumer starting 'at the end' begins)."""
        ...

    def dead_letter(self, dead: DeadLetters) -> None:
        """Store invalid events with the reason (idempotent where the backend allows)."""
        ...

    def close(self) -> None: ...


def open_log(url: str, group: str = "liverec-online") -> EventLog:
    """`sqlite:///path/to/events.db` or `kafka://host:port[,host:port]/topic`."""
    if url.startswith("sqlite://"):
        from liverec.stream.sqlite_log import SQLiteEventLog

        path = url[len("sqlite://"):]
        if not path or path == "/":
            raise LiverecError(f"--log {url!r}: write sqlite:///absolute/path.db or sqlite://relative.db")
        return SQLiteEventLog(path, group=group)
    if url.startswith("kafka://"):
        servers, _, topic = url[len("kafka://"):].partition("/")
        if not servers or not topic or "/" in topic:
            raise LiverecError(f"--log {url!r}: write kafka://host:port/topic")
        from liverec.stream.kafka_log import KafkaEventLog

        return KafkaEventLog(servers, topic, group=group)
    raise LiverecError(f"--log {url!r}: expected sqlite:///path.db or kafka://host:port/topic")
