"""The Kafka log against a real broker (tansu): keyed appends, groups, seek, commit, dead letters."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from liverec.stream import Event, open_log, validate

pytestmark = pytest.mark.kafka


def drain(log, want: int, rounds: int = 60):
    """Poll until `want` events arrived (the first poll also joins the consumer group)."""
    batches = []
    for _ in range(rounds):
        batch, reason = log.poll(max_events=1000, timeout=0.5)
        if len(batch):
            batches.append((batch, reason))
        if sum(len(b) for b, _ in batches) >= want:
            break
    return batches


def test_kafka_roundtrip_keeps_each_users_order(kafka_broker):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    log = open_log(f"kafka://{kafka_broker}/{topic}", group="g1")
    events = [Event(f"u{k % 7}", f"i{k}", "click", 1.0, 1_600_000_000 + k) for k in range(200)]
    events.append(Event("u1", "i1", "hover"))  # invalid: lands in the dead-letter topic
    log.append(events)
    log.seek({})
    batches = drain(log, len(events))
    user = np.concatenate([b.user for b, _ in batches])
    item = np.concatenate([b.item for b, _ in batches])
    reason = np.concatenate([r for _, r in batches])
    assert len(user) == len(events) and (reason != "").sum() == 1
    for u in range(7):  # one user's events arrive in the order they were sent
        got = [int(i[1:]) for i in item[(user == f"u{u}") & (reason == "")]]
        assert got == sorted(got) and len(got) == len(range(u, 200, 7))
    position = log.position()
    assert sum(position.values()) == len(events)  # offsets start at 0 in every partition
    log.commit(position)
    assert log.committed() == position
    for batch, why in batches:
        log.dead_letter(validate(batch, why)[1])
    log.close()

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    dead = Consumer({"bootstrap.servers": kafka_broker, "group.id": "dlq"})
    dead.assign([TopicPartition(f"{topic}.dead-letters", p, OFFSET_BEGINNING) for p in range(4)])
    got = []
    for _ in range(40):
        got += [json.loads(m.value()) for m in dead.consume(10, 0.5) if m.error() is None]
        if got:
            break
    dead.close()
    assert len(got) == 1 and "type must be one of" in got[0]["reason"] and got[0]["user"] == "u1"


def test_kafka_seek_resumes_from_a_stored_position(kafka_broker):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    writer = open_log(f"kafka://{kafka_broker}/{topic}")
    writer.append([Event("u1", f"i{k}") for k in range(10)])
    first = open_log(f"kafka://{kafka_broker}/{topic}", group="g2")
    first.seek({})
    drain(first, 10)
    (partition, end), = first.position().items()  # one user: one partition
    first.close()
    writer.append([Event("u1", "late")])
    second = open_log(f"kafka://{kafka_broker}/{topic}", group="g2")
    second.seek({partition: end - 2})  # e.g. the position stored in the last published model
    items = np.concatenate([b.item for b, _ in drain(second, 3)])
    assert items.tolist() == ["i8", "i9", "late"]
    second.close()
    writer.close()


def test_non_json_messages_are_dead_letters(kafka_broker):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    log = open_log(f"kafka://{kafka_broker}/{topic}", group="g3")
    log._produce(topic, [b"u1", b"u1"], [b"{oops", json.dumps(Event("u1", "i1").to_json()).encode()])
    log.seek({})
    batch, reason = drain(log, 2)[0]
    assert reason.tolist() == ["not a JSON object", ""]
    log.close()
