"""The id lifecycle of the online trainer: frequency filter (min_count) and expiry (expire_after)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from liverec.data.vocab import IdVocab
from liverec.errors import LiverecError
from liverec.registry import load_version
from liverec.serve import recommend
from liverec.serve.schemas import RecommendIn
from liverec.stream import Event, SQLiteEventLog
from liverec.stream.foldin import RowSums
from liverec.stream.ids import GrowableIds, admit, occurrence, pending_table
from liverec.stream.online import OnlineConfig, OnlineState
from liverec.stream.trainer import OnlineTrainer


def test_occurrence_counts_each_key_in_arrival_order():
    assert occurrence(np.array(["b", "a", "b", "c", "b", "a"])).tolist() == [1, 1, 2, 1, 3, 2]
    assert occurrence(np.array([], dtype=str)).tolist() == []


def test_admission_counts_unknown_ids_across_batches():
    ids, pending = GrowableIds(IdVocab(np.array(["a", "b"]))), pending_table()
    first = admit(ids, pending, np.array(["a", "x", "x", "y"]), np.array([1.0, 2.0, 3.0, 4.0]), 3)
    assert first.tolist() == [True, False, False, False]
    second = admit(ids, pending, np.array(["x", "y", "x"]), np.array([5.0, 6.0, 7.0]), 3)
    assert second.tolist() == [True, False, True]  # x's 3rd and 4th events; y has seen 2
    assert pending.keys.tolist() == ["x", "y"]
    assert pending.columns["count"].tolist() == [4, 2] and pending.columns["last"].tolist() == [7.0, 6.0]


def apply_events(state: OnlineState, log: SQLiteEventLog, events: list[Event]) -> None:
    log.append(events)
    state.apply(log.poll(100, 0)[0])


def test_frequency_filter_survives_a_restart(registries, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    log = SQLiteEventLog(tmp_path / "e.db")
    config = OnlineConfig(min_count=3, batch_size=2, publish_ms=0)
    state = OnlineState.load(registry, config)
    users0, items0, base = len(state.users), len(state.items), state.history.sum()
    log.append([Event("new-u", "5", "click", 1.0, 100.0), Event("0", "new-i", "click", 1.0, 101.0),
                Event("new-u", "6", "click", 1.0, 102.0), Event("1", "new-i", "click", 1.0, 103.0)])
    OnlineTrainer(state, log, registry).run(idle_exit=0.05)  # two micro-batches of two
    assert (len(state.users), len(state.items)) == (users0, items0)
    assert state.counters.unadmitted == 4 and state.history.sum() == base
    log.append([Event("new-u", "7", "click", 1.0, 104.0), Event("2", "new-i", "purchase", 1.0, 105.0)])
    resumed = OnlineState.load(registry, config)  # the counts come back with the state
    assert resumed.pending_users.keys.tolist() == ["new-u"]
    OnlineTrainer(resumed, log, registry).run(idle_exit=0.05)
    assert (len(resumed.users), len(resumed.items)) == (users0 + 1, items0 + 1)  # the 3rd event admits
    assert resumed.counters.unadmitted == 4 and np.isclose(resumed.history.sum() - base, 1 + 3)
    assert len(resumed.pending_users) == 0 and len(resumed.pending_items) == 0


def test_expired_ids_leave_the_model_and_come_back_new(registries, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    log = SQLiteEventLog(tmp_path / "e.db")
    state = OnlineState.load(registry, OnlineConfig(expire_after=100.0, replay_size=50))
    apply_events(state, log, [Event("0", "5", "click", 1.0, 1000.0), Event("newbie", "fresh", "click", 1.0, 1000.0)])
    assert state.counters.expired_users == 0  # everything was seen at 1000 (the exported ids too)
    apply_events(state, log, [Event("1", "7", "click", 1.0, 1050.0), Event("2", "fresh", "view", 1.0, 1500.0),
                              Event("1", "6", "rating", 1.0, 1500.0)])  # a 1-star rating keeps "6" alive
    assert sorted(state.users.raw.astype(str).tolist()) == ["1", "2"]
    assert sorted(state.items.raw.astype(str).tolist()) == ["6", "fresh"]  # "7" was last seen at 1050
    assert state.counters.expired_users == len(load_version(registries["mf"]).users) + 1 - 2
    assert state.history.shape == (2, 2) and state.P.shape[0] == 2 and state.Q.shape[0] == 2
    assert torch.allclose(state.user_sums.gram, RowSums.of(state.P, state.user_bias).gram, atol=1e-6)
    assert (state.replay[:, 0] < 2).all() and (state.replay[:, 1] < 2).all()
    state.publish(registry)
    art = load_version(registry)  # served versions no longer know the expired ids
    assert sorted(art.items.raw.astype(str).tolist()) == ["6", "fresh"]
    out = recommend(art, RecommendIn(user="2", k=10, exclude_seen=False))
    assert {r["item"] for r in out["items"]} <= {"6", "fresh"}
    again = OnlineState.load(registry, OnlineConfig(expire_after=100.0))
    assert again.clock == 1500.0 and again.user_seen.tolist() == [1500.0, 1500.0]
    apply_events(again, log, [Event("0", "fresh", "click", 1.0, 1510.0)])  # "0" returns: a new row
    zero = int(again.users.lookup(np.array(["0"]))[0])
    assert zero == 2 and again.history[zero].sum() == 1.0  # the old history is gone


def test_lifecycle_options_are_checked():
    with pytest.raises(LiverecError, match="min_count"):
        OnlineConfig(min_count=0)
    with pytest.raises(LiverecError, match="expire_after"):
        OnlineConfig(expire_after=-1)
