"""Kafka in and out with confluent-kafka: TPS input, KPI, alert and dead-letter topics.

Input partitions are the unit of parallelism. Entity state lives in the shard of
the partition index (topics must be co-partitioned and keyed by entity id, as
for Kafka Streams joins), and every partition tells every shard its largest
event ts and whether it is idle, so each shard knows W = min over the
partitions that are not idle (contract §2).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import (
    Message as KafkaMessage,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    NewTopic,
)

from flows.commands import EXIT_FAILURE
from flows.decode import truncated
from flows.ledger import Ledger
from flows.runtime.core import add
from flows.runtime.outputs import DeadLetter, Output, Written, written
from flows.runtime.pipeline import SINK_METRICS, SOURCE_METRICS
from flows.settings import Runtime
from flows.sources import Marks, Message, decode_batch, refuse_ahead, stop_if_asked
from flows.timeutil import US_PER_MS, US_PER_SECOND

log = logging.getLogger("opscockpit.kafka")
LIBRDKAFKA_LOG = logging.getLogger("opscockpit.librdkafka")
LIBRDKAFKA_LOG.setLevel(logging.CRITICAL)

FETCH_QUEUE_BACKOFF_MS = 10  # a full local queue is checked again this soon
ADMIN_RECONNECT_BACKOFF_MS = 1  # a start's lookups: see KafkaSettings.admin
IDLE_POLL = 50 * US_PER_MS  # back-off between polls of a partition with nothing to read
BEHIND_POLL = 5 * US_PER_MS  # the same, with more on the broker than fetched (a fetch is ms away)
START_LOOKUP_S = 1.0  # asking the broker where a fresh partition starts or ends
STATS_EVERY_MS = 1000  # a reader's statistics: its lag, and when its broker last answered
SILENT_US = 10 * US_PER_SECOND  # a broker connected yet answering nothing this long is lost
REPEAT_S = 600  # an error librdkafka reports again and again is logged once this often
MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes
MESSAGE_OVERHEAD = 36  # what librdkafka counts against it beyond the key and value
BATCH_OVERHEAD = 61  # a record batch's header, which a broker counts too (max.message.bytes)
SHOWN_KEY = 80  # characters of a message key a log line shows
STOP_FLUSH_S = 10  # a stopped job waits this long for Kafka to take its last records
BROKER_FAILED = (KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError.NETWORK_EXCEPTION)
REACHING = (KafkaError._ALL_BROKERS_DOWN, *BROKER_FAILED)  # of whom a client reaches
SECRET_WORDS = ("password", "secret", "key", "token")
# How a partition reader reads, whatever --kafka-config says.
READING = {
    "group.id": "opscockpit",
    "enable.auto.commit": False,
    "enable.partition.eof": False,
    "auto.offset.reset": "error",
}


class KafkaSetupError(Exception):
    """The brokers or topics are not usable; the message is one line for the user."""


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and the librdkafka properties to use for every client."""

    bootstrap: str
    properties: tuple[tuple[str, str], ...] = ()

    def client(self, defaults: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration for one client: `defaults`, then the user's
        properties, then `extra` (what opscockpit needs to work at all).

        librdkafka's own log lines go to a quiet logger: broker trouble is reported
        once through error callbacks and `cockpit_kafka_up`, not every 50 ms.
        """
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": LIBRDKAFKA_LOG,
            **(defaults or {}),
            **dict(self.properties),
            **extra,
        }

    def consumer(self, **extra: Any) -> dict[str, Any]:
        """A partition reader: offsets live in bytewax recovery, never in a group, and
        an offset the broker no longer has is an error the reader answers
        (`_PartitionReader._rewind`), not a silent jump to the end.

        Once a partition's local queue holds queued.min.messages (100,000),
        librdkafka waits fetch.queue.backoff.ms (1 s) before it fetches again: a
        reader catching up on a backlog empties that queue in under a second, then
        waits out the rest (with the default, a quarter of a 342k-event catch-up
        was spent waiting).
        """
        return self.client({"fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS}, **READING, **extra)

    def admin(self, **extra: Any) -> dict[str, Any]:
        """A start's lookups (topics, partitions). Measured against Tansu, one
        lookup in two by a new admin client took ~53 ms, not ~1: the wait for a
        reconnection, at librdkafka's reconnect.backoff.ms (100 ms, jittered); at
        1 ms, ~13 ms. A start makes two of these lookups."""
        return self.client({"reconnect.backoff.ms": ADMIN_RECONNECT_BACKOFF_MS}, **extra)

    def producer(self, **extra: Any) -> dict[str, Any]:
        return self.client({"linger.ms": 20}, **extra)

    def check(self) -> None:
        """Build each kind of client once, so a property that is wrong for one of them
        (`fetch.max.bytes` below `message.max.bytes`, say) fails in one line at start."""
        try:
            Consumer(self.consumer()).close()
            Producer(self.producer()).flush(0)
        except KafkaException as exc:
            message = redact(self, exc.args[0].str())
            raise KafkaSetupError(f"invalid Kafka config: {message}") from None


def read_properties(path: Path) -> tuple[tuple[str, str], ...]:
    """librdkafka properties from a `key=value` file (`#` comments, blank lines)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise KafkaSetupError(f"cannot read Kafka config {path}: {exc.strerror}") from None
    pairs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise KafkaSetupError(f"{path}:{number}: expected key=value")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def describe(settings: KafkaSettings) -> str:
    """The client settings in force, every secret masked, for logs and errors (a
    property the readers override is not in force: not shown)."""
    shown = {
        key: ("***" if _is_secret(key) else value)
        for key, value in settings.client().items()
        if key != "logger" and key not in READING
    }
    return ", ".join(f"{key}={value}" for key, value in sorted(shown.items()))


def _is_secret(key: str) -> bool:
    return any(word in key for word in SECRET_WORDS)


def redact(settings: KafkaSettings, text: str) -> str:
    """`text` with the value of every secret-looking property masked."""
    for key, value in settings.properties:
        if value and _is_secret(key):
            text = text.replace(value, "***")
    return text


def cluster_metadata(settings: KafkaSettings, timeout_s: float) -> ClusterMetadata:
    """The brokers' topics; a one-line error when they cannot be reached."""
    errors: list[str] = []
    admin = AdminClient(settings.admin(error_cb=lambda err: errors.append(err.str())))
    try:
        return admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        detail = redact(settings, errors[-1] if errors else exc.args[0].str())
        raise KafkaSetupError(f"Kafka at {settings.bootstrap} is unreachable ({detail})") from None


def partitions_of(
    settings: KafkaSettings, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Partition count per topic; one-line errors when unreachable, missing, or not
    co-partitioned."""
    metadata = cluster_metadata(settings, timeout_s)
    counts = {}
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise KafkaSetupError(f"Kafka topic {topic!r} does not exist at {settings.bootstrap}")
        counts[topic] = len(found.partitions)
    if len(set(counts.values())) > 1:  # an entity's events would not meet in one shard
        told = ", ".join(f"{topic} {count}" for topic, count in counts.items())
        raise KafkaSetupError(
            f"topics read together must have as many partitions (co-partitioned), not {told}"
        )
    return counts


def part_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class _PartitionReader(StatefulSourcePartition[Message, int]):
    """Reads one Kafka partition, decodes, and reports its progress to every shard."""

    def __init__(self, source: TpsKafkaSource, topic: str, partition: int, offset: int) -> None:
        self.source, self.topic, self.partition = source, topic, partition
        self.name, self.shard = part_name(topic, partition), source.shard_of[partition]
        self.behind = False  # the latest poll found nothing, yet the broker holds more
        self.known_end = -1  # the partition's end as the start lookup found it
        self.marks = Marks(self.name, source.shards, source.clock(), source.idle_timeout)
        self.answered = source.clock()  # when the partition's leader last answered, as known
        self.clean_since = self.answered  # since when no error came (see `next_batch`)
        self.empty_polls = 0
        self.ledger = Ledger(SOURCE_METRICS)
        self.reach = Reachability(self.name)
        self._show_reach()
        source.board.publish(f"kafka:{self.name}", self.ledger)
        self.consumer = self._consumer()
        self.next_offset = self._start(offset)
        self.consumer.assign([TopicPartition(topic, partition, self.next_offset)])

    def _consumer(self) -> Consumer:
        return Consumer(
            self.source.kafka.consumer(
                **{
                    "statistics.interval.ms": STATS_EVERY_MS,
                    "stats_cb": self._stats,
                    "error_cb": self._error,
                }
            )
        )

    def _start(self, offset: int) -> int:
        """Where to start, as a number, with the lag there known from the first scrape.

        librdkafka resolves a symbolic offset (earliest, latest) only half a second
        after the assignment, so every fresh start waited that long, and it reports
        the lag only with its statistics. Without an answer from the broker, both are
        left to it.
        """
        answer = self._watermarks()
        if answer is None:
            return offset
        low, high = answer
        self.known_end = high
        if offset < 0:
            offset = low if offset == OFFSET_BEGINNING else high
        self._set_lag(high, offset)
        return int(offset)

    def _watermarks(self) -> tuple[int, int] | None:
        """The partition's first and end offsets, asked of the broker; None without
        an answer."""
        here = TopicPartition(self.topic, self.partition)
        try:
            answer = self.consumer.get_watermark_offsets(here, timeout=START_LOOKUP_S)
        except KafkaException:
            return None
        return answer  # None on a timeout

    def _rewind(self, reason: str, answer: tuple[int, int] | None = None) -> None:
        """Read on from the earliest offset the broker holds, and say so: the offset to
        read next is gone (retention deleted it, or the topic was recreated), where
        librdkafka would skip silently to the end, past everything there. `answer`:
        the partition's offsets as the broker just gave them, else asked here."""
        answer = answer or self._watermarks()
        earliest = OFFSET_BEGINNING if answer is None else answer[0]
        log.warning(
            "%s: offset %d is no longer on the broker (%s); reading on from %s",
            self.name,
            self.next_offset,
            reason,
            "its earliest offset" if answer is None else f"offset {earliest}, its earliest",
        )
        # A new consumer: the old one may still hold the error of its fetch there, and
        # would deliver it after a new assignment.
        self.consumer.close()
        self.consumer = self._consumer()
        self.consumer.assign([TopicPartition(self.topic, self.partition, earliest)])
        self.next_offset = earliest
        if answer is not None:
            self._set_lag(answer[1], earliest)

    def _set_lag(self, high: int, done: int) -> None:
        # Clamped, yet an offset past the end cannot pass for caught up: the first
        # fetch that shows it rewinds the reader (`_rewind`).
        key = (self.topic, str(self.partition))
        self.ledger["cockpit_kafka_consumer_lag"][key] = max(high - done, 0)

    def next_batch(self) -> list[Message]:
        stop_if_asked(self.source.stop)
        messages = self.consumer.consume(self.source.batch_size, 0)
        # Per message, C calls only (map over the methods): a comprehension's step
        # per message cost more than the decoding of a batch's small events.
        errors = list(filter(None, map(_ERROR, messages)))
        if errors:
            messages = [message for message in messages if message.error() is None]
        now = self.source.clock()
        out: list[Message] = []
        if messages:
            # Not proof the broker is up (they may come from the client's queue): only
            # librdkafka's statistics set cockpit_kafka_up back to 1.
            self.empty_polls = 0
            values = list(map(_VALUE, messages))
            if None in values:  # a tombstone: an empty payload, rejected as such
                values = [value or b"" for value in values]
            payloads = cast(list[bytes], values)
            origin = self._origin(messages)
            items = decode_batch(payloads, self.source.max_bytes, origin, 0)
            latest = refuse_ahead(items, payloads, origin, now, self.source.max_future)
            self.next_offset = int(messages[-1].offset() or 0) + 1
            self.marks.saw(latest, now)  # a reject (a tombstone too) moves nothing
            out.append((self.shard, ("events", self.shard, self.name, items)))
        for error in errors:  # after the messages before them moved next_offset
            if error.code() == KafkaError._AUTO_OFFSET_RESET:
                self._rewind(error.str())
            else:
                self._error(error)
        if not messages:
            self.empty_polls += 1
            self._check_end()
            up = self.reach.up
            caught_up = self._caught_up()
            self.behind = up and not caught_up  # a fresh start, or reading outran fetching
            # Idle only once the broker has answered since the idle timeout passed, with
            # no error for as long: a hung broker (connected, answering nothing) and a
            # partition no broker serves (its topic deleted) showed nothing new, and W
            # jumped as if the input were drained.
            quiet_since = max(self.marks.last_event, self.clean_since)
            heard = self.answered >= quiet_since + self.source.idle_timeout
            self.marks.settle(up and caught_up and heard, now)  # only here: a poll found nothing
        out.extend(self.marks.due(now))
        return out

    def _check_end(self) -> None:
        """Rewind an offset past the partition's end. A broker answers a fetch there
        with an error (`_rewind` hears it as such), but some (Tansu) wait for the
        offset to come: the partition was recreated, its new messages unread.

        The end as last fetched only raises the question: after a leader failover the
        new leader's end can trail for a moment, and rewinding on it would read the
        partition's whole retention again. The broker, asked, must confirm it."""
        here = TopicPartition(self.topic, self.partition)
        high = self.consumer.get_watermark_offsets(here, cached=True)[1]
        if self.next_offset > high >= 0:
            answer = self._watermarks()
            if answer is not None and self.next_offset > answer[1]:
                self._rewind(f"the partition ends at offset {high}", answer)

    def _caught_up(self) -> bool:
        """At the end of the partition as last fetched, or looked up at the start.
        (Idle also needs the broker: a reader cut off from it, mid-backlog or not,
        cannot know that nothing more came, so its partition keeps holding W back
        and no deadline passes for want of data.)"""
        here = TopicPartition(self.topic, self.partition)
        low, high = self.consumer.get_watermark_offsets(here, cached=True)
        if high < 0:  # nothing fetched yet: the end the start lookup found, if any
            high = self.known_end
        if high < 0:
            return True  # nor a lookup's answer: nothing to know of
        # librdkafka's position steps over transaction markers, which are never
        # delivered: a transactional topic's end is not one unread message away.
        position = max(self.next_offset, self.consumer.position([here])[0].offset)
        if position < 0:  # still the symbolic start: earliest or latest
            position = low if position == OFFSET_BEGINNING else high
        return bool(position >= high)

    def _origin(self, messages: list[Any]) -> Callable[[int], dict[str, Any]]:
        return lambda i: {
            "topic": self.topic,
            "partition": self.partition,
            "offset": messages[i].offset(),
        }

    def next_awake(self) -> datetime | None:
        if self.empty_polls == 0:
            return None
        wait = BEHIND_POLL if self.behind else IDLE_POLL
        return datetime.fromtimestamp((self.source.clock() + wait) / US_PER_SECOND, UTC)

    def _stats(self, raw: str) -> None:
        stats = json.loads(raw)
        partition = (
            stats.get("topics", {})
            .get(self.topic, {})
            .get("partitions", {})
            .get(str(self.partition), {})
        )
        high = partition.get("ls_offset", partition.get("hi_offset", -1))
        if high >= 0:
            # app_offset, like position(), steps over transaction markers.
            self._set_lag(high, max(self.next_offset, partition.get("app_offset", -1)))
        brokers = stats.get("brokers", {})
        up = [name for name, b in brokers.items() if b.get("state") == "UP"]
        lead = partition.get("leader", -1)  # -1: none (as the group coordinator's nodeid)
        leader = [b for b in brokers.values() if lead >= 0 and b.get("nodeid") == lead]
        silent = self._silent(leader[0] if leader else {})
        # Its queue empty, librdkafka would fetch. (Without a broker up, no outage
        # yet: a reader's first second is spent connecting, and every broker lost is
        # an error of its own, `Reachability.heard`.)
        if silent > SILENT_US and self.empty_polls:
            who = leader[0].get("name") if leader else None
            self.reach.silent(who or f"no broker leads {self.topic} [{self.partition}]", silent)
        elif up:
            self.reach.back(up)
        self._show_reach()

    def _silent(self, leader: dict[str, Any]) -> int:
        """For how long the partition's leader has sent nothing (µs): a broker that
        answers a fetch does so within fetch.wait.max.ms (500 ms). Without a leader
        (the topic deleted, an election under way) nothing answers either."""
        now, quiet = self.source.clock(), leader.get("rxidle", -1)
        if leader.get("state") == "UP" and quiet >= 0:
            self.answered = max(self.answered, now - quiet)
        return now - self.answered

    def _error(self, error: KafkaError) -> None:
        # Only an error of what it reads: whom it reaches is `reach`'s (a dead
        # bootstrap address among live ones is no reason to hold a partition back).
        if error.code() not in REACHING:
            self.clean_since = self.source.clock()
        self.reach.heard(error)
        self._show_reach()

    def _show_reach(self) -> None:
        self.ledger["cockpit_kafka_up"][()] = 1 if self.reach.up else 0

    def snapshot(self) -> int:
        return self.next_offset

    def close(self) -> None:
        self.consumer.close()


class Reachability:
    """What one client has said of the brokers (its `error_cb`), and whether any
    is still reachable: librdkafka reports every failed reconnection, several a
    second. Losing them all is logged once per outage. A broker that fails while
    others serve (one dead address of several bootstrap servers) is logged once,
    until an outage ends or a reader's statistics show it up again, and is no
    outage. Any other error is logged once every REPEAT_S with its repeats: a
    deleted topic was a line a second per partition, for ever."""

    def __init__(self, client: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.up, self.clock = client, True, clock
        self.failed: set[str] = set()  # brokers logged, as librdkafka names them
        self.repeats: dict[str, tuple[float, int]] = {}  # error -> (logged when, since)

    def heard(self, error: KafkaError) -> None:
        code, said = error.code(), error.str()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if self.up:
                log.warning("Kafka unreachable from %s: %s; retrying", self.client, said)
            self.up = False
        elif code in BROKER_FAILED:
            broker = said.split(": ", 1)[0]  # "host:port/id: what failed"
            if self.up and broker not in self.failed:
                self.failed.add(broker)
                log.warning("Kafka broker failed for %s: %s; retrying", self.client, said)
        else:
            self._once_in_a_while(said)

    def _once_in_a_while(self, said: str) -> None:
        now = self.clock()
        logged, since = self.repeats.get(said, (-float(REPEAT_S), 0))
        if now - logged < REPEAT_S:
            self.repeats[said] = (logged, since + 1)
            return
        more = f" (and {since:,} times in the last {REPEAT_S // 60} min)" if since else ""
        log.warning("Kafka error on %s: %s%s", self.client, said, more)
        if len(self.repeats) >= 100:  # texts differ by partition or broker: a few
            self.repeats.clear()
        self.repeats[said] = (now, 0)

    def silent(self, broker: str, quiet: int) -> None:
        """The partition's leader answers nothing (a hung broker holding connections
        open, which librdkafka sees up for a minute), or no broker leads it: lost too."""
        if self.up:
            seconds = quiet // US_PER_SECOND
            log.warning(
                "Kafka unreachable from %s: %s: nothing answered for %d s; retrying",
                self.client,
                broker,
                seconds,
            )
        self.up = False

    def back(self, brokers: Iterable[str] = ()) -> None:
        """Some broker answers (`brokers`: those a reader's statistics show up, each
        logged again should it fail again)."""
        if not self.up:
            self.failed.clear()
        self.failed.difference_update(brokers)
        self.up = True


_ERROR, _VALUE = KafkaMessage.error, KafkaMessage.value


class TpsKafkaSource(FixedPartitionedSource[Message, int]):
    """Every partition of the input topics; resumes at the snapshotted offsets."""

    def __init__(
        self,
        kafka: KafkaSettings,
        partitions: dict[str, int],
        shard_of: dict[int, str],
        *,
        start: str,
        runtime: Runtime,
    ) -> None:
        """`shard_of` names the shard (state key) of each partition index."""
        settings = runtime.settings
        self.kafka, self.partitions, self.shard_of = kafka, partitions, shard_of
        self.board, self.clock, self.stop = runtime.board, runtime.clock, runtime.stop
        self.start = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        self.batch_size, self.max_bytes = settings.batch_size, settings.max_event_bytes
        self.idle_timeout, self.max_future = settings.idle_timeout, settings.max_future
        self.shards = sorted(set(shard_of.values()))

    def list_parts(self) -> list[str]:
        return [part_name(t, p) for t, count in self.partitions.items() for p in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        topic, _, partition = for_part.rpartition(":")
        offset = self.start if resume_state is None else resume_state
        return _PartitionReader(self, topic, int(partition), offset)


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    stop: threading.Event | None = None,
    partition: int = -1,
    wait_s: float = 0.5,
) -> bool:
    """Produce one message, waiting for the broker while the local queue is full;
    False once a `stop` has waited out its Patience with the queue still full."""
    patience = None
    while True:
        try:
            # Positional: a keyword argument cost ~0.2 µs a record (~40k at a day's close).
            producer.produce(topic, value, key, partition)
            return True
        except BufferError:
            if stop is not None:
                patience = patience or Patience(stop)
                if patience.over():
                    return False
            producer.poll(wait_s)


class Patience:
    """How long a job still waits for the broker to take its records: for ever, until
    `stop` is set, then STOP_FLUSH_S more (a hung broker kept a stop waiting for ever,
    deaf to a second signal)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.since = stop, 0.0

    def over(self) -> bool:
        if not self.stop.is_set():
            return False
        self.since = self.since or time.monotonic()
        return time.monotonic() - self.since >= STOP_FLUSH_S


def flush(producer: Producer, stop: threading.Event) -> int:
    """Wait until the broker has taken every record produced, as `Patience` allows:
    the records still waiting then."""
    patience = Patience(stop)
    while waiting := producer.flush(1.0):
        if patience.over():
            return waiting
    return 0


class _TopicWriter(StatefulSinkPartition[Output, None]):
    def __init__(self, sink: TopicSink) -> None:
        self.kafka, self.topic_for = sink.kafka, sink.topic_for
        self.stop, self.recovery = sink.runtime.stop, sink.runtime.settings.recovery
        self.client = f"output {', '.join(sink.topics)}"  # what a log line names
        self.skipped = sink.ledger["cockpit_kafka_records_skipped_total"]
        self.reach = Reachability(self.client)  # a delivery shows the brokers back
        config = self.kafka.producer(
            **{
                "message.timeout.ms": 0,  # retry until delivered: nothing is dropped
                "error_cb": self._error,
                # A report per failed record only: one per record (a Python call each)
                # was a sixth of the cost of writing a record.
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
            }
        )
        self.max_bytes = int(config.get("message.max.bytes", MESSAGE_MAX_BYTES))
        self.rooms: dict[str, int] = {}  # per topic, see `_room`
        self.producer = Producer(config)
        self.unconfirmed = 0  # records written since the brokers were lost (`_confirm`)
        self.closing = False

    def _error(self, error: KafkaError) -> None:
        if self.closing:  # what it said while no record was written: old news by now
            return
        was_up = self.reach.up
        self.reach.heard(error)
        if was_up and not self.reach.up:
            self.unconfirmed = 0

    def _confirm(self, produced: int) -> None:
        """While the brokers are lost, with `produced` more records written: once
        every record written since has left the queue (delivered, as a refused one
        ends the job in `_delivered`), they are back. Deliveries, not statistics as
        for a reader: a producer is polled only when it writes, and statistics
        would pile up in one that has nothing to write."""
        if self.reach.up:
            return
        self.unconfirmed += produced
        if self.unconfirmed and not self.producer.flush(0):
            self.reach.back()

    def _delivered(self, error: KafkaError | None, message: KafkaMessage) -> None:
        if error is None:  # not reported (delivery.report.only.error): see `_confirm`
            return
        # Refused for good (librdkafka retries the rest, with no timeout): stop now,
        # before a snapshot commits the input past the record, so that a restart
        # from the recovery directory writes it again. An exception would reach
        # bytewax, which panics with lines of its own.
        log.error("error: Kafka topic %s refused a record: %s", message.topic(), error.str())
        os._exit(EXIT_FAILURE)

    def write_batch(self, values: list[Output]) -> None:
        produced = 0
        for output in written(values):
            topic, key, value = self.topic_for(output), output.key.encode(), output.value
            room = self._room(topic) - len(key)
            if len(value) > room:
                fitted = self._fitted(output, topic, len(key), room)
                if fitted is None:
                    continue
                value = fitted
            produced += 1
            if not produce(self.producer, topic, value, key, self.stop):
                self._abandon()
        self.producer.poll(0)
        self._confirm(produced)

    def _fitted(self, output: Written, topic: str, key_bytes: int, room: int) -> bytes | None:
        """A record over the `room` its message has: a reject's payload cut to fit,
        saying so (contract §2: never crash, never drop); else None, counted and
        logged: neither librdkafka nor the broker would take it, at every restart,
        so the job goes on without it."""
        if isinstance(output, DeadLetter):
            value = orjson.dumps(truncated(output.record, room))
            if len(value) <= room:
                return value
        log.warning(
            "Kafka topic %s: record %s not written: %d bytes, over the %d a message holds",
            topic,
            shorten(output.key),
            key_bytes + len(output.value),
            room + key_bytes,
        )
        add(self.skipped, topic)
        return None

    def _room(self, topic: str) -> int:
        """Bytes a message to `topic` has for its key and value: under the producer's
        message.max.bytes and the topic's max.message.bytes, which the broker holds
        a record batch to. Over the first, librdkafka refuses the record; over the
        second, the broker does, and the job would end (`_delivered`). The topic's
        limit is asked once, before its first record; without an answer, only the
        producer's applies."""
        if topic not in self.rooms:
            room = self.max_bytes - MESSAGE_OVERHEAD
            limit = topic_max_bytes(self.kafka, topic)
            if limit is not None:
                room = min(room, limit - MESSAGE_OVERHEAD - BATCH_OVERHEAD)
            self.rooms[topic] = room
        return self.rooms[topic]

    def snapshot(self) -> None:
        # A snapshot commits the input offsets: everything before it must be written.
        if self.producer.flush(1.0):
            log.warning("waiting for Kafka to accept the records of %s", self.client)
            if flush(self.producer, self.stop):
                self._abandon()
        self._confirm(0)

    def _abandon(self) -> None:
        """Asked to stop, with Kafka still not taking the records: end now, before a
        snapshot commits the input past them (a stop signal waited for ever behind a
        hung broker, deaf to a second one)."""
        fate = "written again by a restart" if self.recovery else "lost: no --recovery-dir"
        log.error(
            "error: stopped while Kafka took no records of %s for %d s (%d waiting): %s",
            self.client,
            STOP_FLUSH_S,
            len(self.producer),
            fate,
        )
        os._exit(EXIT_FAILURE)

    def close(self) -> None:
        """The last records written. A producer serves its callbacks only when it
        writes: an outage long over was reported as the job stopped."""
        self.closing = True
        self.snapshot()


def shorten(text: str) -> str:
    """A message key for a log line: its start, with its length if cut."""
    if len(text) <= SHOWN_KEY:
        return text
    return f"{text[:SHOWN_KEY]}… ({len(text):,} characters)"


def topic_max_bytes(settings: KafkaSettings, topic: str) -> int | None:
    """The topic's max.message.bytes, or None: a broker that does not answer in
    START_LOOKUP_S, does not support DescribeConfigs, or does not say (Tansu
    reports only what a topic sets)."""
    admin = AdminClient(settings.admin())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        futures = admin.describe_configs([resource], request_timeout=START_LOOKUP_S)
        entry = futures[resource].result(START_LOOKUP_S).get("max.message.bytes")
        return int(entry.value) if entry is not None else None
    except (KafkaException, TimeoutError, TypeError, ValueError):
        return None


class TopicSink(FixedPartitionedSink[Output, None]):
    """Records to a Kafka topic, keyed for compaction; at-least-once with recovery.
    `topics`: those `topic_for` can name, whose series show 0 from the start (bytewax
    makes a writer only where, and when, it runs its part); `role` names its
    counts on the board (two roles may share a topic)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        name: str,
        topic_for: Callable[[Written], str],
        topics: Iterable[str],
        runtime: Runtime,
        role: str,
    ) -> None:
        self.kafka, self.name, self.topic_for = kafka, name, topic_for
        self.topics, self.runtime = list(topics), runtime
        self.ledger = Ledger(SINK_METRICS)
        self.ledger["cockpit_kafka_records_skipped_total"].update(dict.fromkeys(self.topics, 0))
        runtime.board.publish(f"sink:{role}", self.ledger)

    def list_parts(self) -> list[str]:
        return [self.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TopicWriter:
        return _TopicWriter(self)


def ensure_topics(
    settings: KafkaSettings, topics: dict[str, int], timeout_s: float = 10.0
) -> list[str]:
    """Create missing topics (partitions by name) and wait until they exist, each
    replicated as the broker's default.replication.factor says (-1: KIP-464, Kafka 2.4).
    Returns the topics it created."""
    existing = cluster_metadata(settings, timeout_s).topics
    wanted = [NewTopic(name, count, -1) for name, count in topics.items() if name not in existing]
    if not wanted:
        return []
    admin = AdminClient(settings.admin())
    for topic, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaSetupError(
                    f"cannot create topic {topic!r}: {exc.args[0].str()}"
                ) from None
    return [new.topic for new in wanted]
