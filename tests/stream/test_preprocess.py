"""Stream preprocessing: dedupe within a window and burst filtering, hand-computed expectations."""

from __future__ import annotations

import numpy as np

from liverec.stream.preprocess import burst_mask, duplicate_mask
from liverec.stream.schema import make_batch


def batch_of(rows: list[tuple[str, str, str, float]]):
    n = len(rows)
    cols = {"user": [r[0] for r in rows], "item": [r[1] for r in rows], "type": [r[2] for r in rows],
            "value": [1.0] * n, "timestamp": [r[3] for r in rows], "context": [None] * n}
    return make_batch(cols, np.zeros(n, np.int64), np.arange(n))[0]


def test_duplicates_within_the_window_are_flagged_once_each():
    batch = batch_of([
        ("a", "x", "click", 100.0), ("a", "x", "click", 100.5),  # repeat 0.5 s later: duplicate
        ("a", "x", "view", 100.6),  # another type: kept
        ("b", "x", "click", 100.2),  # another user: kept
        ("a", "x", "click", 103.0),  # 2.5 s after the previous copy: kept
        ("a", "x", "click", 100.9),  # 0.4 s after the duplicate: duplicate (chains count)
    ])
    assert duplicate_mask(batch, window=1.0).tolist() == [False, True, False, False, False, True]
    assert not duplicate_mask(batch, window=0.0).any()


def test_bursting_users_lose_all_their_events_in_the_batch():
    bot = [("bot", str(k), "click", 200.0 + k * 0.01) for k in range(50)]  # 50 events in 0.5 s
    human = [("h", str(k), "click", 200.0 + k * 10) for k in range(5)]
    batch = batch_of(bot + human)
    mask = burst_mask(batch, max_rate=10.0)
    assert mask[:50].all() and not mask[50:].any()
    assert not burst_mask(batch, max_rate=0.0).any()


def test_the_trainer_drops_and_counts_duplicates(registries, tmp_path):
    import shutil

    from liverec.stream import Event, SQLiteEventLog
    from liverec.stream.online import OnlineConfig, OnlineState
    from liverec.stream.trainer import OnlineTrainer

    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    log = SQLiteEventLog(tmp_path / "e.db")
    log.append([Event("0", "5", "click", 1.0, 100.0), Event("0", "5", "click", 1.0, 100.2),
                Event("1", "5", "click", 1.0, 100.0)])
    state = OnlineState.load(registry, OnlineConfig(dedupe_seconds=1.0))
    OnlineTrainer(state, log, registry).run(idle_exit=0.05)
    assert state.counters.filtered == 1 and state.counters.applied == 2


def test_sessions_split_on_inactivity_and_continue_across_batches():
    from liverec.stream.preprocess import Sessions

    sessions = Sessions()
    first = batch_of([
        ("a", "x", "click", 100.0), ("b", "x", "click", 50.0),
        ("a", "y", "click", 160.0),  # 60 s after a's previous event: same session
        ("a", "z", "click", 400.0),  # 240 s of silence > gap 100: a's second session
        ("a", "w", "click", 130.0),  # arrives late, but sorted by time it sits inside session 1
    ])
    session, index = sessions.assign(first.user, first.timestamp, gap=100.0)
    assert session.tolist() == [0, 2, 0, 1, 0]  # ids in order of (user, start time)
    assert index.tolist() == [0, 0, 2, 0, 1]
    second = batch_of([
        ("a", "v", "view", 450.0),  # continues a's session 1 from the previous batch
        ("b", "v", "view", 600.0),  # b was idle 550 s: new session
        ("c", "v", "view", 600.0),
        ("a", "u", "view", 420.0),  # late: still session 1, and earlier than the 450 s event
    ])
    session, index = sessions.assign(second.user, second.timestamp, gap=100.0)
    assert session.tolist() == [1, 3, 4, 1] and index.tolist() == [2, 0, 0, 1]
    sessions.prune(now=600.0, gap=100.0)  # a's last event (450 s) is older than one gap
    assert sessions.table.keys.tolist() == ["b", "c"]
    session, index = sessions.assign(np.array(["a"]), np.array([460.0]), gap=100.0)
    assert session.tolist() == [5] and index.tolist() == [0]  # forgotten: a fresh session


def test_the_trainer_caps_events_per_session_and_resumes_sessions(registries, tmp_path):
    import shutil

    from liverec.stream import Event, SQLiteEventLog
    from liverec.stream.online import OnlineConfig, OnlineState
    from liverec.stream.trainer import OnlineTrainer

    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    log = SQLiteEventLog(tmp_path / "e.db")
    binge = [Event("0", str(k), "click", 1.0, 1000.0 + k) for k in range(6)]  # one session of 6
    later = [Event("0", str(k), "click", 1.0, 9000.0 + k) for k in range(6, 9)]  # a new session
    log.append(binge[:4])
    config = OnlineConfig(session_gap=1800.0, max_session_events=3, batch_size=4)
    state = OnlineState.load(registry, config)
    base = state.history.sum()
    OnlineTrainer(state, log, registry).run(idle_exit=0.05)
    assert state.counters.filtered == 1 and state.history.sum() - base == 3
    log.append(binge[4:] + later)  # a restarted trainer continues the session from the registry
    resumed = OnlineState.load(registry, config)
    OnlineTrainer(resumed, log, registry).run(idle_exit=0.05)
    assert resumed.counters.filtered == 3 and resumed.history.sum() - base == 3 + 3
    assert resumed.sessions.next_id == 2


def test_session_options_are_checked():
    import pytest

    from liverec.errors import LiverecError
    from liverec.stream.online import OnlineConfig

    with pytest.raises(LiverecError, match="session_gap"):
        OnlineConfig(session_gap=0, max_session_events=5)
