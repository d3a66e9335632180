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
