"""The Kafka event log (confluent-kafka): one topic, messages keyed by user, JSON values.

Keying by user sends all of one user's events to the same partition, so they stay in order. The
consumer joins a consumer group; when partitions are assigned it starts each one at the position
given to `seek` (the online trainer's state in the registry), so Kafka's committed offsets only
report progress. One trainer per group: state is not split between group members.

Invalid events go to the topic `<topic>.dead-letters` with the reason (at-least-once: a replay
after a crash may write a dead letter twice; each carries its source partition and offset).

A broker that is briefly unreachable (down, paused, or cut off by the network) is survived:
librdkafka reconnects on its own, and its stream of per-connection errors becomes one warning when
the outage starts and one when the broker answers again. When the outage outlasts the group session
(`session.timeout.ms`), the group rebalances; partitions assigned again resume at the position this
consumer has handed out so far, never at an older committed offset (which would apply events twice).

Works with any Kafka-protocol broker: Apache Kafka, Redpanda, tansu (the tests use tansu).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from liverec.errors import LiverecError
from liverec.stream.log import Position
from liverec.stream.schema import DeadLetters, Event, EventBatch, make_batch

log = logging.getLogger("liverec.stream")

_FIELDS = ("user", "item", "type", "value", "timestamp", "context")
_CONSUMER_OPTIONS = {
    "enable.auto.commit": False,  # progress is committed explicitly, after the model is published
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 50,  # a quiet topic answers a fetch after 50 ms: bounds the added latency
    "session.timeout.ms": 6000,  # a restarted trainer rejoins its group within seconds
    "heartbeat.interval.ms": 500,
}


def _kafka():
    try:
        import confluent_kafka
    except ImportError:
        raise LiverecError("kafka:// logs need confluent-kafka: pip install 'liverec[kafka]'") from None
    return confluent_kafka


# librdkafka log facilities that mean the broker cannot be reached (refused or timed-out
# connections, an expired group session); other messages are passed on at their own level
_OUTAGE_FACILITIES = ("FAIL", "REQTMOUT", "SESSTMOUT")


class BrokerHealth:
    """librdkafka's `logger` and `error_cb`: one warning when the broker becomes unreachable and
    one when it answers again, instead of a line per reconnect attempt (every ~100 ms)."""

    def __init__(self, servers: str) -> None:
        self.servers = servers
        self.down_since: float | None = None  # monotonic time of the first error of an outage
        self.outages = 0

    def log(self, level: int, fmt: str, *args) -> None:  # the `logging.Logger.log` signature
        facility = args[0] if args else ""
        if level >= logging.WARNING and facility in _OUTAGE_FACILITIES:
            self.failed(fmt % args)
        else:  # other warnings as they are; connection chatter (idle disconnects ...) for debugging
            log.log(level if level >= logging.WARNING else logging.DEBUG, fmt, *args)

    def failed(self, error: object) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("kafka: broker %s unreachable (%s); retrying until it answers, nothing is "
                        "skipped or applied twice", self.servers, error)
        else:
            log.debug("kafka: still unreachable: %s", error)

    def ok(self) -> None:
        """The broker answered (messages, an assignment or a commit)."""
        if self.down_since is not None:
            log.warning("kafka: broker %s reachable again after %.1f s; resuming",
                        self.servers, time.monotonic() - self.down_since)
            self.down_since = None


class KafkaEventLog:
    """`EventLog` over a Kafka topic, created with `partitions` partitions when missing."""

    def __init__(self, servers: str, topic: str, group: str = "liverec-online", partitions: int = 4) -> None:
        self.servers, self.topic, self.group, self.partitions = servers, topic, group, partitions
        self._producer = None
        self._consumer = None
        self._next: Position = {}
        self._seeked = False  # a position was given: partitions it lacks start at the beginning
        self._topic_ready = False
        self.health = BrokerHealth(servers)

    # ---- producer ---------------------------------------------------------------------------

    def ensure_topic(self, timeout: float = 30.0) -> None:
        """Create the topic if the broker does not have it yet; a broker that does not answer
        within `timeout` s is a LiverecError (one line, no traceback)."""
        if self._topic_ready:
            return
        kafka = _kafka()
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self._client_options())
        try:
            meta = admin.list_topics(timeout=timeout)
        except kafka.KafkaException as e:
            self.health.failed(e)
            raise LiverecError(f"kafka: broker {self.servers} did not answer within {timeout:g} s ({e})") from None
        for name in (self.topic, f"{self.topic}.dead-letters"):
            if name in meta.topics:
                continue
            future = admin.create_topics([NewTopic(name, self.partitions, 1)])[name]
            try:
                future.result(timeout=30)
            except kafka.KafkaException as e:  # another client created it first
                if e.args[0].code() != kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        self._topic_ready = True
        self.health.ok()

    def _client_options(self) -> dict:
        return {"bootstrap.servers": self.servers, "error_cb": self.health.failed, "logger": self.health}

    def _produce(self, topic: str, keys: list[bytes], values: list[bytes]) -> None:
        kafka = _kafka()
        if self._producer is None:
            self.ensure_topic()
            self._producer = kafka.Producer({
                **self._client_options(), "linger.ms": 1, "enable.idempotence": False,
            })
        failed: list[str] = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failed.append(str(err))

        for key, value in zip(keys, values, strict=True):  # the client API takes one message a call
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.05)
        left = self._producer.flush(30)
        if left or failed:
            raise LiverecError(
                f"kafka: {left} event(s) not delivered to {self.servers}/{topic} within 30 s"
                + (f" ({failed[0]})" if failed else "")
            )

    def append(self, events: list[Event]) -> None:
        keys = [str(e.user).encode() for e in events]
        values = [json.dumps(e.to_json()).encode() for e in events]
        self._produce(self.topic, keys, values)

    # ---- consumer ---------------------------------------------------------------------------

    def _consumer_ready(self, retry_after: float | None = None):
        """The consumer, created on first use. With `retry_after`, a broker that is down (e.g. not
        started yet) gives None after that many seconds instead of an error, so a trainer started
        before its broker waits for it (one log line) and still sees its stop signal."""
        if self._consumer is None:
            kafka = _kafka()
            try:
                self.ensure_topic(30.0 if retry_after is None else max(retry_after, 1.0))
            except LiverecError:
                if retry_after is None:
                    raise
                return None
            self._consumer = kafka.Consumer({
                **self._client_options(), "group.id": self.group, **_CONSUMER_OPTIONS,
            })
            self._consumer.subscribe([self.topic], on_assign=self._on_assign)
        return self._consumer

    def _on_assign(self, consumer, partitions) -> None:
        kafka = _kafka()
        for tp in partitions:
            # also after a rebalance (e.g. the group session expired during an outage): continue
            # where this consumer is, not at the group's committed offset or the first seek
            if tp.partition in self._next:
                tp.offset = self._next[tp.partition]
            elif self._seeked:
                tp.offset = kafka.OFFSET_BEGINNING
        consumer.assign(partitions)
        self.health.ok()
        log.info("kafka: assigned partitions %s of %s", [tp.partition for tp in partitions], self.topic)

    def poll(self, max_events: int, timeout: float) -> tuple[EventBatch, np.ndarray]:
        consumer = self._consumer_ready(retry_after=timeout)
        messages = [] if consumer is None else consumer.consume(num_messages=max_events, timeout=timeout)
        good = []
        for m in messages:  # errors are rare, per-connection notices; the batch itself is kept
            if m.error() is None:
                good.append(m)
            else:
                self.health.failed(m.error())
        if good:
            self.health.ok()
        partition = np.fromiter((m.partition() for m in good), np.int64, len(good))
        offset = np.fromiter((m.offset() for m in good), np.int64, len(good))
        rows, not_json = _decode([m.value() for m in good])
        columns = {f: [r.get(f) for r in rows] for f in _FIELDS}
        stamps = [m.timestamp()[1] / 1000.0 for m in good]  # the broker's append time (ms)
        columns["timestamp"] = [s if t is None else t for t, s in zip(columns["timestamp"], stamps, strict=True)]
        batch, reason = make_batch(columns, partition, offset)
        reason = np.where(not_json, "not a JSON object", reason)
        for p in np.unique(partition).tolist():
            self._next[p] = int(offset[partition == p].max()) + 1
        return batch, reason

    def position(self) -> Position:
        return dict(self._next)

    def seek(self, position: Position) -> None:
        self._seeked = True
        self._next = dict(position)
        if self._consumer is not None:
            kafka = _kafka()
            for tp in self._consumer.assignment():
                offset = position.get(tp.partition, kafka.OFFSET_BEGINNING)
                self._consumer.seek(kafka.TopicPartition(self.topic, tp.partition, offset))

    def commit(self, position: Position) -> None:
        kafka = _kafka()
        offsets = [kafka.TopicPartition(self.topic, p, o) for p, o in sorted(position.items())]
        if not offsets:
            return
        consumer = self._consumer_ready(retry_after=1.0)
        if consumer is None:
            return  # broker down: the next publish reports progress again
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except kafka.KafkaException as e:  # progress report only: the registry holds the truth
            self.health.failed(e)
        else:
            self.health.ok()

    def committed(self) -> Position:
        kafka = _kafka()
        consumer = self._consumer_ready()
        meta = consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        asked = [kafka.TopicPartition(self.topic, p) for p in sorted(meta.partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(asked, timeout=30) if tp.offset >= 0}

    def end(self) -> Position:
        """The position after the newest event of every partition (high watermarks)."""
        kafka = _kafka()
        consumer = self._consumer_ready()
        meta = consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        return {p: consumer.get_watermark_offsets(kafka.TopicPartition(self.topic, p), timeout=30)[1]
                for p in sorted(meta.partitions)}

    def dead_letter(self, dead: DeadLetters) -> None:
        b = dead.batch
        keys = [u.encode() for u in b.user.tolist()]
        values = [
            json.dumps({"partition": p, "offset": o, "user": u, "item": i, "type": t, "value": v,
                        "timestamp": s, "context": c, "reason": r, "at": time.time()}).encode()
            for p, o, u, i, t, v, s, c, r in zip(
                b.partition.tolist(), b.offset.tolist(), b.user.tolist(), b.item.tolist(),
                b.type.tolist(), b.value.tolist(), b.timestamp.tolist(), b.context.tolist(),
                dead.reason.tolist(), strict=True)
        ]
        while values:  # the position must not move past events whose dead letter is not stored
            try:
                self._produce(f"{self.topic}.dead-letters", keys, values)
                break
            except LiverecError as e:  # broker unreachable: retry (a retry may store a copy twice)
                self.health.failed(e)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _decode(values: list[bytes | None]) -> tuple[list[dict], np.ndarray]:
    """JSON message values -> dicts (one C-level parse for the whole batch); rows that are not
    JSON objects become {} and are flagged."""
    try:
        rows = json.loads(b"[" + b",".join(v or b"null" for v in values) + b"]")
    except (json.JSONDecodeError, UnicodeDecodeError):  # one bad message: parse one by one
        rows = [_loads(v) for v in values]
    not_json = np.fromiter((not isinstance(r, dict) for r in rows), bool, len(rows))
    return [r if isinstance(r, dict) else {} for r in rows], not_json


def _loads(value: bytes | None):
    try:
        return json.loads(value) if value is not None else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
