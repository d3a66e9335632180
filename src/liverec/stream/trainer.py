"""The online trainer's loop: poll the log, validate, apply, publish; resumable exactly once.

Delivery: the log hands out events at least once (after a crash, everything after the last
published position is read again); applying is idempotent because the position is stored inside
the same registry version as the model state it produced. A version is therefore "the model after
exactly the events before its position", and a restarted trainer continues from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liverec.stream.log import EventLog
from liverec.stream.online import StreamState
from liverec.stream.preprocess import burst_mask, duplicate_mask, sessionise
from liverec.stream.schema import EventBatch, validate

log = logging.getLogger("liverec.stream")

PROGRESS_SECONDS = 10.0  # one log line this often while events flow


@dataclass
class RunStats:
    events: int = 0  # events read from the log in this run (valid and invalid)
    published: int = 0  # versions published in this run
    last_version: int | None = None
    seconds: float = 0.0


class OnlineTrainer:
    """Consumes `events` into `state` and publishes it into `registry`."""

    def __init__(
        self, state: StreamState, events: EventLog, registry: str | Path,
        on_apply: Callable[[], None] | None = None,
    ) -> None:
        """`on_apply` runs after every applied batch, before any publish (the in-process server
        swaps its model there, so freshness does not wait for the registry write)."""
        self.state, self.events, self.registry = state, events, Path(registry)
        self.on_apply = on_apply
        self.stats = RunStats()
        self._pending = 0  # events applied since the last publish
        self._last_publish = time.monotonic()

    def step(self, timeout: float = 0.05) -> int:
        """Poll one micro-batch, apply it, publish if due; returns the events read."""
        cfg = self.state.config
        batch, reason = self.events.poll(cfg.batch_size, timeout)
        if len(batch):
            valid, dead = validate(batch, reason)
            if len(dead):  # before the publish that moves the position past them
                self.events.dead_letter(dead)
                self.state.counters.dead += len(dead)
                log.info("dead-lettered %d event(s), e.g. offset %d: %s",
                         len(dead), int(dead.batch.offset[0]), dead.reason[0])
            self.state.apply(self._preprocess(valid))
            self.state.position = self.events.position()
            self._pending += len(batch)
            if self.on_apply is not None:
                self.on_apply()
            self.stats.events += len(batch)
        due_ms = (time.monotonic() - self._last_publish) * 1000 >= cfg.publish_ms
        if self._pending and (self._pending >= cfg.publish_every or due_ms):
            self.publish()
        return len(batch)

    def _preprocess(self, batch: EventBatch) -> EventBatch:
        """Drop duplicates and bursts (both off by default), assign sessions and cap their length
        (off by default); dropped events are counted in `counters.filtered`."""
        cfg = self.state.config
        drop = duplicate_mask(batch, cfg.dedupe_seconds) | burst_mask(batch, cfg.max_user_rate)
        batch = self._drop(batch, drop)  # dropped events neither open nor extend a session
        if cfg.session_gap > 0:
            sessionise(batch, self.state.sessions, cfg.session_gap)
            if cfg.max_session_events:
                batch = self._drop(batch, batch.session_index >= cfg.max_session_events)
        return batch

    def _drop(self, batch: EventBatch, drop: np.ndarray) -> EventBatch:
        if not drop.any():
            return batch
        self.state.counters.filtered += int(drop.sum())
        return batch.take(~drop)

    def publish(self) -> int:
        number = self.state.publish(self.registry)
        self.events.commit(self.state.position)  # progress report for lag monitoring only
        self.stats.published += 1
        self.stats.last_version = number
        self._pending = 0
        self._last_publish = time.monotonic()
        return number

    def run(
        self, stop: threading.Event | None = None, max_events: int | None = None,
        idle_exit: float | None = None,
    ) -> RunStats:
        """Until `stop` is set, `max_events` were read, or nothing arrived for `idle_exit` s."""
        stop = stop or threading.Event()
        self.events.seek(self.state.position)
        start = last_event = last_report = time.monotonic()
        reported = 0
        while not stop.is_set():
            if max_events is not None and self.stats.events >= max_events:
                break
            if self.step():
                last_event = time.monotonic()
            elif idle_exit is not None and time.monotonic() - last_event >= idle_exit:
                break
            now = time.monotonic()
            if now - last_report >= PROGRESS_SECONDS:
                rate = (self.stats.events - reported) / (now - last_report)
                c = self.state.counters
                log.info("online: %d events (%.0f/s), %d dead letters, version %s, %d users, %d items",
                         self.stats.events, rate, c.dead, self.stats.last_version,
                         len(self.state.users), len(self.state.items))
                last_report, reported = now, self.stats.events
        if self._pending:
            self.publish()
        self.stats.seconds = time.monotonic() - start
        return self.stats
