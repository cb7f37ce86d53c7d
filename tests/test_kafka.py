"""The live Kafka path against a real Kafka-protocol broker (no mocks).

Live metrics must equal a replay of the same events once the consumer has caught
up; output topics must hold schema-valid records with the expected counts.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from jsonschema import Draft202012Validator, FormatChecker

from flows.events import entity_key
from flows.kafka import BEHIND_POLL, IDLE_POLL, KafkaSettings, TpsKafkaSource, part_name
from flows.metrics import BY_NAME
from flows.settings import Runtime, Settings
from flows.sources import partition_of
from flows.timeutil import US_PER_SECOND, parse_time
from tests.kafka_broker import (
    consume_all,
    consume_placed,
    create_topic,
    free_port,
    produce,
    unique,
)
from tests.processes import (
    Cockpit,
    WaitFailed,
    cockpit,
    events_read,
    opscockpit,
    progress_of,
    wait_for,
)
from tests.reference import (
    COMPUTED,
    HEALTH_METRICS,
    Samples,
    alert_key,
    compare,
)
from tests.reference_health import PRESENCE_MATTERS
from tests.scenario import Events, at
from tests.test_properties import ARRIVAL_DEPENDENT
from tests.test_run import serving

pytestmark = pytest.mark.kafka

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "outputs"
PARTITIONS = 3
# Every metric the replay has: the reference's and the §3.2-3.5 ones built so far.
LIVE_METRICS = [
    m for m in [*COMPUTED, *HEALTH_METRICS] if m in BY_NAME and m != "cockpit_state_entries"
]


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validators_by_kind(name: str, field: str) -> dict[str, Draft202012Validator]:
    """A `oneOf` schema as one check per kind (`field`'s value): the schema's top level
    and the one branch that admits the kind. The same verdict as the whole schema,
    since no two branches admit a kind (asserted), at a quarter of the cost: a
    simulated day has 40k `sku_health` records."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    top = {key: value for key, value in schema.items() if key != "oneOf"}
    checks: dict[str, Draft202012Validator] = {}
    for branch in schema["oneOf"]:
        admitted = branch["properties"][field]
        for kind in admitted.get("enum", [admitted.get("const")]):
            assert kind not in checks, f"two branches of {name}.json admit {kind}"
            checks[kind] = Draft202012Validator(
                {**top, "allOf": [branch]}, format_checker=FormatChecker()
            )
    return checks


def topics() -> dict[str, str]:
    return {"input": unique("tps"), "kpis": unique("kpis"), "alerts": unique("alerts")}


def run_args(bootstrap: str, names: dict[str, str], *extra: str) -> list[str]:
    return [
        "--kafka",
        bootstrap,
        "--topic",
        names["input"],
        "--kpis-topic",
        names["kpis"],
        "--alerts-topic",
        names["alerts"],
        *extra,
    ]


def wait_for_one_breach(running: Cockpit, what: str, timeout: float = 30) -> None:
    """Wait for the ship-SLA breach of the one order these scenarios place (at FC1)."""
    breaches = wait_for(
        lambda: running.samples().get("cockpit_ship_sla_breaches_total"),
        timeout,
        what,
        progress=running.progress,
    )
    assert breaches == {(("fc", "FC1"),): 1.0}


def caught_up(live: Samples, expected: Samples) -> list[str]:
    return compare(expected, live, metrics=LIVE_METRICS, presence_matters=PRESENCE_MATTERS)


def wait_equal(running: Cockpit, expected: Samples, timeout: float) -> None:
    """Until the live metrics equal the replay's. Fails only after `timeout` seconds
    in which the run made no progress, so a slower or busier machine only takes longer."""
    latest, diffs = [running.samples()], []

    def equal() -> bool:
        latest[0] = running.samples()
        diffs[:] = caught_up(latest[0], expected)
        return not diffs

    try:
        what = "the live metrics to equal the replay's"
        wait_for(equal, timeout, what, progress=lambda: progress_of(latest[0]))
    except WaitFailed as failure:
        raise AssertionError("\n".join([str(failure), *diffs[:30]])) from None


def by_key(alerts: list[Any]) -> dict[str, dict[str, Any]]:
    """Alert records (or Kafka messages of them) by key, without the fields that
    depend on the order events arrived in (the reader interleaves partitions)."""
    records = [orjson.loads(a[1]) if isinstance(a, tuple) else a for a in alerts]
    return {
        alert_key(record): {k: v for k, v in record.items() if k not in ARRIVAL_DEPENDENT}
        for record in records
    }


def test_a_simulated_day_gives_the_replay_numbers_and_valid_output_topics(kafka, day):
    names = topics()
    create_topic(kafka, names["input"], PARTITIONS)
    produce(kafka, names["input"], day["messages"])
    with cockpit(*run_args(kafka, names, "--idle-timeout", "2s")) as running:
        wait_equal(running, day["metrics"], timeout=120)
        samples = running.samples()
    assert samples["cockpit_kafka_up"][()] == 1
    assert len(samples["cockpit_kafka_consumer_lag"]) == PARTITIONS

    dead = [orjson.loads(value) for _key, value in consume_all(kafka, names["input"] + ".dlq")]
    assert len(dead) == len(day["dlq"]) > 0
    check = validator("dead-letter")
    for record in dead:
        check.validate(record)
        assert record["topic"] == names["input"]
    by_offset = {(r["partition"], r["offset"]) for r in dead}
    assert len(by_offset) == len(dead)  # one record per rejected message

    alerts = consume_all(kafka, names["alerts"])
    check = validator("alert")
    for key, value in alerts:
        record = orjson.loads(value)
        check.validate(record)
        assert key.decode() == alert_key(record)
    assert sorted(k for k, _ in alerts) == sorted(alert_key(r).encode() for r in day["alerts"])
    assert by_key(alerts) == by_key(day["alerts"])

    kpis = [orjson.loads(value) for _key, value in consume_all(kafka, names["kpis"])]
    checks = validators_by_kind("kpi", "kpi")
    for record in kpis:
        checks[record["kpi"]].validate(record)
    assert sorted(kpis, key=_sort_key) == sorted(day["kpis"], key=_sort_key)


def _sort_key(record: dict[str, Any]) -> bytes:
    """Records of any kind (a widget's, an item's) in one order."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def test_a_partition_read_far_ahead_makes_nothing_late(kafka, day):
    names = topics()
    create_topic(kafka, names["input"], PARTITIONS)
    messages = day["messages"]
    first = [m for m in messages if m[0] == 0]
    produce(kafka, names["input"], first)
    with cockpit(*run_args(kafka, names, "--idle-timeout", "15s")) as running:
        # Partition 0 is read to its end while 1 and 2 are still empty.
        wait_for(
            lambda: events_read(running.samples()) == len(first),
            30,
            "partition 0",
            progress=running.progress,
        )
        produce(kafka, names["input"], [m for m in messages if m[0] != 0])
        wait_equal(running, day["metrics"], timeout=120)
    late = sum(day["metrics"]["cockpit_events_late_total"].values())
    assert late > 0  # the simulated, truly late events, and only those


def test_an_idle_partition_does_not_stop_deadlines(kafka):
    names = topics()
    create_topic(kafka, names["input"], PARTITIONS)
    e = Events()
    produce(
        kafka,
        names["input"],
        [
            (0, b"O1", e.placed("O1", at(0), at(5), at(600))),
            (1, b"s", e.tick(at(0))),  # partition 1 says one thing, then goes quiet; 2 never speaks
        ],
    )
    stop = threading.Event()

    def keep_partition_0_busy() -> None:
        minute = 1
        while not stop.is_set():
            produce(kafka, names["input"], [(0, b"s", e.tick(at(minute)))])
            minute += 1
            time.sleep(0.2)

    feeder = threading.Thread(target=keep_partition_0_busy, daemon=True)
    feeder.start()
    try:
        with cockpit(*run_args(kafka, names, "--idle-timeout", "2s")) as running:
            wait_for_one_breach(running, "the breach while partition 0 is still active")
            # The metric can show the breach before the producer has sent its alert.
            alerts = wait_for(
                lambda: consume_all(kafka, names["alerts"]),
                30,
                "the alert on its topic",
                progress=running.progress,
            )
            assert [k for k, _ in alerts] == [b"ship_sla_breach|O1"]
    finally:
        stop.set()
        feeder.join()


def test_a_transactional_partition_goes_idle_at_its_end(kafka):
    """A transaction's commit marker takes an offset but is never delivered: the end
    of a transactional partition still counts as caught up, so it goes idle and the
    drained input decides the deadline (W = max ts, not max ts - lateness)."""
    names = topics()
    create_topic(kafka, names["input"], 1)
    e = Events()
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": unique("txn")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(names["input"], e.placed("O1", at(0), at(5), at(600)), b"O1", partition=0)
    producer.produce(names["input"], e.tick(at(5, seconds=30)), b"s", partition=0)
    producer.commit_transaction(30)
    del producer  # destroyed now, not after the broker is gone
    with cockpit(*run_args(kafka, names, "--idle-timeout", "1s")) as running:
        wait_for_one_breach(running, "the breach decided by the drained input")
        wait_for(
            lambda: (
                running.samples().get("cockpit_kafka_consumer_lag")
                == {(("partition", "0"), ("topic", names["input"])): 0.0}
            ),
            30,
            "a lag of 0 (librdkafka reports every 5 s)",
            progress=running.progress,
        )


@pytest.mark.parametrize(
    ("start", "resume", "offset", "lag"),
    [("earliest", None, 0, 5), ("latest", None, 5, 0), ("earliest", 3, 3, 2)],
    ids=["earliest", "latest", "resumed"],
)
def test_a_partition_reader_starts_at_a_numeric_offset_with_its_lag_known(
    kafka, start, resume, offset, lag
):
    """earliest and latest are resolved before the assignment (librdkafka takes half
    a second to do it), and the lag is known before librdkafka's first statistics."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    for _ in range(5):  # one batch each: Tansu 0.6 answers ListOffsets with the last
        produce(kafka, topic, [(0, b"k", b"{}")])  # batch's first offset + 1, Kafka with 5
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start=start, runtime=Runtime(Settings())
    )
    reader = source.build_part("input", part_name(topic, 0), resume)
    try:
        assert reader.snapshot() == offset
        assert reader.ledger["cockpit_kafka_consumer_lag"] == {(topic, "0"): lag}
    finally:
        reader.close()


def test_a_partition_reader_without_an_answer_leaves_the_start_to_librdkafka():
    """No broker to ask: the reader keeps the symbolic offset and no lag yet."""
    source = TpsKafkaSource(
        KafkaSettings("127.0.0.1:9"),
        {"tps": 1},
        {0: "0"},
        start="earliest",
        runtime=Runtime(Settings()),
    )
    reader = source.build_part("input", part_name("tps", 0), None)
    try:
        assert reader.snapshot() == OFFSET_BEGINNING
        assert reader.ledger["cockpit_kafka_consumer_lag"] == {}
    finally:
        reader.close()


def test_a_reader_behind_its_partition_polls_again_soon_and_backs_off_at_its_end(kafka):
    """A poll that finds nothing while the broker holds more (a fresh start: the first
    fetch is milliseconds away) is tried again after BEHIND_POLL, not after the idle
    back-off, which every start used to wait; once the partition is read, IDLE_POLL."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    for _ in range(5):
        produce(kafka, topic, [(0, b"k", b"{}")])
    now = 1_000_000
    runtime = Runtime(Settings(), clock=lambda: now)
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start="earliest", runtime=runtime
    )
    reader = source.build_part("input", part_name(topic, 0), None)

    def poll() -> int | None:
        """Poll once: µs until the reader asks to be polled again (None: at once)."""
        reader.next_batch()
        awake = reader.next_awake()
        return None if awake is None else round(awake.timestamp() * US_PER_SECOND) - now

    try:
        waits: list[int | None] = []

        def read_five() -> bool:
            waits.append(poll())
            return bool(reader.snapshot() >= 5)

        wait_for(read_five, 30, "5 messages read", every=0, progress=reader.snapshot)
        at_the_end = poll()
    finally:
        reader.close()
    assert reader.snapshot() == 5
    assert set(waits) <= {None, BEHIND_POLL}, waits
    assert at_the_end == IDLE_POLL


def test_a_tombstone_among_events_is_dead_lettered_where_it_stands(kafka):
    """A message without a value (a tombstone) is an empty payload: rejected with its
    offset, between the events around it, which decode as usual."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    event = b'{"event_id":"e%d","type":"page.viewed","ts":1000,"session_id":"s",'
    event += b'"page":"home","load_ms":5}'
    produce(kafka, topic, [(0, b"k", event % 1), (0, b"k", None), (0, b"k", event % 2)])
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start="earliest", runtime=Runtime(Settings())
    )
    items = read_items(source.build_part("input", part_name(topic, 0), None), 3, timeout=30)
    assert [type(item).__name__ for item in items] == ["PageViewed", "Reject", "PageViewed"]
    assert (items[1].reason, items[1].payload, items[1].origin["offset"]) == (
        "invalid_json",
        b"",
        1,
    )


def test_an_event_stamped_beyond_max_future_is_dead_lettered(kafka):
    """One producer's clock a year ahead moved W there for good: thousands of false
    breach alerts, and every later event of its partition late. With the clock at
    2026-12-07T00:00Z and --max-future 1h (the default), an event at 01:00 is
    accepted and one at 01:00:00.001 is an invalid_event with its offset."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    event = '{"event_id":"e%d","type":"page.viewed","ts":"%s","session_id":"s",'
    event += '"page":"home","load_ms":5}'
    times = ["2026-12-06T23:00:00Z", "2026-12-07T01:00:00.001Z", "2026-12-07T01:00:00Z"]
    produce(kafka, topic, [(0, b"k", (event % (n, t)).encode()) for n, t in enumerate(times)])
    clock = parse_time("2026-12-07T00:00:00Z")
    runtime = Runtime(Settings(), clock=lambda: clock)
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start="earliest", runtime=runtime
    )
    items = read_items(source.build_part("input", part_name(topic, 0), None), 3, timeout=30)
    assert [type(item).__name__ for item in items] == ["PageViewed", "Reject", "PageViewed"]
    assert (items[1].reason, items[1].error, items[1].origin["offset"]) == (
        "invalid_event",
        "ts 2026-12-07T01:00:00.001000Z is more than 3600 s (--max-future) ahead of the clock, "
        "2026-12-07T00:00:00Z",
        1,
    )
    assert orjson.loads(items[1].record()["payload"])["event_id"] == "e1"


def test_a_reject_too_large_for_a_message_is_dead_lettered_cut_to_fit(kafka):
    """A rejected payload whose dead-letter record exceeds librdkafka's
    message.max.bytes (base64 of non-UTF-8 bytes, escaped control characters) is
    written with the start of its payload, saying so; one that fits stays whole.
    It once crashed the job, and again at every restart."""
    names = topics()
    create_topic(kafka, names["input"], 1)
    payloads = [b"\xff" * 760_000, b"\x01" * 200_000, b"x" * 900_000]
    produce(kafka, names["input"], [(0, b"bad", payload) for payload in payloads])
    dlq = names["input"] + ".dlq"

    def dead_letters() -> list[tuple[bytes, bytes]]:
        records = consume_all(kafka, dlq)
        return records if len(records) == len(payloads) else []

    with cockpit(*run_args(kafka, names)) as running:
        written = wait_for(dead_letters, 30, "the three dead letters", progress=running.progress)
        assert running.alive()
    check = validator("dead-letter")
    by_offset = {}
    for _key, value in written:
        assert len(value) <= 1_000_000
        record = orjson.loads(value)
        check.validate(record)
        by_offset[record["offset"]] = record
    binary, control, text = (by_offset[offset] for offset in range(3))
    assert binary["payload_truncated"] and binary["payload_bytes"] == len(payloads[0])
    assert payloads[0].startswith(base64.b64decode(binary["payload"]))
    assert control["payload_truncated"] and control["payload_bytes"] == len(payloads[1])
    assert payloads[1].startswith(control["payload"].encode())
    assert text["payload"].encode() == payloads[2] and "payload_truncated" not in text


def test_a_dead_letter_is_cut_to_its_topics_max_message_bytes(kafka):
    """A topic may hold messages smaller than the producer's message.max.bytes: its
    dead letters are cut to fit the topic's own max.message.bytes, which a broker
    (Kafka; Tansu keeps the setting without enforcing it) would refuse, ending the
    job at every restart."""
    names = topics()
    create_topic(kafka, names["input"], 1)
    dlq, limit = names["input"] + ".dlq", 100_000
    admin = AdminClient({"bootstrap.servers": kafka})
    topic = NewTopic(dlq, 1, 1, config={"max.message.bytes": str(limit)})
    admin.create_topics([topic])[dlq].result(30)
    produce(kafka, names["input"], [(0, b"bad", b"x" * 300_000)])
    with cockpit(*run_args(kafka, names)) as running:
        [(key, value)] = wait_for(
            lambda: consume_all(kafka, dlq), 30, "the dead letter", progress=running.progress
        )
        assert running.alive()
    assert len(key) + len(value) <= limit - 97  # a record batch's header and the record's
    record = orjson.loads(value)
    validator("dead-letter").validate(record)
    assert record["payload_truncated"] and record["payload_bytes"] == 300_000


def test_a_record_too_large_for_a_message_is_skipped_and_said(kafka):
    """An alert carrying an order id of 600,000 characters (in its key and its value) is
    over any message size, yet its event is not over --max-event-bytes: the alert is
    not written, in one line naming it, and the job goes on. It crashed the job, and
    again at every restart."""
    names = topics()
    create_topic(kafka, names["input"], 1)
    e, huge = Events(), "O" * 600_000
    produce(
        kafka,
        names["input"],
        [
            (0, b"huge", e.placed(huge, at(0), at(5), at(600))),
            (0, b"O2", e.placed("O2", at(0), at(5), at(600))),
            (0, b"s", e.tick(at(30))),
        ],
    )

    def alert_keys(count: int) -> list[bytes]:
        keys = sorted(key for key, _value in consume_all(kafka, names["alerts"]))
        return keys if len(keys) == count else []

    with cockpit(*run_args(kafka, names)) as running:
        o2 = wait_for(lambda: alert_keys(1), 30, "O2's alert", progress=running.progress)
        assert o2 == [b"ship_sla_breach|O2"]
        produce(
            kafka,
            names["input"],
            [(0, b"O3", e.placed("O3", at(40), at(45), at(600))), (0, b"s", e.tick(at(60)))],
        )
        what = "O3's alert, placed after the skip"
        wait_for(lambda: alert_keys(2), 30, what, progress=running.progress)
        assert running.alive()
        skips = running.samples()["cockpit_kafka_records_skipped_total"]
        assert skips == {
            (("topic", names["alerts"]),): 1,
            (("topic", names["kpis"]),): 0,
            (("topic", f"{names['input']}.dlq"),): 0,
        }
    assert running.process.stderr is not None
    lines = running.process.stderr.read().decode().splitlines()
    skipped = [line for line in lines if "not written" in line]
    assert len(skipped) == 1, lines
    assert re.fullmatch(
        rf"opscockpit: Kafka topic {names['alerts']}: record ship_sla_breach\|O{{64}}… "
        r"\(600,016 characters\) not written: \d+ bytes, over the 999964 a message holds",
        skipped[0],
    ), skipped


def test_a_resume_offset_the_broker_no_longer_has_reads_on_from_the_earliest(kafka, caplog):
    """An offset past the partition's end (the topic was recreated since the snapshot)
    is read on from the earliest offset, in one line saying so: librdkafka's default
    skipped to the end, past every message there."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    event = b'{"event_id":"e%d","type":"page.viewed","ts":1000,"session_id":"s",'
    event += b'"page":"home","load_ms":5}'
    produce(kafka, topic, [(0, b"k", event % i) for i in range(10)])
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start="earliest", runtime=Runtime(Settings())
    )
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        reader = source.build_part("input", part_name(topic, 0), 30)
        items = read_items(reader, 10)
    assert [item.event_id for item in items] == [f"e{i}" for i in range(10)]
    assert [record.getMessage() for record in caplog.records] == [
        f"{topic}:0: offset 30 is no longer on the broker (the partition ends at offset 10); "
        "reading on from offset 0, its earliest"
    ]


def read_items(reader: Any, count: int, timeout: float = 10) -> list[Any]:
    """The first `count` items a partition reader decodes, then closes it. Fails after
    `timeout` seconds in which it decoded nothing more."""
    items: list[Any] = []

    def read() -> bool:
        for _shard, message in reader.next_batch():
            if message[0] == "events":
                items.extend(message[3])
        return len(items) >= count

    try:
        wait_for(read, timeout, f"{count} items", every=0, progress=lambda: len(items))
    finally:
        reader.close()
    return items


def test_a_partition_of_rejects_only_does_not_hold_w_back(kafka):
    """Malformed messages and tombstones carry no event time: a partition receiving
    only those goes idle as an empty one does, and deadlines pass. It held W at its
    start, and every deadline and window froze."""
    names = topics()
    create_topic(kafka, names["input"], 2)
    e = Events()
    produce(
        kafka,
        names["input"],
        [(0, b"O1", e.placed("O1", at(0), at(5), at(600))), (0, b"s", e.tick(at(30)))],
    )
    stop = threading.Event()

    def send_rejects_to_partition_1() -> None:
        while not stop.is_set():
            produce(kafka, names["input"], [(1, b"x", b"not json"), (1, b"x", None)])
            time.sleep(0.2)

    feeder = threading.Thread(target=send_rejects_to_partition_1, daemon=True)
    feeder.start()
    try:
        with cockpit(*run_args(kafka, names, "--idle-timeout", "1s")) as running:
            wait_for(
                lambda: sum(running.samples()["cockpit_events_rejected_total"].values()) > 0,
                30,
                "partition 1's rejects",
                progress=running.progress,
            )
            wait_for_one_breach(running, "the breach while partition 1 sends rejects")
    finally:
        stop.set()
        feeder.join()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_cluster_with_a_process_reading_no_partition_stops_on_a_signal(kafka, signum):
    """One partition, two processes: the one that reads none must stop too."""
    names = topics()
    create_topic(kafka, names["input"], 1)
    port = free_port(2)
    with cockpit(*run_args(kafka, names, "--processes", "2"), port=port) as running:
        wait_for(lambda: serving(port + 1), 60, "process 1")
        running.process.send_signal(signum)
        assert running.process.wait(timeout=60) == 0
        stderr = running.process.stderr.read().decode() if running.process.stderr else ""
    assert stderr.count("opscockpit: stopped") == 2 and "Traceback" not in stderr, stderr


@pytest.mark.parametrize(
    "command",
    [["run", "--metrics-port", "0"], ["simulate", "--hours", "1"]],
    ids=["run", "simulate"],
)
def test_an_unreachable_broker_is_one_line_and_a_non_zero_exit(command):
    started = time.monotonic()
    result = opscockpit(*command, "--kafka", "127.0.0.1:9", check=False, timeout=60)
    assert result.returncode != 0
    assert time.monotonic() - started < 20
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], lines
    assert "Traceback" not in result.stderr.decode()


def test_topics_of_other_partition_counts_are_refused_in_one_line(kafka):
    """An order's events in topics of 3 and 2 partitions would meet in no one shard."""
    three, two = unique("three"), unique("two")
    create_topic(kafka, three, 3)
    create_topic(kafka, two, 2)
    result = opscockpit("run", "--kafka", kafka, "--topic", three, "--topic", two, check=False)
    assert result.returncode != 0
    assert result.stderr.decode().splitlines() == [
        "opscockpit: error: topics read together must have as many partitions "
        f"(co-partitioned), not {three} 3, {two} 2"
    ]


def test_a_missing_topic_is_one_line(kafka):
    result = opscockpit("run", "--kafka", kafka, "--topic", unique("absent"), check=False)
    assert result.returncode != 0
    assert result.stderr.decode().count("\n") == 1 and "does not exist" in result.stderr.decode()


def test_simulate_produces_the_file_keyed_by_entity(kafka, tmp_path):
    topic = unique("sim")
    create_topic(kafka, topic, PARTITIONS)
    opscockpit("simulate", "--kafka", kafka, "--topic", topic, "--hours", "1", "--seed", "3")
    file = tmp_path / "hour.jsonl"
    opscockpit("simulate", "--out", str(file), "--hours", "1", "--seed", "3")
    produced = consume_all(kafka, topic)
    expected = file.read_bytes().splitlines()
    assert sorted(value for _key, value in produced) == sorted(expected)
    keyed_ok = [
        key.decode() == entity_key(orjson.loads(value))
        for key, value in produced
        if key is not None
    ]
    assert len(keyed_ok) > 0.99 * len(produced) and all(keyed_ok)


def test_simulate_creates_a_missing_topic_and_says_so(kafka):
    topic = unique("new")
    result = opscockpit("simulate", "--kafka", kafka, "--topic", topic, "--hours", "0.1")
    assert (
        result.stderr.decode().splitlines()[0]
        == f"opscockpit: created topic {topic} (6 partitions)"
    )
    metadata = AdminClient({"bootstrap.servers": kafka}).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 6
    placed = consume_placed(kafka, topic)
    # Keyed by entity, placed as the embedded simulator of 6 workers splits them.
    keyed = [(partition, key.decode()) for partition, key, _value in placed if key]
    assert len(keyed) > 1_000
    assert all(partition == partition_of(key, 6) for partition, key in keyed)


def test_client_defaults_give_way_to_the_users_properties_but_not_what_it_needs() -> None:
    """linger.ms, fetch.queue.backoff.ms and the admin lookups' reconnect.backoff.ms
    are defaults a --kafka-config can change; group and commit settings are how
    partitions are read, so they stay."""
    assert KafkaSettings("broker:9092").producer()["linger.ms"] == 20
    tuned = KafkaSettings("broker:9092", (("linger.ms", "5"), ("enable.auto.commit", "true")))
    assert tuned.producer()["linger.ms"] == "5"
    assert tuned.consumer()["enable.auto.commit"] is False
    assert KafkaSettings("broker:9092").consumer()["fetch.queue.backoff.ms"] == 10
    paced = KafkaSettings("broker:9092", (("fetch.queue.backoff.ms", "1000"),))
    assert paced.consumer()["fetch.queue.backoff.ms"] == "1000"
    assert KafkaSettings("broker:9092").admin()["reconnect.backoff.ms"] == 1
    patient = KafkaSettings("broker:9092", (("reconnect.backoff.ms", "100"),))
    assert patient.admin()["reconnect.backoff.ms"] == "100"


def test_a_stale_cached_end_does_not_rewind_a_reader(kafka, caplog):
    """The end librdkafka cached from its last fetch can trail the reader's offset (a
    new leader's high watermark lags briefly after a failover): only an end the broker
    confirms is trusted, else a partition's whole retention would be read again. Here
    the cache is made stale for real: the reader's consumer is paused once it has read
    5 messages, then 5 more are produced."""
    topic = unique("tps")
    create_topic(kafka, topic, 1)
    for _ in range(5):  # one batch each, for Tansu's ListOffsets (see above)
        produce(kafka, topic, [(0, b"k", b"{}")])
    source = TpsKafkaSource(
        KafkaSettings(kafka), {topic: 1}, {0: "0"}, start="earliest", runtime=Runtime(Settings())
    )
    reader = source.build_part("input", part_name(topic, 0), None)
    here = TopicPartition(topic, 0)
    try:

        def read_five() -> bool:
            reader.next_batch()
            return bool(reader.snapshot() >= 5)

        wait_for(read_five, 30, "5 messages read", every=0, progress=reader.snapshot)
        reader.consumer.pause([here])
        for _ in range(5):
            produce(kafka, topic, [(0, b"k", b"{}")])
        assert reader.consumer.get_watermark_offsets(here, cached=True)[1] == 5
        reader.next_offset = 8  # read on from a broker whose end is ahead of the cache
        with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
            reader.next_batch()
        assert reader.snapshot() == 8
        assert caplog.records == []
    finally:
        reader.close()
