"""`opscockpit run`: the long-running job, on the embedded simulator or on Kafka.

Serves /metrics, runs the dataflow on one or more workers and processes, with
bytewax recovery when asked. Also the Kafka producer of `opscockpit simulate`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from bytewax.errors import BytewaxRuntimeError
from bytewax.inputs import Source
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows.cluster import CLUSTER_DIR, cluster_started, join_in_order
from flows.commands import DEFAULT_TOPIC, say
from flows.dataflow import (
    COMBINE_KEY,
    Layout,
    Sinks,
    build_flow,
    check_recovery,
    input_parts,
    kept_windows,
    output_parts,
)
from flows.exposition import Board
from flows.kafka import (
    STOP_FLUSH_S,
    KafkaSettings,
    KafkaSetupError,
    TopicSink,
    TpsKafkaSource,
    describe,
    ensure_topics,
    flush,
    part_name,
    partitions_of,
    produce,
    read_properties,
)
from flows.placement import shard_keys
from flows.runtime.snapshot import SnapshotError
from flows.settings import Runtime, Settings
from flows.sources import SimulatorSource, simulator_parts
from flows.timeutil import US_PER_SECOND
from flows.web.config import WebConfig
from flows.web.server import serve

SIMULATOR = "simulator"
READY_GRACE_S = 10.0
UNSTARTED_STOP_S = 5.0  # after a stop signal, for a job that never started to end itself


class RunError(Exception):
    """A problem starting the job, reported in one line."""


@dataclass(frozen=True)
class Wiring:
    source: Source[Any]
    layout: Layout
    sinks: Sinks
    reading: str = ""  # what the start-up line says the job reads, if not the simulator


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """Broker address plus the properties of --kafka-config, if any, checked."""
    properties = read_properties(args.kafka_config) if args.kafka_config else ()
    settings = KafkaSettings(args.kafka, properties)
    settings.check()
    return settings


def embedded_wiring(runtime: Runtime, args: argparse.Namespace) -> Wiring:
    """The simulator, as one partition per worker so that every worker holds a shard."""
    from flows.simulator import Profile, stream

    profile = Profile().scaled(args.scale)
    parts = simulator_parts(SIMULATOR, total_workers(args))
    shard_of, windows, local = placed(args, {str(i): part for i, part in enumerate(parts)})
    source = SimulatorSource(
        SIMULATOR,
        lambda start: stream(args.seed, start, profile),
        shard_of,
        args.backfill,
        runtime,
        local=local,
        started=cluster_started(),
    )
    return Wiring(source, Layout(tuple(source.shards), tuple(source.parts), windows), Sinks())


def placed(
    args: argparse.Namespace, reader_of: dict[str, str]
) -> tuple[dict[int, str], str, list[int]]:
    """The shard (state key) of each partition index, held by the worker that reads
    `reader_of[index]`; the window stage's key, on worker 0 unless the recovery
    directory holds it elsewhere (flows.placement); the indices this process reads."""
    keys, windows, worker_of = shard_keys(total_workers(args), reader_of, COMBINE_KEY)
    process = args.process_id or 0
    return (
        {int(index): key for index, key in keys.items()},
        kept_windows(args.recovery_dir) or windows,
        [int(index) for index, worker in worker_of.items() if worker // args.workers == process],
    )


def kafka_wiring(runtime: Runtime, args: argparse.Namespace) -> Wiring:
    kafka = kafka_settings(args)
    topics = args.topic or [DEFAULT_TOPIC]
    partitions = partitions_of(kafka, topics)
    outputs = {args.kpis_topic: 1, args.alerts_topic: 1}
    outputs.update(
        {f"{topic}.dlq": 1 for topic in topics} if args.dlq_topic is None else {args.dlq_topic: 1}
    )
    ensure_topics(kafka, outputs)
    # One shard per partition index (topics are co-partitioned), held by the worker
    # that reads that partition of the first topic having it.
    reader_of: dict[str, str] = {}
    for topic, count in partitions.items():
        for index in range(count):
            reader_of.setdefault(str(index), part_name(topic, index))
    shard_of, windows, _local = placed(args, reader_of)
    source = TpsKafkaSource(kafka, partitions, shard_of, start=args.start, runtime=runtime)
    layout = Layout(
        tuple(source.shards),
        tuple(part_name(t, p) for t, n in partitions.items() for p in range(n)),
        windows,
    )
    dlq_topic = args.dlq_topic
    dlq_topics = [topic for topic in outputs if topic not in (args.kpis_topic, args.alerts_topic)]
    sinks = Sinks(
        dead_letters=TopicSink(
            kafka,
            "dead_letters",
            lambda output: dlq_topic or f"{output.record['topic']}.dlq",
            dlq_topics,
            runtime,
            "dead_letters",
        ),
        alerts=to_one_topic(kafka, args.alerts_topic, runtime, "alerts"),
        kpis=to_one_topic(kafka, args.kpis_topic, runtime, "kpis"),
    )
    reading = f"consuming {', '.join(topics)} from Kafka ({describe(kafka)})"
    return Wiring(source, layout, sinks, reading)


def to_one_topic(kafka: KafkaSettings, topic: str, runtime: Runtime, role: str) -> TopicSink:
    """A sink writing every record to `topic`, named as it."""
    return TopicSink(kafka, topic, lambda _output: topic, [topic], runtime, role)


def cluster_processes(args: argparse.Namespace) -> int:
    """Processes in the cluster: those --addresses names, else --processes."""
    return len(args.addresses.split(";")) if args.addresses else int(args.processes)


def total_workers(args: argparse.Namespace) -> int:
    """Workers in the whole cluster: per process, times the processes."""
    return int(args.workers) * max(cluster_processes(args), 1)


def recovery_config(directory: Path | None, workers: int) -> RecoveryConfig | None:
    """bytewax recovery in `directory`, creating its partitions on first use.

    State is keyed by shards placed for a number of workers, so a directory only
    resumes with the number of workers that created it.
    """
    if directory is None:
        return None
    marker = directory / "opscockpit-workers"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.glob("part-*.sqlite3")):
            init_db_dir(directory, workers)
            marker.write_text(f"{workers}\n")
        # bytewax keeps a part file per worker it was created for: so that a directory
        # whose marker was lost is still refused to another number of workers.
        parts = len(list(directory.glob("part-*.sqlite3")))
        created = int(marker.read_text()) if marker.exists() else parts
    except FileExistsError:
        raise RunError(f"cannot resume from {directory}: it is not a directory") from None
    except OSError as exc:
        raise RunError(f"cannot resume from {directory}: {exc.strerror or exc}") from None
    except BytewaxRuntimeError:  # bytewax says no more than that it failed
        raise RunError(
            f"cannot keep state in {directory}: bytewax cannot create its files there"
        ) from None
    except ValueError:  # not a number, or not text
        raise RunError(
            f"cannot resume from {directory}: {marker.name} is not an opscockpit recovery "
            "file (not a number of workers)"
        ) from None
    if created != workers:
        raise RunError(
            f"{directory} holds state of {_workers(created)}, not {workers}: run with "
            f"{_workers(created)} in total, or start from an empty --recovery-dir"
        )
    return RecoveryConfig(directory)


def _workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


def check_resume(directory: Path, window: int, parts: dict[str, list[str]] | None = None) -> None:
    """`check_recovery`, its refusal a RunError."""
    try:
        check_recovery(directory, window, parts)
    except SnapshotError as exc:
        raise RunError(f"cannot resume from {directory}: {exc}") from None


def kafka_cluster(args: argparse.Namespace) -> bool:
    """A cluster reading Kafka, where a process may read no partition (the
    simulator has one per worker)."""
    return bool(args.kafka) and cluster_processes(args) > 1


def holds_no_shard(board: Board, kafka_cluster: bool) -> bool:
    """Whether this process may hold no shard, so that no batch would ever make it
    ready. A single process holds every shard, and so does each worker of the
    simulator (a partition each); a process of a Kafka cluster holds the shards of
    the partitions it reads (flows.placement), if it reads any."""
    return kafka_cluster and not board.totals().get("cockpit_kafka_up")


def end_grace(board: Board, kafka_cluster: bool) -> None:
    """Ready after a grace period only a process that holds no shard: where one is
    held, its first batch (flows.dataflow) makes the process ready once restored,
    however long restoring takes."""
    if holds_no_shard(board, kafka_cluster):
        board.ready.set()


def run(settings: Settings, args: argparse.Namespace, web: WebConfig) -> None:
    """The main job in this process (one of a cluster with --process-id)."""
    runtime = Runtime(settings.with_(recovery=args.recovery_dir is not None))
    try:
        wiring = kafka_wiring(runtime, args) if args.kafka else embedded_wiring(runtime, args)
    except KafkaSetupError as exc:
        raise RunError(str(exc)) from None
    flow = build_flow(runtime, wiring.source, wiring.layout, wiring.sinks)
    recovery = recovery_config(args.recovery_dir, total_workers(args))
    if args.recovery_dir is not None:
        parts = input_parts(wiring.source) | output_parts(wiring.sinks)
        check_resume(args.recovery_dir, settings.window, parts)
    process = args.process_id or 0
    port = args.metrics_port + process if args.metrics_port else 0  # 0: any free port
    host = f"[{args.metrics_host}]" if ":" in args.metrics_host else args.metrics_host  # in a URL
    try:
        server = serve(
            runtime.board, args.metrics_host, port, settings=runtime.settings, config=web
        )
    except OSError as exc:
        raise RunError(f"cannot serve /metrics on {host}:{port}: {exc.strerror}") from None
    base = f"{'https' if web.tls else 'http'}://{host}:{server.server_port}"
    reading = f"{wiring.reading}; " if wiring.reading else ""
    say(f"opscockpit: {reading}serving metrics on {base}/metrics and the cockpit on {base}/")
    grace = threading.Timer(READY_GRACE_S, end_grace, (runtime.board, kafka_cluster(args)))
    grace.daemon = True
    grace.start()
    addresses = args.addresses.split(";") if args.addresses else None
    with contextlib.suppress(Stopped):
        stop_on_signals(runtime.stop, args.workers > 1 or addresses is not None)
        exit_if_never_started(runtime.board)
        join_in_order(process, os.environ.get(CLUSTER_DIR))
        try:
            cli_main(
                flow,
                workers_per_process=args.workers,
                process_id=args.process_id,
                addresses=addresses,
                epoch_interval=timedelta(microseconds=args.snapshot_interval),
                recovery_config=recovery,
            )
        except BaseException as exc:  # a panic of bytewax is pyo3's, a BaseException
            if type(exc).__name__ != "PanicException" or addresses is None:
                raise
            raise RunError(f"the cluster stopped, a process of it gone ({exc})") from None
    say("opscockpit: stopped")


class Stopped(Exception):
    """A stop signal, raised where bytewax checks for signals: every worker ends."""


def stop_on_signals(stop: threading.Event, threaded: bool) -> None:
    """SIGTERM and SIGINT ask the endless sources to stop (`stop_if_asked`).

    A bytewax worker stops only at a batch of its own partitions: one that reads none
    (more workers than Kafka partitions; until this release, every worker but one on
    the simulator) went on, and the others waited for it forever. bytewax runs
    several workers, or a cluster's, in threads and checks for signals in this main
    thread: `Stopped`, raised by the handler there, ends every worker of the process.
    A single worker runs on this thread, where it would be a panic; it reads every
    partition.
    """

    def request(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            return  # a second one while stopping (Ctrl-C reaches a cluster twice)
        stop.set()
        if threaded:
            raise Stopped

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request)


def exit_if_never_started(board: Board) -> None:
    """End the process soon after a stop signal if its job never started.

    The handlers of `stop_on_signals` run only when the main thread runs Python, and
    while timely connects to the other processes of a cluster (retrying each that
    does not answer, for ever) it runs none: the process was deaf to SIGTERM and
    Ctrl-C. Signals also reach a pipe (`signal.set_wakeup_fd`) that a thread
    watches; a job never ready (no shard restored, no batch) holds nothing to lose.
    """
    wakeup, woken = os.pipe()
    os.set_blocking(woken, False)
    signal.set_wakeup_fd(woken)

    def watch() -> None:
        os.read(wakeup, 1)
        time.sleep(UNSTARTED_STOP_S)
        if not board.ready.is_set():
            say("opscockpit: stopped before the job started")
            os._exit(0)

    threading.Thread(target=watch, name="opscockpit-stop", daemon=True).start()


def rate_scale(seed: int, start: int, rate: float) -> float:
    """The profile scale that gives about `rate` events/s, measured on the six simulated
    hours after the start. The opening balances, which all arrive at the start however
    the traffic is scaled, are left out: counted, they made the live rate up to a third low."""
    from flows.simulator import Profile, stream

    hours = 6
    end = start + hours * 3600 * US_PER_SECOND
    emissions = stream(seed, start, Profile())
    opening = next(emissions)[0]  # the start, as the first opening balance arrives
    count = sum(1 for arrival, _key, _payload in _until(emissions, end) if arrival > opening)
    return rate * hours * 3600 / max(count, 1)


def _until(
    emissions: Iterator[tuple[int, str, bytes]], end: int
) -> Iterator[tuple[int, str, bytes]]:
    for emission in emissions:
        if emission[0] >= end:
            return
        yield emission


NEW_INPUT_PARTITIONS = 6  # as the compose stack makes tps.events


def produce_simulation(args: argparse.Namespace, start: int, end: int | None) -> int:
    """`simulate --kafka`: produce simulated events keyed by entity id.

    With an end, as fast as the broker takes them; without, released in wall-clock
    time from `start` on (a live feed for demos and load).
    """
    from confluent_kafka import KafkaError, Producer

    from flows.simulator import Profile, stream

    try:
        kafka = kafka_settings(args)
        if ensure_topics(kafka, {args.topic: NEW_INPUT_PARTITIONS}):
            say(f"opscockpit: created topic {args.topic} ({NEW_INPUT_PARTITIONS} partitions)")
    except KafkaSetupError as exc:
        raise RunError(str(exc)) from None
    undelivered: list[str] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            undelivered.append(error.str())

    producer = Producer(kafka.producer(on_delivery=delivered))
    count = 0
    # Ctrl-C, or SIGTERM (`docker stop`): flush what was produced and say how much. A
    # flag, not KeyboardInterrupt: raised inside librdkafka's calls, that broke them.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    emissions = stream(args.seed, start, Profile().scaled(args.scale))
    for arrival, key, payload in emissions if end is None else _until(emissions, end):
        if end is None:
            wait = (arrival - time.time_ns() // 1000) / US_PER_SECOND
            if wait > 0:
                producer.poll(0)
                stop.wait(wait)
        if stop.is_set():
            break
        if not produce(producer, args.topic, payload, key.encode() or None, stop):
            break
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
        if undelivered:
            break  # say so now, rather than after producing the rest
    if waiting := flush(producer, stop):
        raise RunError(
            f"{waiting:,} of {count:,} events were not delivered to {args.topic}: stopped "
            f"while Kafka took none of them for {STOP_FLUSH_S} s"
        )
    if undelivered:
        raise RunError(
            f"{len(undelivered):,} of {count:,} events were not delivered to {args.topic}: "
            f"{undelivered[0]}"
        )
    return count
