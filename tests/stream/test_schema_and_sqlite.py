"""Event validation (vectorised, every bad row kept with its reason) and the SQLite log."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from liverec.errors import LiverecError
from liverec.stream import Event, SQLiteEventLog, make_batch, open_log, validate
from liverec.stream.schema import events_to_columns

BAD = [  # (event, expected reason fragment)
    (Event(None, "i1"), "user: missing id"),
    (Event("", "i1"), "user: missing id"),
    (Event("u" * 300, "i1"), "user: id longer than 256"),
    (Event("u1", None), "item: missing id"),
    (Event("u1", "i1", type="hover"), "type must be one of"),
    (Event("u1", "i1", value=math.nan), "value must be a finite number"),
    (Event("u1", "i1", value="lots"), "value must be a finite number"),
    (Event("u1", "i1", value=-1.0), "value must be >= 0"),
    (Event("u1", "i1", timestamp=-5), "timestamp must be a finite number >= 0"),
    (Event("u1", "i1", timestamp=time.time() + 10 * 86400), "more than a day in the future"),
    (Event("u1", "i1", context="not json"), "context must be a JSON object"),
    (Event("u1", "i1", context={"x": "y" * 5000}), "context over 4096 bytes"),
]
GOOD = [
    Event("u1", "i1"),
    Event(7, 12, "rating", 4.5, 1_600_000_000.0),  # numbers are ids too
    Event("u2", "i3", "purchase", 2, None, {"device": "phone"}),
]


def test_validation_keeps_good_rows_and_explains_bad_ones():
    events = [e for pair in zip(GOOD, [b for b, _ in BAD[:3]], strict=True) for e in pair]
    events += [b for b, _ in BAD[3:]]
    n = len(events)
    batch, reason = make_batch(events_to_columns(events), np.zeros(n), np.arange(n), received=123.0)
    valid, dead = validate(batch, reason)
    assert len(valid) == len(GOOD) and len(dead) == len(BAD)
    assert valid.user.tolist() == ["u1", "7", "u2"] and valid.item.tolist() == ["i1", "12", "i3"]
    assert valid.value.tolist() == [1.0, 4.5, 2.0]
    assert valid.timestamp.tolist() == [123.0, 1_600_000_000.0, 123.0]  # missing -> received
    assert valid.type.tolist() == ["interaction", "rating", "purchase"]
    assert valid.context.tolist() == [None, None, '{"device":"phone"}']
    for (_, expected), got in zip(BAD, dead.reason.tolist(), strict=True):
        assert expected in got
    assert valid.offset.tolist() == [0, 2, 4]  # positions survive the split


def test_empty_batch():
    batch, reason = make_batch(events_to_columns([]), np.zeros(0), np.zeros(0))
    valid, dead = validate(batch, reason)
    assert len(valid) == 0 and len(dead) == 0


def test_sqlite_log_append_poll_commit_and_dead_letters(tmp_path):
    path = tmp_path / "events.db"
    log = open_log(f"sqlite://{path}", group="g")
    assert isinstance(log, SQLiteEventLog)
    assert log.append([Event("u1", "i1"), Event("u1", "i2", "click"), BAD[4][0]]) == [1, 2, 3]
    batch, reason = log.poll(max_events=2, timeout=0)
    assert batch.offset.tolist() == [1, 2] and log.position() == {0: 3}
    batch, reason = log.poll(max_events=10, timeout=0)
    assert batch.offset.tolist() == [3] and "type" in reason[0]
    _, dead = validate(batch, reason)
    log.dead_letter(dead)
    log.dead_letter(dead)  # re-delivery after a crash does not duplicate
    assert log.dead_letters() == [(3, reason[0])]
    empty, _ = log.poll(max_events=10, timeout=0.01)
    assert len(empty) == 0
    log.commit(log.position())
    log.close()
    again = SQLiteEventLog(path, group="g")  # a restarted consumer resumes from the commit
    assert again.committed() == {0: 4} and again.position() == {0: 4}
    again.seek({0: 2})
    assert again.poll(10, 0)[0].offset.tolist() == [2, 3]
    assert SQLiteEventLog(path, group="other").position() == {0: 1}  # groups are independent
    assert again.end() == {0: 4}


def test_sqlite_log_is_shared_between_connections(tmp_path):
    writer, reader = SQLiteEventLog(tmp_path / "e.db"), SQLiteEventLog(tmp_path / "e.db")
    writer.append([Event(f"u{i}", "i") for i in range(5)])
    assert len(reader.poll(100, 0)[0]) == 5
    mode = writer._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "kafka://host:1", "kafka:///topic"])
def test_bad_log_urls(url):
    with pytest.raises(LiverecError, match="--log"):
        open_log(url)
