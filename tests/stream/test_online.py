"""The online trainer: fold-in agrees with iALS, ids grow, state round-trips, restarts are exactly-once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liverec.errors import LiverecError
from liverec.registry import load_version
from liverec.stream import Event, SQLiteEventLog
from liverec.stream.ids import GrowableIds
from liverec.stream.online import OnlineConfig, OnlineState
from liverec.stream.trainer import OnlineTrainer


def fresh(registries, name: str, tmp_path: Path) -> Path:
    target = tmp_path / f"registry-{name}"
    shutil.copytree(registries[name], target)
    return target


def test_growable_ids_map_and_grow():
    from liverec.data.vocab import IdVocab

    ids = GrowableIds(IdVocab(np.array([3, 10, 42])))
    assert ids.lookup(np.array(["10", "7", "3"])).tolist() == [1, -1, 0]
    assert ids.add(np.array(["7", "10", "7", "5"])).tolist() == [3, 1, 3, 4]
    assert ids.add(np.array(["alice", "3"])).tolist() == [5, 0]  # text ids turn the space to text
    vocab, perm = ids.sorted_vocab()
    assert vocab.raw.tolist() == sorted(["3", "10", "42", "7", "5", "alice"])
    assert (ids.raw[perm] == vocab.raw).all()
    assert ids.add(np.array(["a-much-longer-id"])).tolist() == [6]  # wider text is not truncated
    assert ids.lookup(np.array(["a-much-longer-id"])).tolist() == [6]


def test_ials_fold_in_is_the_exact_batch_fold_in(registries, tmp_path):
    registry = fresh(registries, "ials", tmp_path)
    state = OnlineState.load(registry, OnlineConfig(cg_steps=0, item_fold_in_max=0, sgd_lr=0.0))
    art = load_version(registries["ials"])
    unseen = np.setdiff1d(np.arange(len(art.items)), art.seen_items(0))[:2]  # confidence stays 1
    log = SQLiteEventLog(tmp_path / "e.db")
    log.append([Event("0", str(art.items.raw[i]), "click") for i in unseen])
    state.apply(log.poll(10, 0)[0])
    u = int(state.users.lookup(np.array(["0"]))[0])
    row = (state.history[u] > 0).astype(np.float32)
    expected = art.model.fold_in_users(row)[0]  # the model's own closed form, same item factors
    assert torch.allclose(state.P[u], expected, atol=1e-4)


def test_events_change_vectors_and_grow_ids_and_round_trip(registries, tmp_path):
    registry = fresh(registries, "mf", tmp_path)
    state = OnlineState.load(registry, OnlineConfig(replay_size=4))
    before = state.P.clone()
    users0, items0 = len(state.users), len(state.items)
    log = SQLiteEventLog(tmp_path / "e.db")
    log.append([Event("0", "5", "purchase"), Event("newbie", "3"), Event("1", "fresh-item"),
                Event("2", "7", "rating", 1.0), Event("2", "9", "view", 2.0)])
    trainer = OnlineTrainer(state, log, registry)
    trainer.run(idle_exit=0.05)
    assert (len(state.users), len(state.items)) == (users0 + 1, items0 + 1)
    assert not torch.equal(state.P[0], before[0]) and state.P[users0].abs().sum() > 0
    assert state.counters.applied == 5 and state.counters.ignored == 1  # the 1-star rating
    assert len(state.replay) == 4  # the reservoir stays bounded
    art = load_version(registry)
    assert art.manifest["online"] and len(art.users) == users0 + 1
    again = OnlineState.load(registry, OnlineConfig())
    assert again.position == {0: 6} and again.counters.applied == 5
    assert np.isclose(again.history.sum(), state.history.sum())
    assert again.history[int(again.users.lookup(np.array(["0"]))[0]),
                         int(again.items.lookup(np.array(["5"]))[0])] == state.history[
        int(state.users.lookup(np.array(["0"]))[0]), int(state.items.lookup(np.array(["5"]))[0])]
    assert np.isclose(again.history.sum() - load_version(registries["mf"]).seen.sum(), 1 + 3 + 1 + 0.5)


@pytest.mark.parametrize("name", ["ease", "sasrec"])
def test_models_without_factors_are_refused(registries, name):
    with pytest.raises(LiverecError, match="needs a factor model"):
        OnlineState.load(registries[name], OnlineConfig())


def test_lightgcn_continues_as_the_factor_model_it_serves(registries, tmp_path):
    registry = fresh(registries, "lightgcn", tmp_path)
    original = load_version(registry)
    state = OnlineState.load(registry, OnlineConfig())
    state.publish(registry)  # no events yet: the same vectors, so the same scores
    art = load_version(registry)
    assert art.manifest["model"] == "mf" and art.manifest["derived_from"] == "lightgcn"
    users = torch.arange(len(art.users))
    warm = original.model.item_degree > 0  # cold items: LightGCN ranks them last, MF scores them 0
    torch.testing.assert_close(art.model.score_all(users)[:, warm], original.model.score_all(users)[:, warm])
    log = SQLiteEventLog(tmp_path / "e.db")
    user0, item3, item1 = art.users.decode([0])[0], *art.items.decode([3, 1])
    log.append([Event(str(user0), str(item3), "purchase"), Event("newbie", str(item1))])
    OnlineTrainer(OnlineState.load(registry, OnlineConfig()), log, registry).run(idle_exit=0.05)
    after = load_version(registry)
    assert after.manifest["derived_from"] == "lightgcn" and len(after.users) == len(art.users) + 1
    assert not np.allclose(after.user_vectors[0], art.user_vectors[0])


@pytest.mark.parametrize("lifecycle", [[], ["--min-count", "2"]], ids=["default", "min-count-2"])
def test_sigkill_and_restart_apply_every_event_exactly_once(registries, tmp_path, lifecycle, crash_twice):
    registry, db = fresh(registries, "mf", tmp_path), tmp_path / "events.db"
    base = load_version(registry).seen.sum()
    log = SQLiteEventLog(db)
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.integers(0, 70, 600)]  # some users and items are new
    items = [str(i) for i in rng.integers(0, 90, 600)]
    events = [Event(u, i, "click") for u, i in zip(users, items, strict=True)]
    events[::50] = [Event("bad", "x", "hover")] * len(events[::50])  # 12 dead letters
    log.append(events[:200])
    crash_twice(registry, db, log, (events[200:400], events[400:]), *lifecycle)
    final = OnlineState.load(registry, OnlineConfig())
    assert final.position == {0: len(events) + 1}
    assert final.counters.applied + final.counters.dead == len(events)
    assert final.counters.dead == 12 and len(log.dead_letters()) == 12
    seen_before = load_version(registries["mf"])
    learned = admitted_in_order(events, seen_before, 2 if lifecycle else 1)
    assert final.counters.unadmitted == len(events) - 12 - len(learned)
    assert final.history.sum() - base == len(learned)  # each click counted once: no loss, no duplicate
    pairs = {}
    for e in learned:
        pairs[(e.user, e.item)] = pairs.get((e.user, e.item), 0) + 1
    (u, i), count = max(pairs.items(), key=lambda kv: kv[1])
    ui = seen_before.users.encode([u], missing="mask")[0], seen_before.items.encode([i], missing="mask")[0]
    had = 1 if ui[0] >= 0 and ui[1] >= 0 and ui[1] in seen_before.seen_items(ui[0]) else 0
    fu, fi = final.users.lookup(np.array([u]))[0], final.items.lookup(np.array([i]))[0]
    assert final.history[fu, fi] == count + had


def admitted_in_order(events: list[Event], art, min_count: int) -> list[Event]:
    """The valid events the frequency filter lets through, replayed one by one in log order."""
    seen_users, seen_items = {}, {}
    out = []
    for e in events:
        if e.type != "click":
            continue
        seen_users[e.user] = seen_users.get(e.user, 0) + 1
        seen_items[e.item] = seen_items.get(e.item, 0) + 1
        user_ok = art.users.encode([e.user], missing="mask")[0] >= 0 or seen_users[e.user] >= min_count
        item_ok = art.items.encode([e.item], missing="mask")[0] >= 0 or seen_items[e.item] >= min_count
        if user_ok and item_ok:
            out.append(e)
    return out


def test_cli_errors_are_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", "from liverec.cli import app; app()", "online", str(tmp_path),
         "--log", f"sqlite://{tmp_path}/e.db"], capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "neither a run directory nor a registry" in r.stderr
    assert "Traceback" not in r.stderr
