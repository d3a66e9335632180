"""Continued training of sequence models online: sequences grow in time order, new items learn,
the state round-trips through the registry, and a SIGKILLed trainer applies every event once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from liverec.errors import LiverecError
from liverec.registry import load_version
from liverec.stream import Event, SQLiteEventLog
from liverec.stream.online import OnlineConfig, load_state
from liverec.stream.sequence_online import SequenceOnlineState
from liverec.stream.trainer import OnlineTrainer


def fresh(registries, tmp_path: Path, name: str = "sasrec") -> Path:
    target = tmp_path / f"registry-{name}"
    shutil.copytree(registries[name], target)
    return target


def window(state: SequenceOnlineState, user: str) -> list[str]:
    """The user's stored latest items (raw ids, oldest first)."""
    row = state.sequences[int(state.users.lookup(np.array([user]))[0])]
    return [str(state.items.raw[m - 1]) for m in row if m > 0]


@pytest.mark.parametrize("name", ["sasrec", "gen"])
def test_events_extend_sequences_train_and_round_trip(registries, tmp_path, name):
    registry = fresh(registries, tmp_path, name)
    state = load_state(registry, OnlineConfig(publish_ms=0))
    assert isinstance(state, SequenceOnlineState)
    art = load_version(registry)
    user0 = str(art.users.raw[0])
    before = window(state, user0)
    weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    now = time.time()
    log = SQLiteEventLog(tmp_path / "e.db")
    log.append([
        Event(user0, "5", "click", timestamp=now + 2), Event(user0, "7", "click", timestamp=now + 1),
        Event("newbie", "3", timestamp=now), Event("newbie", "fresh-item", "purchase", timestamp=now + 1),
        Event(user0, "9", "rating", 1.0, timestamp=now + 3),  # a low rating: no signal, not appended
    ])
    OnlineTrainer(state, log, registry).run(idle_exit=0.05)
    # time order within the batch (not log order); the window keeps the latest max_len + 1 items
    assert window(state, user0) == (before + ["7", "5"])[-(state.model.config.max_len + 1):]
    assert window(state, "newbie") == ["3", "fresh-item"]
    assert state.counters.applied == 5 and state.counters.ignored == 1
    changed = [k for k, v in state.model.state_dict().items() if k in weights and weights[k].shape == v.shape
               and not torch.equal(weights[k], v)]
    assert any(k.startswith("blocks.0.") for k in changed)  # the network trained, not only embeddings
    assert state.model.item_emb.weight.shape[0] == len(art.items) + 2  # + padding row + fresh-item

    served = load_version(registry)  # what `liverec serve` hot-swaps to
    assert served.manifest["online"] and len(served.items) == len(art.items) + 1
    u = int(served.users.encode([user0])[0])
    latest = served.items.decode([served.model.history[u, -1].item() - 1])[0]
    assert str(latest) == "5"
    u_new = int(served.users.encode(["newbie"])[0])
    expected = served.model.score_sequences([served.items.encode(["3", "fresh-item"]).tolist()])
    torch.testing.assert_close(served.model.score_all(torch.tensor([u_new])), expected)

    again = load_state(registry, OnlineConfig())
    assert again.position == {0: 6} and again.counters.applied == 5
    assert window(again, user0) == window(state, user0) and window(again, "newbie") == window(state, "newbie")
    step = [s["step"] for s in again.optimizer.state.values()]
    assert step and all(float(s) == float(next(iter(state.optimizer.state.values()))["step"]) for s in step)


def test_a_new_item_is_learned_from_the_stream(registries, tmp_path):
    """Users who watch item A then a brand-new item N: after training, N ranks high after A."""
    registry = fresh(registries, tmp_path)
    config = OnlineConfig(seq_lr=0.01, seq_replay_users=0, batch_size=40)  # 30 batches, 30 steps
    state = load_state(registry, config)
    art = load_version(registry)
    a = str(art.items.raw[0])
    log = SQLiteEventLog(tmp_path / "e.db")
    now = time.time()
    for rnd in range(30):  # rounds of batches; each user adds A then N
        log.append([e for u in range(20) for e in (
            Event(f"s{rnd}-{u}", a, timestamp=now + rnd), Event(f"s{rnd}-{u}", "N", timestamp=now + rnd + 0.5))])
    OnlineTrainer(state, log, registry).run(idle_exit=0.05)
    served = load_version(registry)
    scores = served.model.score_sequences([served.items.encode([a]).tolist()])[0]
    rank = int((scores > scores[int(served.items.encode(["N"])[0])]).sum())
    assert rank < 3, rank


def test_sequence_options_are_checked(registries, tmp_path):
    with pytest.raises(LiverecError, match="expire_after"):
        load_state(fresh(registries, tmp_path), OnlineConfig(expire_after=10.0))
    with pytest.raises(LiverecError, match="seq_rows"):
        OnlineConfig(seq_rows=0)


def test_sigkill_and_restart_apply_every_event_exactly_once(registries, tmp_path, crash_twice):
    """The windows after two SIGKILLs and restarts equal those of one uninterrupted pass."""
    registry, db = fresh(registries, tmp_path), tmp_path / "events.db"
    reference_registry = tmp_path / "reference"
    shutil.copytree(registry, reference_registry)
    log = SQLiteEventLog(db)
    rng = np.random.default_rng(0)
    now = time.time()
    events = [Event(str(u), str(i), "click", timestamp=now + k)
              for k, (u, i) in enumerate(zip(rng.integers(0, 70, 300), rng.integers(0, 90, 300), strict=True))]
    log.append(events[:100])
    crash_twice(registry, db, log, (events[100:200], events[200:]))
    final = load_state(registry, OnlineConfig())
    assert final.position == {0: len(events) + 1} and final.counters.applied == len(events)

    reference = load_state(reference_registry, OnlineConfig())
    OnlineTrainer(reference, SQLiteEventLog(db), reference_registry).run(idle_exit=0.05)
    for user in sorted({e.user for e in events}):
        assert window(final, user) == window(reference, user), user
    assert np.isclose(final.history.sum(), reference.history.sum())


def test_served_state_reads_posted_items_once_after_the_version_absorbed_them(registries):
    """The server keeps the items posted for a user (RecentItems); once an online-trained
    version stores them at the end of the user's sequence, they must not be read twice."""
    from liverec.serve import absorbed, sequence_state

    art = load_version(registries["sasrec"])
    stored = art.model.history[0].numpy() - 1
    stored = stored[stored >= 0]
    new = int(np.setdiff1d(np.arange(len(art.items)), stored)[0])
    expected = sequence_state(art, 0, np.array([new]))  # stored + new
    fresh = np.concatenate([stored[-2:], [new]])  # the first two were absorbed by the version
    assert absorbed(stored, fresh) == 2 and absorbed(stored, np.array([new])) == 0
    np.testing.assert_allclose(sequence_state(art, 0, fresh), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        direct = art.model.last_state(torch.from_numpy(
            np.concatenate([stored, [new]])[-art.model.config.max_len:][None] + 1))[0].numpy()
    np.testing.assert_allclose(expected, direct, rtol=1e-5, atol=1e-6)
