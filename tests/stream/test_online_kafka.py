"""The online trainer on a real Kafka-protocol broker (tansu): learns, dead-letters, resumes once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import numpy as np
import pytest

from liverec.registry import latest_version
from liverec.serve.process import CLI, free_port, stop
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


def applied_so_far(registry) -> int:
    """Events the newest published version has taken in (0 while a publish is being pruned)."""
    try:
        manifest = json.loads((registry / "versions" / str(latest_version(registry)) / "manifest.json").read_text())
    except (OSError, ValueError):
        return 0
    return manifest.get("events_applied", 0)


def wait_applied(registry, count: int, trainer: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while applied_so_far(registry) < count:
        assert trainer.poll() is None, "the trainer exited"
        assert time.monotonic() < deadline, f"only {applied_so_far(registry)} of {count} events applied"
        time.sleep(0.1)


def test_the_trainer_survives_a_paused_broker(own_kafka_broker, registries, tmp_path):
    """`liverec online` against a broker that stops answering for longer than the group session:
    one line when it goes, one when it is back, then later events are applied, none twice."""
    broker, address = own_kafka_broker
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    base = OnlineState.load(registry, OnlineConfig()).history.sum()
    url = f"kafka://{address}/events"
    producer = open_log(url)
    producer.append([Event(f"k{u % 5}", str(u % 9), "click") for u in range(20)])
    output = tmp_path / "trainer.log"
    with output.open("wb") as out:
        trainer = subprocess.Popen(CLI + ["online", str(registry), "--log", url, "--set", "publish_ms=0"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_applied(registry, 20, trainer, timeout=60)
        os.kill(broker.pid, signal.SIGSTOP)  # unreachable: connections hang, nothing answers
        time.sleep(8)  # > session.timeout.ms (6 s): the group session expires, a rebalance follows
        os.kill(broker.pid, signal.SIGCONT)
        producer.append([Event(f"k{u % 3}", str(u % 7), "purchase") for u in range(15)])
        wait_applied(registry, 35, trainer, timeout=90)
    finally:
        stop(trainer)
        producer.close()
    text = output.read_text()
    assert trainer.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    assert text.count("unreachable") == 1 and text.count("reachable again") == 1, text[-3000:]
    final = OnlineState.load(registry, OnlineConfig())
    assert final.counters.applied == 35
    assert np.isclose(final.history.sum() - base, 20 + 15 * 3)  # each event once: no rewind after the rebalance


def test_the_trainer_waits_for_a_broker_started_after_it(registries, tmp_path, start_broker):
    """`liverec online` started while its broker is down: one line saying so, no crash, and the
    events are applied once the broker is up."""
    pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed (liverec[kafka])")
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    port = free_port()
    url = f"kafka://127.0.0.1:{port}/events"
    output = tmp_path / "trainer.log"
    with output.open("wb") as out:
        trainer = subprocess.Popen(CLI + ["online", str(registry), "--log", url, "--set", "publish_ms=0"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "unreachable" not in output.read_text():  # it noticed, and is still running
            assert trainer.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(3)  # several more failed attempts: still one line
        start_broker(port)
        producer = open_log(url)
        producer.append([Event(f"w{u % 4}", str(u % 6), "click") for u in range(12)])
        producer.close()
        wait_applied(registry, 12, trainer, timeout=90)
    finally:
        stop(trainer)
    text = output.read_text()
    assert trainer.returncode == 0 and "Traceback" not in text, text[-3000:]
    assert text.count("unreachable") == 1 and text.count("reachable again") == 1, text[-3000:]
