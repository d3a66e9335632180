"""The online trainer on a real Kafka-protocol broker (tansu): learns, dead-letters, resumes once."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest

from liverec.stream import Event, open_log
from liverec.stream.online import OnlineConfig, OnlineState
from liverec.stream.trainer import OnlineTrainer

pytestmark = pytest.mark.kafka


def test_trainer_consumes_kafka_and_resumes_without_duplicates(kafka_broker, registries, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    url = f"kafka://{kafka_broker}/events-{uuid.uuid4().hex[:8]}"
    producer = open_log(url)
    first = [Event(f"k{u % 5}", str(u % 9), "click") for u in range(40)] + [Event("k1", "1", "hover")]
    producer.append(first)
    base = OnlineState.load(registry, OnlineConfig()).history.sum()

    def run_until(total: int) -> OnlineState:
        state = OnlineState.load(registry, OnlineConfig(publish_ms=0))
        log = open_log(url, group="trainer")
        trainer = OnlineTrainer(state, log, registry)
        log.seek(state.position)
        for _ in range(200):  # the first polls also join the group
            trainer.step(timeout=0.2)
            if state.counters.applied + state.counters.dead >= total:
                break
        log.close()
        return state

    state = run_until(len(first))
    assert state.counters.dead == 1 and state.history.sum() - base == 40
    assert len(state.users) > len(OnlineState.load(registries["mf"], OnlineConfig()).users)
    producer.append([Event("k2", "3", "purchase")])
    resumed = run_until(len(first) + 1)  # a new process: state and position from the registry
    assert resumed.counters.applied + resumed.counters.dead == len(first) + 1
    assert np.isclose(resumed.history.sum() - base, 40 + 3)  # the purchase once, nothing replayed
    assert sum(resumed.position.values()) == len(first) + 1
    producer.close()
