"""Losing the broker mid-run: the job keeps going, says so, and resumes without loss.

Every client reaches the real broker through a TCP proxy (the broker advertises the
proxy's address), so the test can cut the network and restore it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from flows import kafka as kafka_client
from flows.kafka import KafkaSettings, Reachability, TopicSink, ensure_topics
from flows.live import to_one_topic
from flows.settings import Runtime, Settings
from tests.kafka_broker import (
    consume_all,
    create_topic,
    free_port,
    produce,
    tansu_process,
    unique,
    wait_until_ready,
)
from tests.processes import Cockpit, cockpit, wait_for
from tests.reference import alert_key
from tests.scenario import Events, at
from tests.test_kafka import by_key, run_args, topics, wait_equal, wait_for_one_breach

pytestmark = pytest.mark.kafka


class Proxy:
    """Forwards 127.0.0.1:port to a target; `cut()` drops every connection and, as a
    stopped broker does, refuses new ones until `restore()`; `hang()` holds every byte,
    as a hung broker does, connections open, until `flow()`."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self.sockets: list[socket.socket] = []
        self.requests: bytearray | None = None  # set, what clients connecting now send
        self.lock = threading.Lock()
        self.server: socket.socket | None = None
        self.flowing = threading.Event()
        self.flowing.set()
        self.restore()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the broker is not listening yet
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink, seen in ((client, upstream, self.requests), (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(source, sink, seen), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, seen: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if seen is not None:
                    seen.extend(data)
                self.flowing.wait()
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)  # wakes accept(), which close() does not
            self.server.close()
            self.server = None
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def hang(self) -> None:
        self.flowing.clear()

    def flow(self) -> None:
        self.flowing.set()

    def restore(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def close(self) -> None:
        self.flow()
        self.cut()


@contextlib.contextmanager
def broker_behind_proxy() -> Iterator[tuple[str, Proxy]]:
    """A Tansu broker whose advertised address is a proxy in front of it."""
    listen = free_port()
    proxy = Proxy(listen)
    with tansu_process(listen, proxy.port):
        try:
            bootstrap = f"127.0.0.1:{proxy.port}"
            wait_until_ready(bootstrap)
            yield bootstrap, proxy
        finally:
            proxy.close()


def cut_off(proxy: Proxy, running: Cockpit, seconds: float) -> None:
    """Cut the broker off, wait until the job reports it, and stay cut `seconds`."""
    proxy.cut()
    wait_for(
        lambda: running.samples()["cockpit_kafka_up"] == {(): 0.0},
        30,
        "cockpit_kafka_up to report the outage",
        progress=running.progress,
    )
    time.sleep(seconds)


LOST = re.compile(r"opscockpit: Kafka unreachable from (output \S+|\S+): .+; retrying")
FAILED = re.compile(r"opscockpit: Kafka broker failed for (output \S+|\S+): .+; retrying")
WAITING = re.compile(r"opscockpit: waiting for Kafka to accept the records of (output \S+)")


def assert_reported_once(stopped: Cockpit) -> None:
    """What a job said of one outage: each partition reader and output producer that
    noticed it said so once, with the broker that failed first, and a producer once
    more if a snapshot waited for the broker, however long the outage. librdkafka
    reports every failed reconnection, several a second: they were all logged."""
    assert stopped.process.stderr is not None
    lines = stopped.process.stderr.read().decode().splitlines()
    said = [line for line in lines if "serving metrics" not in line and "stopped" not in line]
    for kind in (LOST, FAILED, WAITING):
        clients = [found[1] for found in map(kind.fullmatch, said) if found]
        assert len(clients) == len(set(clients)), said
    assert all(any(k.fullmatch(line) for k in (LOST, FAILED, WAITING)) for line in said), said
    assert any(LOST.fullmatch(line) for line in said), said


def test_a_lost_broker_is_reported_and_nothing_is_lost(day, tmp_path):
    """Cut off mid-backlog: the job waits, says so, then goes on; no event turns late
    (a partition with unread messages is not idle while the broker is away). A small
    fetch size keeps the backlog on the broker rather than in the client's queue."""
    lines = day["messages"]
    config = tmp_path / "small-fetches.properties"
    config.write_text(
        "fetch.max.bytes=1000000\nmessage.max.bytes=1000000\nqueued.max.messages.kbytes=64\n"
    )
    with broker_behind_proxy() as (bootstrap, proxy):
        names = topics()
        create_topic(bootstrap, names["input"], 3)
        produce(bootstrap, names["input"], lines)
        args = run_args(bootstrap, names, "--idle-timeout", "2s", "--kafka-config", str(config))
        with cockpit(*args) as running:

            def consumed() -> float:
                return sum(running.samples()["cockpit_events_total"].values())

            wait_for(lambda: consumed() > 0, 60, "the first events", progress=running.progress)
            cut_off(proxy, running, 3)  # longer than the idle timeout
            assert consumed() < len(lines), "the cut came after the backlog was read"
            assert running.alive()
            proxy.restore()
            wait_for(
                lambda: running.samples()["cockpit_kafka_up"] == {(): 1.0},
                60,
                "cockpit_kafka_up to report the broker back",
                progress=running.progress,
            )
            wait_equal(running, day["metrics"], timeout=180)
        alerts = consume_all(bootstrap, names["alerts"])
        assert {k for k, _ in alerts} == {alert_key(r).encode() for r in day["alerts"]}
        assert by_key(alerts) == by_key(day["alerts"])
    assert_reported_once(running)


@contextlib.contextmanager
def read_past_a_promise(bootstrap: str, idle_timeout: str) -> Iterator[tuple[Cockpit, str]]:
    """A job that has read an order and an event past its ship promise (within the
    lateness) from a topic of one partition: once the partition idles, W passes the
    promise and the order is breached. Yields the job and its input topic."""
    e = Events()
    names = topics()
    create_topic(bootstrap, names["input"], 1)
    produce(
        bootstrap,
        names["input"],
        [
            (0, b"O1", e.placed("O1", at(0), at(5), at(600))),
            (0, b"s", e.tick(at(5, seconds=30))),
        ],
    )
    with cockpit(*run_args(bootstrap, names, "--idle-timeout", idle_timeout)) as running:
        wait_for(
            lambda: sum(running.samples()["cockpit_events_total"].values()) == 2,
            60,
            "both events",
            progress=running.progress,
        )
        yield running, names["input"]


def test_no_deadline_passes_while_the_broker_is_away():
    """Read to the end, then cut off: the job cannot know that nothing more came, so the
    partition does not go idle and the promise is not judged until the broker is back."""
    with (
        broker_behind_proxy() as (bootstrap, proxy),
        read_past_a_promise(bootstrap, "3s") as (running, _),
    ):
        cut_off(proxy, running, 5)  # longer than the idle timeout
        assert not running.samples().get("cockpit_ship_sla_breaches_total")
        proxy.restore()
        wait_for_one_breach(
            running, "the breach once the broker is back and the partition idles", 60
        )
    assert_reported_once(running)


def test_no_deadline_passes_while_the_broker_answers_nothing():
    """A hung broker holds its connections open and answers nothing: librdkafka sees
    it up for a minute. Nothing new came is then no proof that nothing was sent, so the
    partition does not idle (W jumped to the newest event and judged the promise), and
    the job reports the broker lost once it has been silent SILENT_US."""
    with (
        broker_behind_proxy() as (bootstrap, proxy),
        read_past_a_promise(bootstrap, "5s") as (running, _),
    ):
        proxy.hang()
        wait_for(
            lambda: running.samples()["cockpit_kafka_up"] == {(): 0.0},
            30,
            "cockpit_kafka_up to report the silent broker",
            progress=running.progress,
        )
        assert not running.samples().get("cockpit_ship_sla_breaches_total")
        proxy.flow()
        wait_for_one_breach(running, "the breach once the broker answers again", 60)
        assert running.samples()["cockpit_kafka_up"] == {(): 1.0}
    assert_reported_once(running)


def test_no_deadline_passes_while_no_broker_leads_the_partition():
    """The broker restarted without its topics (Tansu's memory storage; a topic
    deleted): it answers, but no broker leads the partition. The job cannot know what
    it missed, so the partition does not idle, and it reports the partition lost; its
    error, repeated every second by librdkafka, was a line a second for ever."""
    listen = free_port()
    proxy = Proxy(listen)
    bootstrap = f"127.0.0.1:{proxy.port}"
    with contextlib.ExitStack() as first:
        first.enter_context(tansu_process(listen, proxy.port))
        wait_until_ready(bootstrap)
        with read_past_a_promise(bootstrap, "3s") as (running, topic):
            proxy.cut()  # at once: a broker takes a while to stop
            first.close()  # the broker and its topics gone
            with tansu_process(listen, proxy.port):
                proxy.restore()
                for up, what in ((0.0, "the broker lost"), (1.0, "it back"), (0.0, "no leader")):
                    wait_for(
                        lambda up=up: running.samples()["cockpit_kafka_up"] == {(): up},
                        60,
                        f"cockpit_kafka_up to report {what}",
                        progress=running.progress,
                    )
                assert not running.samples().get("cockpit_ship_sla_breaches_total")
    proxy.close()
    assert running.process.stderr is not None
    said = running.process.stderr.read().decode()
    leads = f"Kafka unreachable from {topic}:0: no broker leads {topic} [0]"
    assert said.count(leads) == 1, said


def test_a_stopping_producer_does_not_report_an_outage_it_heard_of_long_ago(caplog):
    """A producer serves its callbacks only when it writes: the errors of an outage
    long over came out as the job stopped, the last lines before "stopped"."""

    def writer() -> Any:
        sink = to_one_topic(KafkaSettings("127.0.0.1:9"), "kpis", Runtime(Settings()), "kpis")
        return sink.build_part("output", "kpis", None)

    stopping, polled = writer(), writer()
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        # The other producer, polled, says the broker is lost: so has this one, unpolled.
        wait_for(lambda: polled.producer.poll(0.1) >= 0 and caplog.records, 20, "a report")
        reported = len(caplog.records)
        stopping.close()
    assert all("output kpis" in r.getMessage() for r in caplog.records)
    assert len(caplog.records) == reported, "the stopping producer said it too"
    polled.close()


def test_an_output_producer_says_once_per_outage_that_the_broker_is_lost(caplog):
    """librdkafka calls the error callback at every failed reconnection; the producer
    says so again only once a delivery has shown the broker back: the records written
    since have left its queue (deliveries are not reported one by one)."""
    sink = to_one_topic(KafkaSettings("127.0.0.1:9"), "kpis", Runtime(Settings()), "kpis")
    writer = sink.build_part("output", "kpis", None)
    failed = KafkaError(KafkaError._TRANSPORT, "127.0.0.1:9/bootstrap: Connect to 127.0.0.1:9")
    down = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        for _ in range(3):
            writer._error(failed)
            writer._error(down)
        writer._confirm(0)  # nothing written since: still lost
        writer._error(failed)
        writer._error(down)
        writer.unconfirmed = 1  # as if a record written since had been delivered
        writer._confirm(0)
        writer._error(failed)
        writer._error(down)
    broker = "Kafka broker failed for output kpis: 127.0.0.1:9/bootstrap: Connect to 127.0.0.1:9"
    lost = "Kafka unreachable from output kpis: 1/1 brokers are down; retrying"
    said = [f"{broker}; retrying", lost] * 2
    assert [record.getMessage() for record in caplog.records] == said
    writer.close()


def test_an_error_said_again_and_again_is_logged_once_in_a_while(caplog):
    """A deleted topic: librdkafka says so for each partition every second, for ever.
    Each error is logged once every REPEAT_S, with how often it came in between."""
    now = [0.0]
    reach = Reachability("ev:3", clock=lambda: now[0])
    gone = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "ev [3]: topic does not exist")
    other = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "ev [4]: topic does not exist")
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        for second in range(2 * kafka_client.REPEAT_S):
            now[0] = float(second)
            reach.heard(gone)
            if second == 5:
                reach.heard(other)
    assert [record.getMessage() for record in caplog.records] == [
        "Kafka error on ev:3: ev [3]: topic does not exist",
        "Kafka error on ev:3: ev [4]: topic does not exist",
        "Kafka error on ev:3: ev [3]: topic does not exist (and 599 times in the last 10 min)",
    ]
    assert reach.up  # the brokers answer: what the job reads, not whether, went wrong


def test_one_failed_broker_of_several_is_one_line_and_no_outage(caplog):
    """A dead address among the bootstrap servers fails at every reconnection while the
    others serve: one line per broker, and the brokers stay up."""
    sink = to_one_topic(KafkaSettings("127.0.0.1:9"), "kpis", Runtime(Settings()), "kpis")
    writer = sink.build_part("output", "kpis", None)
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        for broker in ("127.0.0.1:9/bootstrap", "127.0.0.1:9/bootstrap", "b:9092/2"):
            writer._error(KafkaError(KafkaError._TRANSPORT, f"{broker}: Connect failed"))
    assert writer.reach.up
    assert [record.getMessage() for record in caplog.records] == [
        f"Kafka broker failed for output kpis: {broker}: Connect failed; retrying"
        for broker in ("127.0.0.1:9/bootstrap", "b:9092/2")
    ]
    writer.close()


def test_a_broker_that_came_back_and_fails_again_is_logged_again(caplog):
    """A reader's statistics show which brokers are up: one seen up since its failure
    was logged is logged again when it fails again (it was not, until every broker
    had been lost)."""
    reach = Reachability("tps.events:0")
    lost = KafkaError(KafkaError._TRANSPORT, "b:9092/2: Disconnected")
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        reach.heard(lost)
        reach.back(["b:9092/1"])  # another broker up: b:9092/2 still down
        reach.heard(lost)
        reach.back(["b:9092/1", "b:9092/2"])
        reach.heard(lost)
    said = "Kafka broker failed for tps.events:0: b:9092/2: Disconnected; retrying"
    assert [record.getMessage() for record in caplog.records] == [said, said]
    assert reach.up


def test_a_dead_bootstrap_address_beside_a_live_one_is_no_outage(kafka):
    """The job runs on the live broker; cockpit_kafka_up stays 1 (it was 0 after each
    failed connection to a dead address, and "Kafka unreachable" was logged). Each
    partition reader first connects to a random one of the six addresses, five of
    them dead: some reader of the four tries a dead one but for a chance of 1 in
    1,296 (writers report errors only when they write, which this job may not)."""
    names = topics()
    partitions = 4
    create_topic(kafka, names["input"], partitions)
    e = Events()
    produce(
        kafka,
        names["input"],
        [(p, b"O1", e.placed("O1", at(0), at(5), at(600))) for p in range(partitions)],
    )
    dead = ",".join(f"127.0.0.1:{port}" for port in (7, 9, 13, 17, 19))
    args = run_args(f"{dead},{kafka}", names, "--idle-timeout", "1s")
    with cockpit(*args) as running:
        wait_for(
            lambda: sum(running.samples()["cockpit_events_total"].values()) == partitions,
            60,
            "an event of each partition",
            progress=running.progress,
        )
        for _ in range(7):  # past a statistics report (5 s), which set it back to 1
            assert running.samples()["cockpit_kafka_up"] == {(): 1.0}
            time.sleep(1)
        # The dead addresses' failures hold no partition back: all idle, W = max ts.
        newest = datetime.fromisoformat(at(0)).timestamp()
        wait_for(
            lambda: running.samples()["cockpit_watermark_timestamp_seconds"] == {(): newest},
            60,
            "every partition to idle",
            progress=running.progress,
        )
    assert running.process.stderr is not None
    said = running.process.stderr.read().decode()
    assert "unreachable" not in said, said
    assert FAILED.search(said), said


def test_an_output_producers_log_names_the_topics_it_writes(caplog):
    """The dead-letter writer said "output dead_letters": a role, not a topic an
    operator can look up."""
    runtime, kafka = Runtime(Settings()), KafkaSettings("127.0.0.1:9")
    topics = ["orders.dlq", "scans.dlq"]
    sink = TopicSink(kafka, "dead_letters", lambda _o: "orders.dlq", topics, runtime, "dlq")
    writer = sink.build_part("output", "dead_letters", None)
    with caplog.at_level(logging.WARNING, logger="opscockpit.kafka"):
        writer._error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert [record.getMessage() for record in caplog.records] == [
        "Kafka unreachable from output orders.dlq, scans.dlq: 1/1 brokers are down; retrying"
    ]
    writer.close()


ABANDONING = """
import logging
from flows import kafka
from flows.runtime.outputs import DeadLetter
from flows.settings import Runtime, Settings
logging.basicConfig(format="opscockpit: %(message)s")
kafka.STOP_FLUSH_S = 1
runtime = Runtime(Settings().with_(recovery=True))
topic = lambda _output: "in.dlq"
sink = kafka.TopicSink(kafka.KafkaSettings("127.0.0.1:9"), "dlq", topic, ["in.dlq"], runtime, "dlq")
writer = sink.build_part("output", "dlq", None)
writer.write_batch([DeadLetter("in|0|7", {"reason": "invalid_json"})])
runtime.stop.set()
writer.snapshot()
"""


def test_a_stopped_job_gives_up_on_a_broker_that_takes_no_records():
    """SIGTERM while the broker took none of the records waiting to be written: the
    job waited for ever (and a second signal was ignored). Once stopping, it waits
    STOP_FLUSH_S, then ends with one line and status 1, before a snapshot could
    commit the input past the records (a restart from the recovery directory
    writes them again). 127.0.0.1:9 is no broker."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", ABANDONING], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "opscockpit: error: stopped while Kafka took no records of output in.dlq for 1 s "
        "(1 waiting): written again by a restart"
    )
    assert time.monotonic() - started < 30


def test_a_full_queue_holds_a_stopping_producer_only_so_long(monkeypatch):
    """A hung broker and a full local queue held produce() for ever, signal or not:
    once stopping, it gives up after STOP_FLUSH_S. 127.0.0.1:9 is no broker."""
    monkeypatch.setattr(kafka_client, "STOP_FLUSH_S", 0.2)
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": 1})
    stop = threading.Event()
    assert kafka_client.produce(producer, "t", b"first", None, stop)  # queued
    stop.set()
    started = time.monotonic()
    assert not kafka_client.produce(producer, "t", b"second", None, stop, wait_s=0.05)
    assert 0.2 <= time.monotonic() - started < 5
    assert len(producer) == 1


def test_outputs_sharing_a_topic_show_every_skip():
    """--kpis-topic and --alerts-topic may name one topic: each output's counts
    stay on the board, summed."""
    runtime, kafka = Runtime(Settings()), KafkaSettings("127.0.0.1:9")
    alerts = to_one_topic(kafka, "out", runtime, "alerts")
    to_one_topic(kafka, "out", runtime, "kpis")  # made after: it must not hide the alerts'
    alerts.ledger["cockpit_kafka_records_skipped_total"]["out"] += 1
    assert runtime.board.totals()["cockpit_kafka_records_skipped_total"] == {"out": 1}


def test_simulate_stops_and_says_so_when_the_broker_loses_its_events(tmp_path):
    """`simulate --kafka` counts what the broker acknowledged: cut off, its events
    time out (2 s here), and it ends in one line naming how many were not delivered,
    instead of reporting them produced."""
    config = tmp_path / "short-timeout.properties"
    config.write_text("message.timeout.ms=2000\n")
    with broker_behind_proxy() as (bootstrap, proxy):
        topic = topics()["input"]
        create_topic(bootstrap, topic, 3)
        command = ["simulate", "--kafka", bootstrap, "--topic", topic, "--hours", "2000"]
        simulate = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *command, "--kafka-config", str(config)],
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: stored(bootstrap, topic) > 0, 60, "the first events")
            proxy.cut()
            _out, err = simulate.communicate(timeout=120)
        finally:
            simulate.kill()
    lines = err.decode().splitlines()
    assert simulate.returncode != 0
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"opscockpit: error: [\d,]+ of [\d,]+ events were not delivered to \S+: .+", lines[0]
    )


def test_simulate_stops_on_sigterm_as_on_ctrl_c(kafka):
    """`docker stop` sends SIGTERM: `simulate --kafka` was killed by it (status 143),
    its queued events unsent and uncounted. Now it flushes and says how many."""
    topic = topics()["input"]
    create_topic(kafka, topic, 3)
    command = ["simulate", "--kafka", kafka, "--topic", topic, "--hours", "2000"]
    simulate = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *command], stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: stored(kafka, topic) > 0, 60, "the first events")
        simulate.send_signal(signal.SIGTERM)
        _out, err = simulate.communicate(timeout=60)
    finally:
        simulate.kill()
    assert simulate.returncode == 0, err
    [line] = err.decode().splitlines()
    produced = re.fullmatch(rf"opscockpit: produced ([\d,]+) events to {topic}", line)
    assert produced, line
    count = int(produced[1].replace(",", ""))
    assert len(consume_all(kafka, topic)) == count


def stored(bootstrap: str, topic: str) -> int:
    """How many messages the broker says it holds (about: Tansu's count trails)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for partition in range(3)
        )
    finally:
        consumer.close()


def test_a_record_the_broker_refuses_stops_the_job_before_a_snapshot_passes_it(kafka, tmp_path):
    """A delivery that fails for good (here the alerts topic is gone and may not be
    created) ends the job in one line naming the topic, before a snapshot commits the
    input past the record: a restart from the recovery directory writes it. It was
    dropped without a word, and lost."""
    config = tmp_path / "no-auto-create.properties"
    config.write_text("allow.auto.create.topics=false\ntopic.metadata.propagation.max.ms=1000\n")
    names = topics()
    create_topic(kafka, names["input"], 1)
    recovery = ["--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "100ms"]
    args = run_args(kafka, names, "--kafka-config", str(config), *recovery)
    admin = AdminClient({"bootstrap.servers": kafka})
    with cockpit(*args) as running:
        admin.delete_topics([names["alerts"]])[names["alerts"]].result(10)
        e = Events()
        produce(
            kafka,
            names["input"],
            [(0, b"O1", e.placed("O1", at(0), at(5), at(600))), (0, b"s", e.tick(at(30)))],
        )
        assert running.process.wait(timeout=30) == 1
        assert running.process.stderr is not None
        lines = running.process.stderr.read().decode().splitlines()
    # Tansu fails the record 0.5 s later once asked the deleted topic's configs (as
    # the writer does before its first record): a snapshot may say it waits for it.
    said = [line for line in lines if "serving metrics" not in line and not WAITING.match(line)]
    assert said == [
        f"opscockpit: error: Kafka topic {names['alerts']} refused a record: "
        "Broker: Unknown topic or partition"
    ]
    with cockpit(*args) as again:  # the alerts topic is created again at the start
        alerts = wait_for(
            lambda: consume_all(kafka, names["alerts"]), 30, "the alert", progress=again.progress
        )
    assert [key for key, _value in alerts] == [b"ship_sla_breach|O1"]


def test_output_topics_are_replicated_as_the_broker_says():
    """Created with replication factor -1, the broker's default.replication.factor,
    not 1: on a cluster, a topic with one replica is lost with its broker."""
    with broker_behind_proxy() as (bootstrap, proxy):
        name, sent = unique("kpis"), bytearray()
        proxy.requests = sent
        ensure_topics(KafkaSettings(bootstrap), {name: 3})
    # CreateTopics: the topic's name, then its partition count and replication factor.
    after_name = sent.index(name.encode()) + len(name)
    assert struct.unpack_from(">ih", sent, after_name) == (3, -1)
