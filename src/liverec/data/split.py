"""From RawEvents to a Dataset: filters, id vocabularies, and train/valid/test splits.

Every split is vectorised over users (sorts and per-user ranks, no loop per user).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liverec.data.dataset import Dataset
from liverec.data.filters import binarize, dedupe, k_core
from liverec.data.interactions import Interactions, RawEvents
from liverec.data.vocab import IdVocab
from liverec.errors import LiverecError

SPLITS = ("given", "loo", "temporal", "ratio")


@dataclass
class DataConfig:
    """How to turn events into a Dataset."""

    split: str = "loo"  # given | loo | temporal | ratio
    valid: bool = True  # hold out a validation part
    valid_ratio: float = 0.1  # ratio/temporal; for `given` without a shipped valid part, the
    # fraction of each user's train carved at random (NGCF tuned on a random 10% of train)
    test_ratio: float = 0.2  # ratio/temporal
    min_rating: float | None = None  # keep events rated >= this (binarize)
    min_user_interactions: int = 0  # k-core threshold for users
    min_item_interactions: int = 0  # k-core threshold for items
    dedupe: bool = True  # one event per (user, item): the latest
    seed: int = 0  # for the random parts of `ratio` and `given`
    columns: dict | None = None  # column mapping for tables
    # `given` without a shipped valid part: carve at random, or "last": the last valid_ratio of each
    # user's train events in file order (for files whose per-user lists are in time order and whose
    # test part looks later than a random draw, e.g. the LightGCN Gowalla split: BENCHMARKS.md)
    valid_carve: str = "random"


Split = tuple[Interactions, Interactions | None, Interactions]


def _rank_in_user(user: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """For events sorted by user: (0-based rank within the user's block, size of that block)."""
    counts = np.bincount(user, minlength=num_users)
    starts = np.cumsum(counts) - counts
    return np.arange(len(user)) - starts[user], counts[user]


def _check_ratios(valid_ratio: float, test_ratio: float, valid: bool) -> None:
    if not 0 < test_ratio < 1 or not 0 <= valid_ratio < 1 or (valid and valid_ratio + test_ratio >= 1):
        raise LiverecError(
            f"valid_ratio={valid_ratio}, test_ratio={test_ratio}: need 0 < test_ratio < 1, "
            "0 <= valid_ratio and valid_ratio + test_ratio < 1"
        )


def leave_one_out(inter: Interactions, valid: bool) -> Split:
    """Per user by time (ties: array order): last -> test, second-to-last -> valid.

    Users with >= 3 events give one test (and one valid when `valid`); 2 events: 1 train, 1 test;
    1 event: train only. Parts come out sorted by user, then time.
    """
    ordered = inter.sorted_by_user_time()
    rank, size = _rank_in_user(ordered.user, inter.num_users)
    from_end = size - rank - 1  # 0 = the user's last event
    is_test = (from_end == 0) & (size >= 2)
    is_valid = (from_end == 1) & (size >= 3) if valid else np.zeros(len(ordered), dtype=bool)
    train = ordered.select(~is_test & ~is_valid)
    return train, (ordered.select(is_valid) if valid else None), ordered.select(is_test)


def temporal_split(inter: Interactions, valid_ratio: float, test_ratio: float, valid: bool) -> Split:
    """Global time cuts: the latest test_ratio of events -> test, the valid_ratio before -> valid.

    Cuts fall between distinct timestamps, so every train event is strictly older than every
    valid event, and valid strictly older than test (ties go to the later part). Needs real
    times: the positions that sequence files give as timestamps are not comparable across users.
    """
    if inter.timestamp is None:
        raise LiverecError("split=temporal needs timestamps and this data has none; use loo, ratio or given")
    _check_ratios(valid_ratio, test_ratio, valid)
    n = len(inter)
    times = np.sort(inter.timestamp)
    test_start = min(int(round(n * (1 - test_ratio))), n - 1)
    valid_start = int(round(n * (1 - test_ratio - valid_ratio))) if valid else test_start
    test_cut, valid_cut = times[test_start], times[min(valid_start, test_start)]
    ts = inter.timestamp
    is_test = ts >= test_cut
    is_valid = (ts >= valid_cut) & ~is_test
    if not np.any(~is_test & ~is_valid):
        raise LiverecError(
            "split=temporal left train empty: too few distinct timestamps for these ratios"
        )
    train = inter.select(~is_test & ~is_valid)
    return train, (inter.select(is_valid) if valid else None), inter.select(is_test)


def _random_holdout(inter: Interactions, fractions: list[float], rng: np.random.Generator):
    """Per user, shuffle events and hand out round(f * n) to each part in `fractions`, in turn,
    always leaving the user at least one remaining (train) event. Returns a part id per event in
    `inter`'s order: 0..len(fractions)-1 for the held-out parts, len(fractions) for train."""
    order = np.lexsort((rng.random(len(inter)), inter.user))
    rank, size = _rank_in_user(inter.user[order], inter.num_users)
    part = np.full(len(inter), len(fractions), dtype=np.int64)
    taken = np.zeros(len(inter), dtype=np.int64)
    for k, fraction in enumerate(fractions):  # one or two parts, not a loop per user
        want = np.floor(fraction * size + 0.5).astype(np.int64)
        want = np.minimum(want, size - 1 - taken)  # keep >= 1 train event per user
        hit = (rank >= taken) & (rank < taken + want)
        part[order[hit]] = k
        taken = taken + want
    return part


def ratio_split(
    inter: Interactions, valid_ratio: float, test_ratio: float, valid: bool, seed: int
) -> Split:
    """Seeded per-user random split: round(test_ratio * n) of each user's events -> test,
    round(valid_ratio * n) -> valid; every user keeps at least one train event."""
    _check_ratios(valid_ratio, test_ratio, valid)
    fractions = [test_ratio, valid_ratio] if valid else [test_ratio]
    part = _random_holdout(inter, fractions, np.random.default_rng(seed))
    train = inter.select(part == len(fractions))
    return train, (inter.select(part == 1) if valid else None), inter.select(part == 0)


def _last_holdout(inter: Interactions, fraction: float) -> np.ndarray:
    """Per user, the last round(fraction * n) events in array order -> part 0, the rest -> 1;
    every user keeps at least one event in part 1."""
    order = np.argsort(inter.user, kind="stable")
    rank, size = _rank_in_user(inter.user[order], inter.num_users)
    want = np.minimum(np.floor(fraction * size + 0.5).astype(np.int64), size - 1)
    part = np.ones(len(inter), dtype=np.int64)
    part[order[rank >= size - want]] = 0
    return part


def given_split(
    inter: Interactions, given: np.ndarray, valid: bool, valid_ratio: float, seed: int,
    carve: str = "random",
) -> Split:
    """The source's own split. Without a shipped valid part and with `valid`, carve valid_ratio of
    each user's train, a seeded random draw or (carve = "last") the user's last events in file order
    (at least one train event stays); without `valid`, a shipped valid part joins train."""
    test = inter.select(given == "test")
    has_valid = bool(np.any(given == "valid"))
    if not valid:
        return inter.select((given == "train") | (given == "valid")), None, test
    train = inter.select(given == "train")
    if has_valid:
        return train, inter.select(given == "valid"), test
    if carve == "last":
        part = _last_holdout(train, valid_ratio)
    else:
        part = _random_holdout(train, [valid_ratio], np.random.default_rng(seed))
    return train.select(part == 1), train.select(part == 0), test


def _apply_filters(ev: RawEvents, cfg: DataConfig) -> RawEvents:
    name = ev.name or "(unnamed)"
    if len(ev) == 0:
        raise LiverecError(f"data set {name} has no events")
    if cfg.dedupe:
        ev = dedupe(ev)
    if cfg.min_rating is not None:
        ev = binarize(ev, cfg.min_rating)
        if len(ev) == 0:
            raise LiverecError(f"min_rating={cfg.min_rating} removed every event of {name}")
    if cfg.min_user_interactions > 1 or cfg.min_item_interactions > 1:
        ev = k_core(ev, cfg.min_user_interactions, cfg.min_item_interactions)
        if len(ev) == 0:
            raise LiverecError(
                f"k-core filter (min_user_interactions={cfg.min_user_interactions}, "
                f"min_item_interactions={cfg.min_item_interactions}) removed every event of {name}"
            )
    return ev


def make_dataset(ev: RawEvents, cfg: DataConfig) -> Dataset:
    """Filter, encode (vocabularies over all remaining events) and split events into a Dataset."""
    if cfg.split not in SPLITS:
        raise LiverecError(f"unknown split {cfg.split!r}; use one of {', '.join(SPLITS)}")
    if cfg.valid_carve not in ("random", "last"):
        raise LiverecError(f"dataset.valid_carve must be random or last, not {cfg.valid_carve!r}")
    if cfg.split == "given" and ev.given_split is None:
        raise LiverecError(
            f"split=given, but data set {ev.name or '(unnamed)'} ships no split; use loo, temporal or ratio"
        )
    ev = _apply_filters(ev, cfg)
    users, user_idx = IdVocab.from_raw(ev.user)
    items, item_idx = IdVocab.from_raw(ev.item)
    inter = Interactions(
        user_idx, item_idx, len(users), len(items),
        timestamp=None if ev.timestamp is None else ev.timestamp.astype(np.int64),
        weight=None if ev.rating is None else ev.rating.astype(np.float32),
    )
    if cfg.split == "loo":
        train, valid, test = leave_one_out(inter, cfg.valid)
    elif cfg.split == "temporal":
        train, valid, test = temporal_split(inter, cfg.valid_ratio, cfg.test_ratio, cfg.valid)
    elif cfg.split == "ratio":
        train, valid, test = ratio_split(inter, cfg.valid_ratio, cfg.test_ratio, cfg.valid, cfg.seed)
    else:
        train, valid, test = given_split(
            inter, ev.given_split, cfg.valid, cfg.valid_ratio, cfg.seed, cfg.valid_carve
        )
    if len(test) == 0:
        raise LiverecError(f"split={cfg.split} left the test part of {ev.name or '(unnamed)'} empty")
    return Dataset(
        name=ev.name or "data", users=users, items=items, train=train, valid=valid, test=test,
        item_titles=dict(ev.item_titles),
    )
