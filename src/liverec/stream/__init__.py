"""Event logs for live learning. `SQLiteEventLog` is the embedded default (stdlib only)."""

from liverec.stream.sqlite_log import Event, SQLiteEventLog

__all__ = ["Event", "SQLiteEventLog"]
