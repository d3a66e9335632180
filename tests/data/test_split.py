"""Splits: hand-checked examples and leakage proofs (disjointness, time order, global cuts)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from liverec.data.interactions import Interactions, RawEvents
from liverec.data.split import DataConfig, leave_one_out, make_dataset, ratio_split, temporal_split
from liverec.data.synthetic import synthetic_events
from liverec.errors import LiverecError


def inter(user, item, timestamp=None, num_users=None, num_items=None) -> Interactions:
    user, item = np.array(user, dtype=np.int64), np.array(item, dtype=np.int64)
    return Interactions(
        user, item, num_users or int(user.max()) + 1, num_items or int(item.max()) + 1,
        None if timestamp is None else np.array(timestamp, dtype=np.int64),
    )


def pairs(part: Interactions | None) -> set:
    return set() if part is None else set(zip(part.user.tolist(), part.item.tolist(), strict=True))


def test_leave_one_out_hand_example():
    # user 0: items 5,6,7,8 at t=3,1,2,3 -> by time 6,7,(5,8 tie: array order 5 then 8)
    # user 1: two events -> 1 train, 1 test; user 2: one event -> train only.
    data = inter([0, 0, 0, 1, 0, 1, 2], [5, 6, 7, 1, 8, 2, 3], [3, 1, 2, 9, 3, 4, 0])
    train, valid, test = leave_one_out(data, valid=True)
    assert pairs(test) == {(0, 8), (1, 1)}
    assert pairs(valid) == {(0, 5)}
    assert pairs(train) == {(0, 6), (0, 7), (1, 2), (2, 3)}
    assert train.user.tolist() == [0, 0, 1, 2] and train.item.tolist() == [6, 7, 2, 3]  # user, time
    train, none, test = leave_one_out(data, valid=False)
    assert none is None and pairs(test) == {(0, 8), (1, 1)}
    assert pairs(train) == {(0, 5), (0, 6), (0, 7), (1, 2), (2, 3)}


def test_leave_one_out_without_timestamps_uses_array_order():
    train, valid, test = leave_one_out(inter([0, 0, 0], [3, 1, 2]), valid=True)
    assert pairs(test) == {(0, 2)} and pairs(valid) == {(0, 1)} and pairs(train) == {(0, 3)}


def test_loo_on_synthetic_has_no_leakage():
    ds = make_dataset(synthetic_events(seed=3), DataConfig(split="loo"))
    train, valid, test = ds.train, ds.valid, ds.test
    assert not pairs(train) & pairs(test) and not pairs(train) & pairs(valid) and not pairs(valid) & pairs(test)
    assert len(train) + len(valid) + len(test) == 300 * 30
    assert np.bincount(test.user).tolist() == [1] * 300 and np.bincount(valid.user).tolist() == [1] * 300
    last_train = np.full(ds.num_users, -1)
    np.maximum.at(last_train, train.user, train.timestamp)
    valid_t = np.zeros(ds.num_users, dtype=np.int64)
    valid_t[valid.user] = valid.timestamp
    test_t = np.zeros(ds.num_users, dtype=np.int64)
    test_t[test.user] = test.timestamp
    assert np.all(last_train <= valid_t) and np.all(valid_t <= test_t)


def test_temporal_hand_example_with_ties():
    # Ten events at t=0..9: test = latest 20% (t>=8), valid = the 10% before (t=7).
    data = inter([0, 1] * 5, list(range(10)), list(range(10)))
    train, valid, test = temporal_split(data, valid_ratio=0.1, test_ratio=0.2, valid=True)
    assert sorted(test.timestamp.tolist()) == [8, 9] and valid.timestamp.tolist() == [7]
    assert sorted(train.timestamp.tolist()) == list(range(7))
    # Ties at the cut all go to the later part: no two parts share a timestamp.
    data = inter([0] * 6, range(6), [1, 2, 3, 3, 3, 4])
    train, _, test = temporal_split(data, valid_ratio=0.0, test_ratio=0.4, valid=False)
    assert sorted(test.timestamp.tolist()) == [3, 3, 3, 4] and sorted(train.timestamp.tolist()) == [1, 2]
    with pytest.raises(LiverecError, match="timestamps"):
        temporal_split(inter([0], [0]), 0.1, 0.2, True)
    with pytest.raises(LiverecError, match="train empty"):
        temporal_split(inter([0, 1], [0, 1], [5, 5]), 0.1, 0.2, True)


def test_temporal_is_a_global_cut():
    ds = make_dataset(synthetic_events(seed=1), DataConfig(split="temporal", valid_ratio=0.1, test_ratio=0.2))
    assert ds.train.timestamp.max() < ds.valid.timestamp.min()
    assert ds.valid.timestamp.max() < ds.test.timestamp.min()
    n = 300 * 30
    assert len(ds.train) + len(ds.valid) + len(ds.test) == n
    assert abs(len(ds.test) - 0.2 * n) <= 2 and abs(len(ds.valid) - 0.1 * n) <= 2


def test_ratio_split_counts_and_seed():
    # User 0 has 10 events: round(0.2*10)=2 test, round(0.1*10)=1 valid, 7 train.
    # User 1 has 1 event: train only (every user keeps a train event).
    data = inter([0] * 10 + [1], list(range(11)))
    train, valid, test = ratio_split(data, 0.1, 0.2, True, seed=0)
    assert np.bincount(test.user, minlength=2).tolist() == [2, 0]
    assert np.bincount(valid.user, minlength=2).tolist() == [1, 0]
    assert np.bincount(train.user, minlength=2).tolist() == [7, 1]
    assert pairs(train) | pairs(valid) | pairs(test) == pairs(data)
    again = ratio_split(data, 0.1, 0.2, True, seed=0)
    assert pairs(again[2]) == pairs(test) and pairs(again[1]) == pairs(valid)
    others = {frozenset(pairs(ratio_split(data, 0.1, 0.2, True, seed=s)[2])) for s in range(1, 8)}
    assert len(others) > 1  # the seed matters
    with pytest.raises(LiverecError, match="test_ratio"):
        ratio_split(data, 0.5, 0.6, True, seed=0)


def test_ratio_on_synthetic_is_disjoint_and_reproducible():
    ev = synthetic_events(seed=2)
    cfg = DataConfig(split="ratio", seed=7)
    a, b = make_dataset(ev, cfg), make_dataset(ev, cfg)
    assert np.array_equal(a.test.item, b.test.item) and np.array_equal(a.valid.user, b.valid.user)
    assert not pairs(a.train) & pairs(a.test) and not pairs(a.valid) & (pairs(a.train) | pairs(a.test))
    c = make_dataset(ev, dataclasses.replace(cfg, seed=8))
    assert pairs(c.test) != pairs(a.test)
    assert np.bincount(a.test.user).tolist() == [6] * 300  # round(0.2 * 30)


def given_events() -> RawEvents:
    user = np.array([0] * 10 + [1] * 2 + [0, 1, 2])
    item = np.array(list(range(10)) + [3, 4] + [20, 21, 22])
    split = np.array(["train"] * 12 + ["test"] * 3)
    return RawEvents(user, item, given_split=split, name="toy")


def test_given_split_carves_valid_from_train():
    ds = make_dataset(given_events(), DataConfig(split="given", valid=True, valid_ratio=0.1, seed=0))
    raw = lambda part: {(int(ds.users.raw[u]), int(ds.items.raw[i])) for u, i in pairs(part)}  # noqa: E731
    assert raw(ds.test) == {(0, 20), (1, 21), (2, 22)}
    # user 0: round(0.1 * 10) = 1 valid item; user 1: round(0.2) = 0.
    assert len(ds.valid) == 1 and raw(ds.valid) < {(0, i) for i in range(10)}
    assert raw(ds.train) | raw(ds.valid) == {(0, i) for i in range(10)} | {(1, 3), (1, 4)}
    # The test-only user and item still get ids: one vocabulary over all events.
    assert ds.num_users == 3 and ds.num_items == 13  # items 0..9 and 20..22
    same = make_dataset(given_events(), DataConfig(split="given", seed=0))
    assert pairs(same.valid) == pairs(ds.valid)


def test_given_split_keeps_one_train_item_per_user():
    ev = RawEvents(np.array([0, 0, 1, 0, 1]), np.array([1, 2, 3, 4, 5]),
                   given_split=np.array(["train", "train", "train", "test", "test"]))
    ds = make_dataset(ev, DataConfig(split="given", valid_ratio=0.9))
    assert np.bincount(ds.train.user, minlength=2).tolist() == [1, 1]
    assert np.bincount(ds.valid.user, minlength=2).tolist() == [1, 0]


def test_given_split_last_carve_takes_each_users_latest_train_events_in_file_order():
    # user 0's train list in file order: 9, 8, ..., 0; user 1's: 3, 4
    user = np.array([0] * 10 + [1] * 2 + [0, 1])
    item = np.array(list(range(9, -1, -1)) + [3, 4] + [20, 21])
    ev = RawEvents(user, item, given_split=np.array(["train"] * 12 + ["test"] * 2), name="toy")
    ds = make_dataset(ev, DataConfig(split="given", valid_ratio=0.2, valid_carve="last"))
    raw = lambda part: {(int(ds.users.raw[u]), int(ds.items.raw[i])) for u, i in pairs(part)}  # noqa: E731
    # user 0: round(0.2 * 10) = 2, the last two listed (1 and 0); user 1: round(0.4) = 0
    assert raw(ds.valid) == {(0, 1), (0, 0)}
    assert raw(ds.train) == {(0, i) for i in range(2, 10)} | {(1, 3), (1, 4)}
    one = make_dataset(ev, DataConfig(split="given", valid_ratio=0.9, valid_carve="last"))
    assert np.bincount(one.train.user, minlength=2).tolist() == [1, 1]  # one train event stays
    with pytest.raises(LiverecError, match="valid_carve"):
        make_dataset(ev, DataConfig(split="given", valid_carve="first"))


def test_given_split_shipped_valid_and_no_valid():
    ev = given_events()
    ev.given_split = ev.given_split.copy()
    ev.given_split[0] = "valid"
    ds = make_dataset(ev, DataConfig(split="given"))
    assert len(ds.valid) == 1 and len(ds.train) == 11
    ds = make_dataset(ev, DataConfig(split="given", valid=False))
    assert ds.valid is None and len(ds.train) == 12 and len(ds.test) == 3
    with pytest.raises(LiverecError, match="ships no split"):
        make_dataset(synthetic_events(num_users=5, num_items=10, events_per_user=3), DataConfig(split="given"))


def test_make_dataset_filters_and_errors():
    ev = RawEvents(np.array([1, 1, 1, 2, 2, 3]), np.array([10, 10, 11, 10, 12, 13]),
                   rating=np.array([5, 4, 2, 5, 5, 1], dtype=np.float32),
                   timestamp=np.array([1, 2, 3, 4, 5, 6]), item_titles={10: "Ten"}, name="tiny")
    ds = make_dataset(ev, DataConfig(split="loo", valid=False, min_rating=4))
    # dedupe keeps (1,10)@t=2 (rating 4); binarize drops ratings 2 and 1.
    assert ds.users.raw.tolist() == [1, 2] and ds.items.raw.tolist() == [10, 12]
    assert len(ds.train) + len(ds.test) == 3 and ds.title(10) == "Ten" and ds.name == "tiny"
    with pytest.raises(LiverecError, match="min_rating=6 removed every event"):
        make_dataset(ev, DataConfig(min_rating=6))
    with pytest.raises(LiverecError, match="k-core.*removed every event"):
        make_dataset(ev, DataConfig(min_user_interactions=5))
    with pytest.raises(LiverecError, match="unknown split 'random'"):
        make_dataset(ev, DataConfig(split="random"))
    with pytest.raises(LiverecError, match="test part .* empty"):
        make_dataset(ev.select(np.array([0])), DataConfig())


def test_datacfg_fields_are_the_contract():
    assert [(f.name, f.default) for f in dataclasses.fields(DataConfig)] == [
        ("split", "loo"), ("valid", True), ("valid_ratio", 0.1), ("test_ratio", 0.2),
        ("min_rating", None), ("min_user_interactions", 0), ("min_item_interactions", 0),
        ("dedupe", True), ("seed", 0), ("columns", None), ("valid_carve", "random")]


@pytest.mark.data
def test_real_gowalla_given_split():
    import os
    from pathlib import Path

    from liverec.data.readers import read_lightgcn

    root = os.environ.get("LIVEREC_DATA")
    if not root or not (Path(root) / "lightgcn-gowalla").is_dir():
        pytest.skip("real data set lightgcn-gowalla not available (set LIVEREC_DATA)")
    ev = read_lightgcn(Path(root) / "lightgcn-gowalla")
    ds = make_dataset(ev, DataConfig(split="given", valid=False))
    assert ds.summary() == {"users": 29_858, "items": 40_981, "train": 810_128, "valid": 0, "test": 217_242}
    ds = make_dataset(ev, DataConfig(split="given", valid=True, valid_ratio=0.1, seed=0))
    assert len(ds.train) + len(ds.valid) == 810_128 and len(ds.test) == 217_242
    assert abs(len(ds.valid) / 810_128 - 0.1) < 0.01
    assert np.bincount(ds.train.user, minlength=ds.num_users).min() >= 1
    key = lambda part: part.user * ds.num_items + part.item  # noqa: E731
    assert np.intersect1d(key(ds.train), key(ds.valid)).size == 0
