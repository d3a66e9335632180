"""Stream preprocessing of one micro-batch, with array operations only: dedupe, burst filtering,
sessionisation.

- dedupe: the same (user, item, type) again within `window` seconds of the previous copy is a
  double-send (client retry, double click), not new evidence;
- bursts: a user sending more than `max_rate` events per second within the batch is a bot or a
  runaway client; all of that user's events in the batch are dropped;
- sessions: a user's events belong to one session until the user is inactive for more than `gap`
  seconds of event time (30 minutes by default, the usual web-analytics convention). Every event
  gets `batch.session`, a session id unique across users and batches (ids are handed out in order,
  so a larger id started later), and `batch.session_index`, its position in that session (0 for
  the session's first event). Sessions continue across micro-batches and restarts: the last event
  time, session id and length of each recently active user are kept in `Sessions`, which the
  online trainer publishes with its state. Within a batch a user's events are ordered by event
  time; an event older than the user's previous one (a late arrival) joins the current session.

What the online trainer does with sessions: `max_session_events` caps the events one session
contributes to the model (later ones are counted in `counters.filtered`). A binge or a scraper that
stays under the per-batch rate limit by spreading out over many batches would otherwise dominate its
user's history, and a user's one long visit would outweigh many short ones. `session` and
`session_index` are there for sequence models to cut their training sequences by; none of the
online models reads them yet.

Dedupe and bursts look inside the batch only (a micro-batch spans the recent past), so they cost
O(n log n) per batch and keep no state; sessions cost O(n log n + active users) per batch.
"""

from __future__ import annotations

import numpy as np

from liverec.stream.ids import KeyTable
from liverec.stream.schema import EventBatch


def duplicate_mask(batch: EventBatch, window: float) -> np.ndarray:
    """(n,) True for events repeating the same (user, item, type) within `window` s of the last copy."""
    n = len(batch)
    if n < 2 or window <= 0:
        return np.zeros(n, dtype=bool)
    order = np.lexsort((batch.timestamp, batch.type, batch.item, batch.user))  # by key, then time
    u, i, t, s = batch.user[order], batch.item[order], batch.type[order], batch.timestamp[order]
    same_key = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])
    repeat = np.concatenate([[False], same_key & (s[1:] - s[:-1] < window)])
    out = np.zeros(n, dtype=bool)
    out[order] = repeat
    return out


def burst_mask(batch: EventBatch, max_rate: float) -> np.ndarray:
    """(n,) True for every event of users exceeding `max_rate` events/s over their span in the batch
    (the span counts as at least one second, so a user's first `max_rate` events always pass)."""
    n = len(batch)
    if n == 0 or max_rate <= 0:
        return np.zeros(n, dtype=bool)
    users, row = np.unique(batch.user, return_inverse=True)
    count = np.bincount(row, minlength=len(users))
    first = np.full(len(users), np.inf)
    last = np.full(len(users), -np.inf)
    np.minimum.at(first, row, batch.timestamp)
    np.maximum.at(last, row, batch.timestamp)
    rate = count / np.maximum(last - first, 1.0)  # (users,)
    return (rate > max_rate)[row]


class Sessions:
    """The open session of every user active within the last gap: last event time, id, length."""

    def __init__(self, table: KeyTable | None = None, next_id: int = 0, pruned_at: float = -np.inf) -> None:
        self.table = table or KeyTable(
            {"last": np.zeros(0), "session": np.zeros(0, np.int64), "length": np.zeros(0, np.int64)}
        )
        self.next_id = next_id  # the id the next session gets
        self.pruned_at = pruned_at  # event time of the last pruning of idle users

    def assign(self, user: np.ndarray, timestamp: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
        """(session id, index within the session) per event, (n,) int64 each; updates the state."""
        n = len(user)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        users, code = np.unique(user, return_inverse=True)  # one text sort; the rest is on numbers
        order = np.lexsort((np.arange(n), timestamp, code))  # by user, then time, then arrival
        group, t = code[order], timestamp[order]  # (n,) which user, event time
        first = np.r_[True, group[1:] != group[:-1]]  # (n,) the user's first event in the batch
        before = self.table.get(users, {"last": -np.inf, "session": -1, "length": 0})
        previous = np.where(first, before["last"][group], np.r_[-np.inf, t[:-1]])  # (n,)
        new = t - previous > gap  # a user never seen (or pruned) starts a session: inf > gap
        fresh = self.next_id + np.cumsum(new) - 1  # (n,) ids for the sessions starting here
        self.next_id += int(new.sum())
        # every user's first event either starts a session or continues its stored one, so a
        # forward fill from the last "anchor" never crosses into another user
        anchor = new | first
        at = np.maximum.accumulate(np.where(anchor, np.arange(n), 0))  # (n,) position of the anchor
        session = np.where(new, fresh, before["session"][group])[at]
        carried = np.where(new, 0, before["length"][group])[at]  # events of the session before the batch
        index = np.arange(n) - at + carried
        last = np.r_[first[1:], True]  # (n,) the user's last event in the batch (the latest in time)
        self.table.put(users, {"last": np.maximum(t[last], before["last"]), "session": session[last],
                               "length": index[last] + 1})
        out_session, out_index = np.empty(n, np.int64), np.empty(n, np.int64)
        out_session[order], out_index[order] = session, index
        return out_session, out_index

    def prune(self, now: float, gap: float) -> None:
        """Forget users idle for more than `gap` (their next event starts a new session anyway);
        done once per `gap` of event time so the table holds about the users active in one gap."""
        if now - self.pruned_at < gap:
            return
        self.table.keep(self.table.columns["last"] >= now - gap)
        self.pruned_at = now


def sessionise(batch: EventBatch, sessions: Sessions, gap: float) -> EventBatch:
    """`batch` with `session` and `session_index` set (see the module docstring)."""
    batch.session, batch.session_index = sessions.assign(batch.user, batch.timestamp, gap)
    if len(batch):
        sessions.prune(float(batch.timestamp.max()), gap)
    return batch
