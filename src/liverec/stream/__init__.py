"""Live learning: the event schema, event logs (embedded SQLite, Kafka) and the online trainer.

Kafka support is an optional extra (`pip install 'liverec[kafka]'`), imported only when a
`kafka://` log is opened.
"""

from liverec.stream.log import EventLog, Position, open_log
from liverec.stream.schema import EVENT_TYPES, DeadLetters, Event, EventBatch, make_batch, validate
from liverec.stream.sqlite_log import SQLiteEventLog

__all__ = [
    "EVENT_TYPES", "DeadLetters", "Event", "EventBatch", "EventLog", "Position", "SQLiteEventLog",
    "make_batch", "open_log", "validate",
]
