"""Filters: dedupe, binarize and k-core on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.data.filters import binarize, dedupe, k_core
from liverec.data.interactions import RawEvents
from liverec.errors import LiverecError


def events(pairs, rating=None, timestamp=None) -> RawEvents:
    user = np.array([p[0] for p in pairs])
    item = np.array([p[1] for p in pairs])
    return RawEvents(
        user, item,
        None if rating is None else np.array(rating, dtype=np.float32),
        None if timestamp is None else np.array(timestamp, dtype=np.int64),
    )


def test_dedupe_keeps_latest_by_timestamp_not_array_order():
    ev = events([(1, 10), (1, 10), (2, 10), (1, 10), (1, 11)],
                rating=[1, 5, 3, 2, 4], timestamp=[50, 90, 10, 70, 60])
    out = dedupe(ev)
    # (1, 10) occurs at t=50, 90, 70: the t=90 event (rating 5) wins; original order is kept.
    assert list(zip(out.user.tolist(), out.item.tolist(), out.rating.tolist(), strict=True)) == [
        (1, 10, 5.0), (2, 10, 3.0), (1, 11, 4.0)]
    first = dedupe(ev, keep="first")
    assert first.rating.tolist() == [1.0, 3.0, 4.0]


def test_dedupe_ties_and_no_timestamps_use_last_occurrence():
    ev = events([("a", "x"), ("a", "x"), ("b", "x")], rating=[1, 2, 3], timestamp=[5, 5, 1])
    assert dedupe(ev).rating.tolist() == [2.0, 3.0]
    ev = events([("a", "x"), ("b", "x"), ("a", "x")], rating=[1, 2, 3])
    assert dedupe(ev).rating.tolist() == [2.0, 3.0]
    assert dedupe(ev, keep="first").rating.tolist() == [1.0, 2.0]
    with pytest.raises(LiverecError, match="keep"):
        dedupe(ev, keep="middle")


def test_dedupe_keeps_given_split_aligned():
    ev = events([(0, 1), (0, 1), (0, 2)])
    ev.given_split = np.array(["train", "test", "train"])
    out = dedupe(ev)
    assert out.item.tolist() == [1, 2] and out.given_split.tolist() == ["test", "train"]


def test_binarize():
    ev = events([(1, 1), (1, 2), (2, 1), (2, 3)], rating=[5, 3.5, 4, 1])
    out = binarize(ev, 4)
    assert list(zip(out.user.tolist(), out.item.tolist(), strict=True)) == [(1, 1), (2, 1)]
    assert out.rating.tolist() == [5.0, 4.0]
    with pytest.raises(LiverecError, match="needs ratings"):
        binarize(events([(1, 1)]), 4)


def test_k_core_cascades_until_stable():
    # Round 1 drops user D (1 event); that leaves item 3 with one event (C's), dropped in round 2;
    # that leaves C with one event, dropped in round 3. A and B form the 2-core.
    ev = events([("A", 1), ("A", 2), ("B", 1), ("B", 2), ("C", 2), ("C", 3), ("D", 3)])
    out = k_core(ev, min_user=2, min_item=2)
    assert list(zip(out.user.tolist(), out.item.tolist(), strict=True)) == [
        ("A", 1), ("A", 2), ("B", 1), ("B", 2)]
    # A one-sided threshold: only users need 2 events.
    out = k_core(ev, min_user=2, min_item=0)
    assert sorted(set(out.user.tolist())) == ["A", "B", "C"]
    # Thresholds <= 1 keep everything; an impossible threshold removes everything.
    assert len(k_core(ev, 1, 1)) == len(ev)
    assert len(k_core(ev, min_user=3, min_item=1)) == 0


def test_k_core_result_satisfies_thresholds():
    rng = np.random.default_rng(0)
    ev = events(list(zip(rng.integers(0, 60, 800).tolist(), rng.zipf(1.5, 800).tolist(), strict=True)))
    out = k_core(dedupe(ev), min_user=5, min_item=3)
    assert len(out) > 0
    assert np.unique(out.user, return_counts=True)[1].min() >= 5
    assert np.unique(out.item, return_counts=True)[1].min() >= 3
