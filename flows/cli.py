"""`opscockpit` commands: run, replay, simulate, and the tooling around them.

Every failure a user can cause (a bad option, a missing file, an unreachable
broker) ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from flows.cluster import CLUSTER_DIR
from flows.cockpit.cli import add_grafana_command
from flows.commands import (
    DEFAULT_TOPIC,
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    Once,
    Parser,
    distinct,
    named,
    path,
    say,
    writable,
)
from flows.config import (
    DAY_US,
    MAX_DAYS,
    MAX_INTEGER,
    OPTIONS,
    Config,
    check_count,
    check_duration,
    check_window,
    load_config,
)
from flows.olist import add_import_command
from flows.timeutil import MAX_EPOCH_MS, US_PER_SECOND, format_time, parse_duration, parse_time

DEFAULT_METRICS_PORT = 9108
MAX_PARALLEL = 1024
MAX_PORT = 65_535

# Options of run that mean something only with --kafka, and the defaults of some.
RUN_KAFKA_ONLY = ("topic", "kafka_config", "start", "kpis_topic", "alerts_topic", "dlq_topic")
RUN_KAFKA_DEFAULTS = {
    "start": "earliest",
    "kpis_topic": "cockpit.kpis",
    "alerts_topic": "cockpit.alerts",
}


def duration(text: str) -> int:
    """An argparse type: '60s', '1h', '30d' -> microseconds."""
    try:
        return check_duration(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def interval(text: str) -> int:
    """An argparse type: a duration above 0 (at 0, bytewax snapshots after every
    step of the dataflow)."""
    value = duration(text)
    if not value:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text!r}")
    return value


def window(text: str) -> int:
    """An argparse type: a window size, which divides 24 h."""
    try:
        return check_window(duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {text!r}") from None


# Digits as a person types them: int() would also take "1_000", " 7" and "٣".
_INTEGER = re.compile(r"-?[0-9]+")


def _integer(text: str, least: int, most: int = MAX_INTEGER) -> int:
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    try:
        return check_count(int(text), least, most)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _integer(text, 1)


def parallelism(text: str) -> int:
    """An argparse type: workers or processes, at most MAX_PARALLEL (a cluster of
    millions was accepted, then forked until the machine gave out)."""
    return _integer(text, 1, MAX_PARALLEL)


def non_negative(text: str) -> int:
    """An argparse type: an integer >= 0 (a seed, a process id)."""
    return _integer(text, 0)


def host(text: str) -> str:
    """An argparse type: an address to bind. An empty one (an unset variable, say)
    bound every address, where the default binds only this machine's."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty host (0.0.0.0 serves every address)")
    return text


def port(text: str) -> int:
    """An argparse type: a TCP port; 0 binds any free one (as the tests do)."""
    return _integer(text, 0, MAX_PORT)


# A bootstrap server as librdkafka reads one: [protocol://]host[:port], the host a
# name, an IPv4 address or a bracketed IPv6 one.
BOOTSTRAP_SERVER = re.compile(
    r"(?:(?:PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)://)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)


PROMISE_MARGIN_DAYS = 30  # a simulated delivery promise is at most days past its order


def bootstrap(text: str) -> str:
    """An argparse type: bootstrap servers, comma-separated. A malformed one waited
    10 s, then read as an unreachable broker."""
    for server in text.split(","):
        found = BOOTSTRAP_SERVER.fullmatch(server.strip())
        if found is None or not 0 < int(found["port"] or 9092) <= MAX_PORT:
            raise argparse.ArgumentTypeError(f"not HOST:PORT[,HOST:PORT...]: {text!r}")
    return text


CLUSTER_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")


def addresses(text: str) -> str:
    """An argparse type: the cluster's HOST:PORT;... A malformed one was refused by
    bytewax with a traceback, after the job had said it was serving."""
    given = text.split(";")
    for address in given:
        found = CLUSTER_ADDRESS.fullmatch(address)
        if found is None or not 0 < int(found["port"]) <= MAX_PORT:
            raise argparse.ArgumentTypeError(f"not HOST:PORT[;HOST:PORT...]: {text!r}")
    twice = sorted({address for address in given if given.count(address) > 1})
    if twice:  # two processes cannot both listen there: the cluster waited for ever
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} given more than once: {text!r}")
    return text


def positive_number(most: int) -> Callable[[str], float]:
    """An argparse type: a number in (0, most]. NaN, infinity and huge values
    otherwise fail deep in the simulator, with a traceback."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value <= most:  # false for NaN too
            raise argparse.ArgumentTypeError(
                f"must be greater than 0 and at most {most}, not {text}"
            )
        return value

    return number


period_hours = positive_number(MAX_DAYS * 24)  # the 100 years durations may span
# --scale and --rate: far beyond what the simulator makes in real time (1e18 overflowed).
traffic = positive_number(1_000_000)


def moment(text: str) -> int:
    """An argparse type: an RFC 3339 time or epoch milliseconds -> microseconds."""
    try:
        return parse_time(int(text) if text.isdigit() else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_event_time_options(parser: argparse.ArgumentParser, retention: str) -> None:
    """Options of the engine, shared by run and replay; a --config file may set each
    (OPTIONS). Their defaults are None, so that `settings_from` knows which were given."""
    group = parser.add_argument_group("event time and KPI settings")
    group.add_argument(
        "--config",
        type=path,
        action=Once,
        metavar="FILE.toml",
        help="KPI settings, shift calendars and the options below from a TOML file; "
        "an option given here overrides the file",
    )
    group.add_argument(
        "--lateness",
        type=duration,
        help="allowed lateness L: W = max ts - L (default 60s)",
    )
    group.add_argument(
        "--window",
        type=window,
        help="tumbling window size, which divides 24h (default 1h)",
    )
    group.add_argument(
        "--retention",
        type=duration,
        help=f"drop open orders/receipts this long after their last promise; "
        f"0 keeps them (default {retention})",
    )
    group.add_argument(
        "--max-label-values",
        type=positive_int,
        help="distinct values kept per label before folding into 'other' (default 1000)",
    )
    group.add_argument(
        "--max-event-bytes",
        type=positive_int,
        help="larger payloads, in bytes, are dead-lettered as too_large (default 1048576: 1 MiB)",
    )
    group.add_argument(
        "--batch-size", type=positive_int, help="events read per batch (default 1000)"
    )
    parser.set_defaults(default_retention=duration(retention))


def settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    """Settings from parsed options over the --config file over the defaults."""
    from flows.settings import Settings

    config = Config() if args.config is None else load_config(args.config)
    given = {name: getattr(args, name) for name in OPTIONS}
    options = {
        "retention": args.default_retention,
        **config.options,
        **{name: value for name, value in given.items() if value is not None},
    }
    return Settings(**options, kpi=config.kpi, **extra)


def build_parser() -> Parser:
    parser = Parser(prog="opscockpit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser(
        "run",
        help="the main job: live KPIs from the embedded simulator or Kafka",
        description="Run the cockpit. With no broker, on the embedded simulator: simulated "
        "history (--backfill) at full speed, then live events in wall-clock time. "
        "With --kafka, consume TPS topics and write KPI, alert and dead-letter "
        "topics.",
    )
    run.add_argument(
        "--metrics-host",
        type=host,
        default="127.0.0.1",
        help="address to serve /metrics, the cockpit page and its API on "
        "(default 127.0.0.1; 0.0.0.0 for all of IPv4, :: for IPv6 too)",
    )
    run.add_argument(
        "--metrics-port",
        type=port,
        default=DEFAULT_METRICS_PORT,
        help=f"port to serve /metrics on; process i of a cluster adds i "
        f"(default {DEFAULT_METRICS_PORT})",
    )
    run.add_argument(
        "--web-config",
        type=path,
        action=Once,
        metavar="FILE",
        help="TLS and basic auth for every endpoint of the metrics port, in the "
        "Prometheus exporter-toolkit format (tls_server_config, basic_auth_users)",
    )
    sim = run.add_argument_group("embedded simulator (without --kafka)")
    sim.add_argument("--seed", type=non_negative, default=1, help="simulator seed (default 1)")
    sim.add_argument(
        "--backfill",
        type=duration,
        # 48 h: with 24 h, a start between 06:00 and 07:00 UTC replayed no order
        # whose delivery promise had passed, and the late-delivery panels stayed empty.
        default="48h",
        help="simulated history replayed at start (default 48h)",
    )
    sim.add_argument(
        "--scale", type=traffic, default=1.0, help="multiply the simulated traffic (default 1)"
    )
    kafka = run.add_argument_group("Kafka")
    kafka.add_argument(
        "--kafka", type=bootstrap, metavar="HOST:PORT", help="bootstrap servers to consume from"
    )
    kafka.add_argument(
        "--topic",
        action="append",
        help=f"input topic, repeatable; co-partitioned (default {DEFAULT_TOPIC})",
    )
    kafka.add_argument(
        "--kafka-config",
        type=path,
        action=Once,
        metavar="FILE",
        help="librdkafka properties (key=value lines) for every client, "
        "e.g. security.protocol, sasl.*, ssl.*",
    )
    kafka.add_argument(
        "--start",
        choices=("earliest", "latest"),
        help=f"where a first run starts reading (default {RUN_KAFKA_DEFAULTS['start']})",
    )
    kafka.add_argument(
        "--idle-timeout",
        type=duration,
        default="30s",
        help="a partition read to its end (of Kafka: with the broker reachable) and no "
        "event this long (rejects carry no event time) does not hold W back; also the "
        "simulator's (default 30s)",
    )
    kafka.add_argument(
        "--max-future",
        type=duration,
        default="1h",
        help="an event whose ts is further ahead of this host's clock is dead-lettered "
        "(invalid_event), as Kafka 4's brokers refuse such records; 0: no bound "
        "(default 1h)",
    )
    kafka.add_argument("--kpis-topic", help=f"default {RUN_KAFKA_DEFAULTS['kpis_topic']}")
    kafka.add_argument("--alerts-topic", help=f"default {RUN_KAFKA_DEFAULTS['alerts_topic']}")
    kafka.add_argument("--dlq-topic", help="dead letters (default <input topic>.dlq)")
    scale = run.add_argument_group("recovery and scale-out")
    scale.add_argument(
        "--recovery-dir",
        type=path,
        help="keep state snapshots here and resume from them after a crash",
    )
    scale.add_argument(
        "--snapshot-interval",
        type=interval,
        default="10s",
        help="time between snapshots (bytewax epochs; default 10s)",
    )
    scale.add_argument(
        "--workers", type=parallelism, default=1, help="worker threads per process (default 1)"
    )
    scale.add_argument(
        "--processes",
        type=parallelism,
        default=1,
        help="start a local cluster of this many processes (default 1)",
    )
    scale.add_argument(
        "--process-id",
        type=non_negative,
        help="this process's index in a cluster spanning machines",
    )
    scale.add_argument(
        "--addresses",
        type=addresses,
        metavar="HOST:PORT;...",
        help="every process of the cluster, in process-id order",
    )
    add_event_time_options(run, retention="30d")
    run.set_defaults(handler=command_run)

    replay = commands.add_parser(
        "replay",
        help="process a finite JSON Lines file in event time",
        description="Replay FILE (JSON Lines, `-` for stdin) in event time and exit 0.",
    )
    replay.add_argument("file", type=named, help="JSON Lines file of TPS events, or - for stdin")
    replay.add_argument("--metrics-file", type=path, help="write the final exposition here")
    replay.add_argument("--dlq", type=path, help="write rejected lines here (JSON Lines)")
    replay.add_argument("--alerts", type=path, help="write alert records here (JSON Lines)")
    replay.add_argument("--kpis", type=path, help="write KPI records here (JSON Lines)")
    replay.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_event_time_options(replay, retention="0")
    replay.set_defaults(handler=command_replay)

    simulate = commands.add_parser(
        "simulate",
        help="simulated events to a file or a Kafka topic",
        description="Simulated events of a realistic fulfilment network, deterministic "
        "for a seed, in arrival order: to a file (--out), or to Kafka keyed by "
        "entity id (--kafka), either --hours of history as fast as possible or "
        "live at about --rate events/s.",
    )
    target = simulate.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=named, help="JSON Lines file, or - for stdout")
    target.add_argument(
        "--kafka", type=bootstrap, metavar="HOST:PORT", help="bootstrap servers to produce to"
    )
    simulate.add_argument("--topic", help=f"topic (default {DEFAULT_TOPIC})")
    simulate.add_argument(
        "--kafka-config",
        type=path,
        action=Once,
        metavar="FILE",
        help="librdkafka properties for the producer",
    )
    amount = simulate.add_mutually_exclusive_group()
    amount.add_argument("--hours", type=period_hours, help="hours of event time (default 24)")
    amount.add_argument(
        "--rate",
        type=traffic,
        help="with --kafka: produce live, about this many events/s, until interrupted",
    )
    simulate.add_argument("--seed", type=non_negative, default=1, help="random seed (default 1)")
    simulate.add_argument(
        "--start",
        type=moment,
        help="start of the simulated period (default 2026-11-20T00:00:00Z; now with --rate)",
    )
    simulate.add_argument(
        "--scale", type=traffic, default=1.0, help="multiply every traffic rate (default 1)"
    )
    simulate.set_defaults(handler=command_simulate)
    add_import_command(commands)
    add_grafana_command(commands)
    return parser


def _readable(file: str) -> None:
    """Any path but a directory: a FIFO, /dev/stdin or `<(...)` is read as a file is
    (once, from its start, its size unknown)."""
    if file == "-":
        return
    if Path(file).is_dir():
        raise CliError(f"cannot read {file}: is a directory")
    if not Path(file).exists():
        raise CliError(f"cannot read {file}: no such file")


def command_replay(args: argparse.Namespace) -> int:
    """Replay a file, then write the final metrics."""
    from flows.replay import replay, summary
    from flows.sinks import OutputError
    from flows.sources import InputError

    _readable(args.file)
    writable(args.metrics_file, "metrics", replaced=True)
    for output, what in ((args.dlq, "dead letters"), (args.alerts, "alerts"), (args.kpis, "KPIs")):
        writable(output, what)
    distinct(
        {
            "--metrics-file": args.metrics_file,
            "--dlq": args.dlq,
            "--alerts": args.alerts,
            "--kpis": args.kpis,
        },
        {"the input": Path(args.file), "the --config file": args.config},
    )
    # Ctrl-C or SIGTERM: a flag the input checks between batches (an exception
    # raised in bytewax's loop was a panic and ~100 lines of tracebacks). A second
    # one ends the process at once: input from a pipe may be waiting for lines.
    stopped: list[int] = []
    stop = threading.Event()

    def request(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            name = signal.Signals(signum).name
            say(f"opscockpit: replay stopped at once by {name}: an output may end mid-record")
            os._exit(128 + signum)
        stopped.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request)
    try:
        board = replay(
            settings_from(args),
            args.file,
            metrics_file=args.metrics_file,
            dlq=args.dlq,
            alerts=args.alerts,
            kpis=args.kpis,
            progress=not args.quiet,
            stop=stop,
        )
    except (OutputError, InputError) as exc:
        raise CliError(str(exc)) from None
    if stopped:
        name = signal.Signals(stopped[0]).name
        say(
            f"opscockpit: replay stopped by {name}: its outputs hold what it processed, "
            "and no metrics file was written"
        )
        return 128 + stopped[0]
    if not args.quiet:
        say(summary(board, args.file, args.dlq))
    return 0


def _simulable(start: int, end: int) -> None:
    """Every simulated time must be one an event may hold (1970 to 9999): opening
    stock is dated up to AGED_LOT_DAYS before the start, promises run days past the
    end. A start in year 1 or 9999 ended in a traceback, one in 1969 in events
    that were all rejects."""
    from flows.simulator import AGED_LOT_DAYS

    earliest = (AGED_LOT_DAYS[1] + 1) * DAY_US
    latest = MAX_EPOCH_MS * 1000 - PROMISE_MARGIN_DAYS * DAY_US - (end - start)
    if not earliest <= start <= latest:
        raise CliError(
            f"--start must be from {format_time(earliest)} to {format_time(latest)}: the "
            f"events it makes go back {AGED_LOT_DAYS[1]} days and on {PROMISE_MARGIN_DAYS} "
            "days past the end, within 1970-9999",
            EXIT_USAGE,
        )


def command_simulate(args: argparse.Namespace) -> int:
    """Write a simulated period to a file or a topic."""
    from flows.live import RunError, produce_simulation, rate_scale
    from flows.simulator import Profile, write_lines

    if args.rate is not None and args.out is not None:
        raise CliError("--rate needs --kafka", EXIT_USAGE)
    _kafka_only(args)
    _named("--topic", args.topic)
    args.topic = args.topic or DEFAULT_TOPIC
    live = args.rate is not None
    start = (
        args.start
        if args.start is not None
        else (_now_minute() if live else parse_time("2026-11-20T00:00:00Z"))
    )
    end = None if live else start + round((args.hours or 24.0) * 3600 * US_PER_SECOND)
    _simulable(start, start if end is None else end)
    if args.kafka:
        if live:
            args.scale = rate_scale(args.seed, start, args.rate)
        try:
            count = produce_simulation(args, start, end)
        except RunError as exc:
            raise CliError(str(exc)) from None
        say(f"opscockpit: produced {count:,} events to {args.topic}")
        return 0
    assert end is not None
    profile = Profile().scaled(args.scale)
    if args.out == "-":
        write_lines(sys.stdout.buffer, args.seed, start, end, profile)
        return 0
    out = Path(args.out)
    writable(out, "events")
    try:
        with out.open("wb") as handle:
            count = write_lines(handle, args.seed, start, end, profile)
    except OSError as exc:
        raise CliError(f"cannot write events {out}: {exc.strerror or exc}") from None
    say(f"opscockpit: wrote {count:,} events to {out}")
    return 0


def _kafka_only(args: argparse.Namespace, names: Sequence[str] = ("topic", "kafka_config")) -> None:
    """Options of --kafka given without it are refused (`run --kpis-topic x` wrote
    nowhere, silently)."""
    for name in names:
        if getattr(args, name) is not None and not args.kafka:
            raise CliError(f"--{name.replace('_', '-')} needs --kafka", EXIT_USAGE)


def _named(option: str, topic: str | None) -> None:
    """An empty topic name is refused: `--topic "$UNSET"` wrote to the default topic."""
    if topic == "":
        raise CliError(f"{option} needs a topic name, not an empty string", EXIT_USAGE)


def _topics_apart(args: argparse.Namespace) -> None:
    """Every topic named, and no output topic that is also an input: the job would
    read its own records back (a dead letter of a dead letter, each escaping the
    last, without end: it filled a broker's memory)."""
    if not args.kafka:
        return
    inputs = args.topic or [DEFAULT_TOPIC]
    for topic in inputs:
        _named("--topic", topic)
    outputs = [("--kpis-topic", args.kpis_topic), ("--alerts-topic", args.alerts_topic)]
    if args.dlq_topic is None:
        outputs += [("the default --dlq-topic", f"{topic}.dlq") for topic in inputs]
    else:
        outputs.append(("--dlq-topic", args.dlq_topic))
    for option, topic in outputs:
        _named(option, topic)
        if topic in inputs:
            raise CliError(
                f"{option} {topic} is also an input topic: the job would read its own records back",
                EXIT_USAGE,
            )


def _now_minute() -> int:
    minute = 60 * US_PER_SECOND
    return time.time_ns() // 1000 // minute * minute


def _cluster_options(args: argparse.Namespace) -> None:
    """--processes starts a local cluster, whose children it gives --process-id and
    --addresses; a cluster across machines takes both, the id one of the addresses."""
    if args.addresses is None:
        if args.process_id is not None and args.processes == 1:
            raise CliError("--process-id needs --addresses", EXIT_USAGE)
        return
    if args.processes > 1 and CLUSTER_DIR not in os.environ:
        raise CliError(
            "--processes starts a cluster on this machine and --addresses names one across "
            "machines: give one of them",
            EXIT_USAGE,
        )
    count = len(args.addresses.split(";"))
    if args.process_id is None or not 0 <= args.process_id < count:
        raise CliError(
            f"--addresses names {count} processes: give each its --process-id, from 0 to "
            f"{count - 1}",
            EXIT_USAGE,
        )


def command_run(args: argparse.Namespace) -> int:
    """The main job, in this process or in a local cluster of --processes N."""
    _cluster_options(args)
    last = max(args.process_id or 0, args.processes - 1)
    if args.metrics_port + last > MAX_PORT:  # process i serves on --metrics-port + i
        raise CliError(
            f"--metrics-port {args.metrics_port} + process {last} is above {MAX_PORT}", EXIT_USAGE
        )
    _kafka_only(args, RUN_KAFKA_ONLY)
    for name, default in RUN_KAFKA_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    _topics_apart(args)
    settings = settings_from(  # bad values fail here
        args, idle_timeout=args.idle_timeout, max_future=args.max_future
    )
    web = web_config(args.web_config)
    if args.processes > 1 and args.process_id is None:
        return _run_local_cluster(args, settings.window)
    from flows.live import RunError, run

    try:
        run(settings, args, web)
    except RunError as exc:
        raise CliError(str(exc)) from None
    return 0


def web_config(path: Path | None) -> Any:
    """The checked --web-config file (plain HTTP without one)."""
    from flows.web.config import WebConfig, WebConfigError, load

    if path is None:
        return WebConfig()
    try:
        return load(path)
    except WebConfigError as exc:
        raise CliError(f"--web-config: {exc}") from None


def _run_local_cluster(args: argparse.Namespace, window: int) -> int:
    """The parent of a local cluster: its children run the job."""
    from flows.cluster import run_local_cluster

    if args.recovery_dir is not None:  # created and checked once, before the children
        from flows.live import RunError, check_resume, recovery_config, total_workers

        try:
            recovery_config(args.recovery_dir, total_workers(args))
            check_resume(args.recovery_dir, window)  # each child checks its outputs too
        except RunError as exc:
            raise CliError(str(exc)) from None
    status = run_local_cluster(args.argv, args.processes)
    if status < 0:
        raise CliError(f"a cluster process was killed by signal {-status}")
    if status:
        raise CliError(f"a cluster process exited with status {status}")
    return 0


def tune_gc() -> None:
    """Engine state is millions of small acyclic objects: scanning them over and over
    for cycles costs time and finds nothing, so collect rarely (events are untracked)."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="opscockpit: %(message)s")
    tune_gc()
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except CliError as exc:
        message = str(exc)
        say(message if message.startswith("opscockpit") else f"opscockpit: error: {message}")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE


def run() -> None:
    """The command: `main`, then an exit that skips the interpreter's teardown. A
    replay leaves tens of MB of small objects (orders, items, the id table) that
    the teardown freed one by one, ~5% of a 30 h replay's run; mypy exits so for
    the same reason. What the command wrote is flushed first, its files closed."""
    status = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left: as main() answers it
        status = EXIT_FAILURE
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
