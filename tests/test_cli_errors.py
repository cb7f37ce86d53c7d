"""Bad input to a command is one line on stderr and a non-zero exit (contract §6),
checked before any work starts, never a traceback."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest

from flows.cli import main
from flows.commands import EXIT_FAILURE, EXIT_USAGE, say
from tests.processes import opscockpit

EVENT = b'{"event_id":"a","type":"cart.added","ts":0,"session_id":"s","sku":"A","qty":1}\n'
COUNTED = 'cockpit_events_total{type="cart.added"} 1'


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], status: int) -> str:
    """The status of `opscockpit ARGV` and its single line of stderr."""
    assert main(argv) == status
    [line] = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--metrics-file", "metrics"),
        ("--dlq", "dead letters"),
        ("--alerts", "alerts"),
        ("--kpis", "KPIs"),
    ],
)
def test_a_replay_output_that_is_a_directory(tmp_path, capsys, option, what):
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    line = one_line_error(capsys, ["replay", str(events), option, str(tmp_path)], EXIT_FAILURE)
    assert line == f"opscockpit: error: cannot write {what} {tmp_path}: is a directory"
    assert not Path(f"{tmp_path}.tmp").exists(), "nothing written"


def test_a_simulate_output_that_is_a_directory(tmp_path, capsys):
    line = one_line_error(capsys, ["simulate", "--out", str(tmp_path)], EXIT_FAILURE)
    assert line == f"opscockpit: error: cannot write events {tmp_path}: is a directory"


@pytest.mark.parametrize(
    ("path", "problem"), [("", "is a directory"), ("absent.jsonl", "no such file")]
)
def test_a_replay_input_that_cannot_be_read(tmp_path, capsys, path, problem):
    file = tmp_path / path
    line = one_line_error(capsys, ["replay", str(file)], EXIT_FAILURE)
    assert line == f"opscockpit: error: cannot read {file}: {problem}"


PORT = "argument --metrics-port: must be an integer from 0 to 65535, not"
SCALE = "argument --scale: must be greater than 0 and at most 1000000, not"
RATE = "argument --rate: must be greater than 0 and at most 1000000, not"
HOURS = "argument --hours: must be greater than 0 and at most 876000, not"
BOOTSTRAP = "argument --kafka: not HOST:PORT[,HOST:PORT...]:"
ADDRESSES = "argument --addresses: not HOST:PORT[;HOST:PORT...]:"
FROM_0 = f"must be an integer from 0 to {2**63 - 1}, not"
FINER = "finer than a microsecond:"
BAD_VALUES = [
    ("run --metrics-port 70000", f"{PORT} 70000"),
    ("run --metrics-port=-1", f"{PORT} -1"),
    ("run --metrics-port http", "argument --metrics-port: not an integer: 'http'"),
    ("run --scale nan", f"{SCALE} nan"),
    ("run --scale 0", f"{SCALE} 0"),
    ("run --scale=-1", f"{SCALE} -1"),
    ("simulate --out x.jsonl --hours nan", f"{HOURS} nan"),
    ("simulate --out x.jsonl --hours inf", f"{HOURS} inf"),
    ("simulate --out x.jsonl --hours 1e300", f"{HOURS} 1e300"),
    ("simulate --out x.jsonl --scale inf", f"{SCALE} inf"),
    ("simulate --out x.jsonl --scale 1e18", f"{SCALE} 1e18"),
    ("simulate --out x.jsonl --scale lots", "argument --scale: not a number: 'lots'"),
    ("simulate --kafka h:1 --rate nan", f"{RATE} nan"),
    ("replay e.jsonl --lateness=-5s", "argument --lateness: must not be negative, not '-5s'"),
    ("replay e.jsonl --lateness -5", "argument --lateness: must not be negative, not '-5'"),
    ("run --backfill=-1h", "argument --backfill: must not be negative, not '-1h'"),
    ("replay e.jsonl --lateness -5s", "argument --lateness: must not be negative, not '-5s'"),
    ("run --backfill -1.5h", "argument --backfill: must not be negative, not '-1.5h'"),
    ("run --metrics-port -x", "argument --metrics-port: expected one argument"),
    ("run --kafka 127.0.0.1:99999", f"{BOOTSTRAP} '127.0.0.1:99999'"),
    ("run --kafka :9092", f"{BOOTSTRAP} ':9092'"),
    ("run --kafka http://h:9092", f"{BOOTSTRAP} 'http://h:9092'"),
    ("run --kafka h:1,,h:2", f"{BOOTSTRAP} 'h:1,,h:2'"),
    ("simulate --kafka h:0", f"{BOOTSTRAP} 'h:0'"),
    ("run --addresses x --process-id 0", f"{ADDRESSES} 'x'"),
    ("run --addresses localhost:99999 --process-id 0", f"{ADDRESSES} 'localhost:99999'"),
    ("run --addresses h:1;h:0 --process-id 0", f"{ADDRESSES} 'h:1;h:0'"),
    ("run --addresses h:1; --process-id 0", f"{ADDRESSES} 'h:1;'"),
    # Both processes would listen at one address: the cluster waited for ever.
    (
        "run --addresses h:1;h:2;h:1 --process-id 0",
        "argument --addresses: h:1 given more than once: 'h:1;h:2;h:1'",
    ),
    # Empty, it bound every address of the machine.
    (
        "run --metrics-host=",
        "argument --metrics-host: an empty host (0.0.0.0 serves every address)",
    ),
    # int() takes other scripts' digits, underscores and spaces; a person means digits.
    ("run --metrics-port ١٩١٨٧", "argument --metrics-port: not an integer: '١٩١٨٧'"),
    ("run --max-label-values 1_000", "argument --max-label-values: not an integer: '1_000'"),
    ("run --seed ٣", "argument --seed: not an integer: '٣'"),
    ("simulate --out x.jsonl --seed=-1", f"argument --seed: {FROM_0} -1"),
    ("run --process-id=-1", f"argument --process-id: {FROM_0} -1"),
    # Rounded to a microsecond, it passed as a window that divides 24 h.
    ("replay e.jsonl --window 900.0000001", f"argument --window: {FINER} '900.0000001'"),
    ("run --snapshot-interval 0", "argument --snapshot-interval: must be greater than 0, not '0'"),
    ("replay e.jsonl --lateness 1.0000005ms", f"argument --lateness: {FINER} '1.0000005ms'"),
]


@pytest.mark.parametrize(("command", "problem"), BAD_VALUES, ids=[c for c, _ in BAD_VALUES])
def test_a_bad_option_value_is_a_usage_error(capsys, command, problem):
    argv = command.split()
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line == f"opscockpit {argv[0]}: {problem} (see --help)", line


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", ""],
        ["replay", "e.jsonl", "--config", ""],
        ["replay", "e.jsonl", "--metrics-file", ""],
        ["replay", "e.jsonl", "--kpis", ""],
        ["simulate", "--out", ""],
        ["run", "--recovery-dir", ""],
        ["run", "--web-config", ""],
        ["import", "olist", "", "--out", "e.jsonl"],
        ["import", "olist", ".", "--out", ""],
        ["grafana", "generate", "--out", ""],
    ],
    ids=" ".join,
)
def test_an_empty_path_is_named_so(capsys, argv):
    """Path("") is the working directory: an empty path was refused as a directory."""
    line = one_line_error(capsys, argv, EXIT_USAGE)
    expected = r"opscockpit [a-z ]+: argument \S+: an empty path \(see --help\)"
    assert re.fullmatch(expected, line), line


@pytest.mark.parametrize(
    ("argv", "unknown"),
    [
        (["replay", "e.jsonl", "--lat", "5s"], "--lat 5s"),
        (["replay", "e.jsonl", "--metrics", "m.prom"], "--metrics m.prom"),
        (["run", "--metrics-p", "1"], "--metrics-p 1"),
    ],
)
def test_an_option_is_taken_only_by_its_whole_name(capsys, argv, unknown):
    """An abbreviation would change its meaning when a later release adds an option
    that shares its start."""
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line == f"opscockpit: unrecognized arguments: {unknown} (see --help)", line


@pytest.mark.parametrize(
    "command",
    [
        "replay x.jsonl --config a.toml --config b.toml",
        "run --config a.toml --config b.toml",
        "run --web-config a.yml --web-config b.yml",
        "run --kafka h:1 --kafka-config a.properties --kafka-config b.properties",
        "simulate --kafka h:1 --kafka-config a.properties --kafka-config b.properties",
    ],
)
def test_a_file_option_given_twice_is_a_usage_error(capsys, command):
    """The second file would silently replace the first, where two may seem to merge."""
    argv = command.split()
    option, first, second = argv[-4], argv[-3], argv[-1]
    line = one_line_error(capsys, argv, EXIT_USAGE)
    expected = f"{option} given twice ({first}, {second}): give one file (see --help)"
    assert line == f"opscockpit {argv[0]}: {expected}", line


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-02T00:00:00Z",
        "1969-12-31T00:00:00Z",
        "1971-02-05T23:59:59Z",
        "9999-12-30T00:00:00Z",
    ],
)
def test_a_simulated_period_beyond_the_times_an_event_may_hold_is_refused(tmp_path, capsys, start):
    """Year 1 or 9999 ended in a traceback (and an empty file); 1969 made events
    whose times were all rejected. Its opening stock goes back 400 days."""
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--out", str(out), "--hours", "1", "--start", start]
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line.startswith("opscockpit: error: --start must be from 1971-02-06T00:00:00Z to ")
    assert not out.exists()


def test_a_cluster_whose_ports_pass_65535_is_a_usage_error(capsys):
    argv = ["run", "--metrics-port", "65535", "--processes", "2"]
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line == "opscockpit: error: --metrics-port 65535 + process 1 is above 65535"


def test_a_negative_lateness_in_the_config_file(tmp_path, capsys):
    config = tmp_path / "cockpit.toml"
    config.write_text('lateness = "-5s"\n')
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    argv = ["replay", str(events), "--config", str(config)]
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line == f"opscockpit: error: config {config}: lateness: must not be negative, not '-5s'"


def test_a_replay_reads_a_fifo_stdin_and_process_substitution(tmp_path):
    """Paths that are not regular files but read as one: read once, size unknown."""
    metrics = tmp_path / "metrics.prom"
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(EVENT,), daemon=True)
    writer.start()
    opscockpit("replay", str(fifo), "--quiet", "--metrics-file", str(metrics))
    writer.join()
    assert COUNTED in metrics.read_text()
    metrics.unlink()
    opscockpit("replay", "/dev/stdin", "--quiet", "--metrics-file", str(metrics), input_bytes=EVENT)
    assert COUNTED in metrics.read_text()
    metrics.unlink()
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    replay = f"{sys.executable} -m flows.cli replay --quiet --metrics-file {metrics}"
    subprocess.run(["bash", "-c", f"{replay} <(cat {events})"], check=True, timeout=120)
    assert COUNTED in metrics.read_text()


@pytest.mark.parametrize(
    ("option", "what"),
    [("--metrics-file", "metrics"), ("--dlq", "dead letters"), ("--kpis", "KPIs")],
)
def test_a_replay_output_that_cannot_be_created_is_refused_before_the_run(
    tmp_path, capsys, option, what
):
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    line = one_line_error(capsys, ["replay", str(events), option, "/proc/opscockpit"], 1)
    assert (
        line
        == f"opscockpit: error: cannot write {what} /proc/opscockpit: No such file or directory"
    )


@pytest.fixture(scope="module")
def six_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six simulated hours: closed windows, KPI records, alerts and dead letters."""
    path = tmp_path_factory.mktemp("hours") / "events.jsonl"
    opscockpit("simulate", "--out", str(path), "--hours", "6", "--scale", "0.2")
    return path


def cart(event_id: str, ts: int) -> bytes:
    return EVENT.replace(b'"a"', f'"{event_id}"'.encode()).replace(b'"ts":0', b'"ts":%d' % ts)


def test_a_replay_ends_with_what_it_made_of_each_line(tmp_path, capsys):
    """Every line in one count; a run that finished silently left a user to open the
    metrics file to learn that every line had been dead-lettered."""
    hour = 3_600_000
    lines = [
        cart("a", hour),
        cart("a", hour),  # a duplicate
        cart("b", 3 * hour + 500),  # W's fraction is shown (it was cut off)
        cart("c", hour),  # 2 h behind the latest: late
        b"not json\n",
        b'{"type":"nope"}\n',
        b'{"type":"nope"}\n',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines))
    assert main(["replay", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"opscockpit: replayed 7 lines of {path}: 2 accepted, 3 dead-lettered (unknown_type 2, "
        "invalid_json 1), 1 late, 1 duplicate; event time reached 1970-01-01T03:00:00.500000Z; "
        "--dlq FILE keeps the dead letters"
    ]
    assert main(["replay", str(path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_replay_of_no_event_says_so(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("order_id,fc\nO1,FC1\n")
    assert main(["replay", str(path), "--dlq", str(tmp_path / "dlq.jsonl")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"opscockpit: replayed 2 lines of {path}: 0 accepted, 2 dead-lettered (invalid_json 2), "
        "0 late, 0 duplicates; no line was an event: is this a file of TPS events, a JSON "
        "object a line?"
    ]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_replay_stopped_by_a_signal_says_so_in_one_line(tmp_path, six_hours, signum):
    """Ctrl-C was a Rust panic and ~100 lines of tracebacks, SIGTERM a silent 143.
    Read from a FIFO, the replay has its handlers once the FIFO opens; the signal
    comes between batches, and the input ends where it is."""
    fifo, kpis, metrics = tmp_path / "events.fifo", tmp_path / "kpis.jsonl", tmp_path / "m.prom"
    os.mkfifo(fifo)
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "replay",
        str(fifo),
        "--quiet",
        "--kpis",
        str(kpis),
    ]
    process = subprocess.Popen(
        [*command, "--metrics-file", str(metrics)], stderr=subprocess.PIPE, text=True
    )
    try:
        # The replay stops reading where it is: the pipe may break.
        with suppress(BrokenPipeError), fifo.open("wb") as writer:
            writer.write(six_hours.read_bytes())
            writer.flush()
            process.send_signal(signum)
            writer.write(six_hours.read_bytes())  # lines for a read waiting on the pipe
        _, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert errors.splitlines() == [
        f"opscockpit: replay stopped by {signal.Signals(signum).name}: its outputs hold what "
        "it processed, and no metrics file was written"
    ]
    assert not metrics.exists()
    assert all(orjson.loads(line) for line in kpis.read_bytes().splitlines())


def test_a_replay_input_that_fails_to_read_is_one_line(capsys):
    """/proc/self/mem opens, and its first read fails (EIO): a panic and tracebacks."""
    line = one_line_error(capsys, ["replay", "/proc/self/mem", "--quiet"], EXIT_FAILURE)
    assert line == "opscockpit: error: cannot read /proc/self/mem: Input/output error"


def full_disk(tmp_path: Path) -> Path:
    """A device that refuses every write as a full disk does: a twin of /dev/full in
    tmp_path where one may be made (as root), so that a regression replacing it
    with a file harms only the twin."""
    if os.geteuid() != 0:
        return Path("/dev/full")
    twin = tmp_path / "full"
    os.mknod(twin, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    return twin


@pytest.mark.parametrize("option", ["--metrics-file", "--dlq", "--alerts", "--kpis"])
def test_a_full_disk_is_one_line_and_leaves_the_device_a_device(six_hours, tmp_path, option):
    """The replay ends with one line, not a panic inside bytewax, and a device is
    written to, not replaced."""
    full = full_disk(tmp_path)
    result = opscockpit("replay", str(six_hours), "--quiet", option, str(full), check=False)
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.decode() == (
        f"opscockpit: error: cannot write {full}: No space left on device\n"
    )
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_simulation_onto_a_full_disk_is_one_line(tmp_path, capsys):
    full = full_disk(tmp_path)
    line = one_line_error(capsys, ["simulate", "--out", str(full), "--hours", "1"], 1)
    assert line == f"opscockpit: error: cannot write events {full}: No space left on device"


@pytest.fixture
def shm_path() -> Iterator[Path]:
    """A directory on /dev/shm, a filesystem of its own (tmpfs)."""
    path = Path(tempfile.mkdtemp(dir="/dev/shm"))
    yield path
    shutil.rmtree(path)


def test_a_replay_writes_into_a_pipe_a_link_and_a_fifo(six_hours, tmp_path, shm_path):
    """Outputs that are not regular files stay what they are and get the records. A
    link's target gets its new file beside it: the link is on another filesystem
    (tmpfs), which a file written beside the link could not be renamed across."""
    piped = opscockpit("replay", str(six_hours), "--quiet", "--dlq", "/dev/stdout")
    assert piped.stdout.count(b'"reason":') > 0 and piped.stderr == b""
    target, link = tmp_path / "target.prom", shm_path / "link.prom"
    target.write_text("old")
    link.symlink_to(target)
    fifo = tmp_path / "metrics.fifo"
    os.mkfifo(fifo)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()), daemon=True)
    reader.start()
    for path in (link, fifo):
        opscockpit("replay", str(six_hours), "--quiet", "--metrics-file", str(path))
    reader.join(timeout=60)
    assert link.is_symlink() and "cockpit_events_total" in target.read_text()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and b"cockpit_events_total" in read[0]


def test_a_replays_records_go_into_named_pipes_each_opened_once(tmp_path):
    """Each output was opened twice (emptied first, then written): the reader of a
    named pipe saw its end at the first close, and the replay then waited for ever
    for a reader. A pipe nothing is written to ends when the replay does."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT + b"{not json\n")
    read: dict[str, bytes] = {}
    readers = []
    for option in ("--dlq", "--alerts"):
        fifo = tmp_path / f"{option[2:]}.fifo"
        os.mkfifo(fifo)
        readers.append(
            threading.Thread(target=lambda f=fifo, o=option: read.update({o: f.read_bytes()}))
        )
        readers[-1].start()
    opscockpit(
        "replay",
        str(events),
        "--quiet",
        "--dlq",
        str(tmp_path / "dlq.fifo"),
        "--alerts",
        str(tmp_path / "alerts.fifo"),
        timeout=60,
    )
    for reader in readers:
        reader.join(timeout=30)
    assert read["--alerts"] == b""
    assert [orjson.loads(line)["reason"] for line in read["--dlq"].splitlines()] == ["invalid_json"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("out.jsonl", "out.jsonl"), ("old.jsonl", "link.jsonl"), ("sub/../new.jsonl", "new.jsonl")],
    ids=["one path", "a link to it", "another spelling"],
)
def test_two_replay_outputs_into_one_file_are_refused(tmp_path, capsys, first, second):
    """They would write over each other's records. (Pipes and devices take both.)"""
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    (tmp_path / "sub").mkdir()
    (tmp_path / "old.jsonl").write_text("kept")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "old.jsonl")
    argv = ["replay", str(events), "--dlq", str(tmp_path / first), "--kpis", str(tmp_path / second)]
    line = one_line_error(capsys, argv, EXIT_FAILURE)
    assert line == f"opscockpit: error: --dlq and --kpis name the same file {tmp_path / second}"
    assert (tmp_path / "old.jsonl").read_text() == "kept"
    assert (
        main(["replay", str(events), "--quiet", "--kpis", "/dev/null", "--dlq", "/dev/null"]) == 0
    )


@pytest.mark.parametrize("option", ["--dlq", "--alerts", "--kpis", "--metrics-file"])
@pytest.mark.parametrize("spelling", ["itself", "a link", "a hard link"])
def test_a_replay_output_naming_its_input_or_config_is_refused(tmp_path, capsys, option, spelling):
    """The input (and the --config file) was emptied before it was read, or written
    over after, and the replay said nothing and exited 0."""
    events, config = tmp_path / "events.jsonl", tmp_path / "settings.toml"
    events.write_bytes(EVENT)
    config.write_text("lateness = '5s'\n")
    for read, what in ((events, "the input"), (config, "the --config file")):
        named = {"itself": read, "a link": tmp_path / "link", "a hard link": tmp_path / "hard"}
        if spelling == "a link":
            named[spelling].symlink_to(read)
        elif spelling == "a hard link":
            os.link(read, named[spelling])
        argv = ["replay", str(events), "--config", str(config), option, str(named[spelling])]
        line = one_line_error(capsys, argv, EXIT_FAILURE)
        path = named[spelling]
        assert line == f"opscockpit: error: {option} names {what}, {path}: it would be written over"
        if path != read:
            path.unlink()
    assert events.read_bytes() == EVENT and config.read_text() == "lateness = '5s'\n"


RECOVERY = Path(__file__).parent / "fixtures" / "release-3862025" / "recovery"
NOT_OURS = "part-0.sqlite3 is not an opscockpit recovery file"


def shard_snapshots(blob: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Damage: each shard snapshot in part-0 replaced by `blob` of what bytewax kept."""

    def damage(directory: Path) -> None:
        with closing(sqlite3.connect(directory / "part-0.sqlite3")) as db, db:
            query = "SELECT rowid, ser_change FROM snaps WHERE step_id = 'opscockpit.shards'"
            for rowid, kept in db.execute(query).fetchall():
                db.execute("UPDATE snaps SET ser_change = ? WHERE rowid = ?", (blob(kept), rowid))

    return damage


DAMAGED: dict[str, tuple[Callable[[Path], Any], str]] = {
    "not a database": (
        lambda d: (d / "part-0.sqlite3").write_bytes(b"hello"),
        f"{NOT_OURS} (file is not a database)",
    ),
    "empty database": (
        lambda d: (d / "part-0.sqlite3").write_bytes(b""),
        f"{NOT_OURS} (no such table: snaps)",
    ),
    "not a pickle": (
        shard_snapshots(lambda _kept: b"not a pickle"),
        f"{NOT_OURS} (invalid load key, 'n')",
    ),
    "truncated": (
        shard_snapshots(lambda kept: kept[: len(kept) // 2]),
        f"{NOT_OURS} (pickle data was truncated)",
    ),
    "snapshot truncated": (
        shard_snapshots(lambda kept: pickle.dumps(pickle.loads(kept)[:1000])),
        f"{NOT_OURS} (pickle data was truncated)",
    ),
    "snapshot of no bytes": (
        shard_snapshots(lambda _kept: pickle.dumps(12)),
        f"{NOT_OURS} (a bytes-like object is required, not 'int')",
    ),
    "bad workers marker": (
        lambda d: (d / "opscockpit-workers").write_text("two\n"),
        "opscockpit-workers is not an opscockpit recovery file (not a number of workers)",
    ),
}


@pytest.mark.parametrize("cluster", [False, True], ids=["one process", "local cluster"])
@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_recovery_dir_is_refused_in_one_line(tmp_path, case, cluster):
    """It stopped `run` with a traceback of sqlite3 or pickle."""
    directory = tmp_path / "recovery"
    shutil.copytree(RECOVERY, directory)
    processes = ["--processes", "2"] if cluster else []
    (directory / "opscockpit-workers").write_text(f"{1 + cluster}\n")
    damage, problem = DAMAGED[case]
    damage(directory)
    files = {path.name: path.read_bytes() for path in directory.iterdir()}
    result = opscockpit("run", "--recovery-dir", str(directory), *processes, check=False)
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.decode() == (
        f"opscockpit: error: cannot resume from {directory}: {problem}\n"
    )
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == files


@pytest.mark.parametrize("marker", ["kept", "lost"])
def test_a_recovery_dir_of_another_number_of_workers_is_refused_in_one_line(tmp_path, marker):
    """State is placed for a number of workers. A directory whose marker was lost
    resumed with any number, and the cluster counted some events twice; bytewax's
    part files (one per worker) still say how many it was created for."""
    directory = tmp_path / "recovery"
    shutil.copytree(RECOVERY, directory)
    if marker == "lost":
        (directory / "opscockpit-workers").unlink()
    files = {path.name: path.read_bytes() for path in directory.iterdir()}
    result = opscockpit("run", "--recovery-dir", str(directory), "--workers", "2", check=False)
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.decode() == (
        f"opscockpit: error: {directory} holds state of 1 worker, not 2: run with 1 worker "
        "in total, or start from an empty --recovery-dir\n"
    )
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == files


def test_a_recovery_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "recovery"
    path.write_text("notes\n")
    for processes in ("1", "2"):
        result = opscockpit(
            "run", "--recovery-dir", str(path), "--processes", processes, check=False
        )
        assert result.returncode == EXIT_FAILURE
        assert result.stderr.decode() == (
            f"opscockpit: error: cannot resume from {path}: it is not a directory\n"
        )
    assert path.read_text() == "notes\n"


TOPIC_CLASHES = [
    ("--topic a --dlq-topic a", "--dlq-topic a is also an input topic"),
    ("--topic a --topic a.dlq", "the default --dlq-topic a.dlq is also an input topic"),
    ("--kpis-topic tps.events", "--kpis-topic tps.events is also an input topic"),
    ("--topic b --alerts-topic b", "--alerts-topic b is also an input topic"),
    ("--topic ''", "--topic needs a topic name, not an empty string"),
    ("--kpis-topic ''", "--kpis-topic needs a topic name, not an empty string"),
    ("--dlq-topic ''", "--dlq-topic needs a topic name, not an empty string"),
]


@pytest.mark.parametrize(("options", "problem"), TOPIC_CLASHES, ids=[o for o, _ in TOPIC_CLASHES])
def test_an_output_topic_that_is_an_input_or_unnamed_is_refused(capsys, options, problem):
    """An output topic read back as input looped for ever (each dead letter escaping
    the last, until the broker ran out of memory); an empty name fell back to the
    default topic. Both are refused before any broker is asked (h:1 is no broker)."""
    argv = ["run", "--kafka", "h:1", *(o.strip("'") for o in options.split())]
    line = one_line_error(capsys, argv, EXIT_USAGE)
    assert line.startswith(f"opscockpit: error: {problem}"), line


def test_a_simulation_to_an_empty_topic_name_is_refused(capsys):
    line = one_line_error(capsys, ["simulate", "--kafka", "h:1", "--topic", ""], EXIT_USAGE)
    assert line == "opscockpit: error: --topic needs a topic name, not an empty string"


class Writes(StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_a_line_to_stderr_is_one_write(monkeypatch):
    """The processes of a local cluster share one stderr, and `print` writes a line's
    text and its newline apart: one process's startup line ran into another's, and
    the test that waits for each process's line saw one (it failed in CI)."""
    stream = Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    say("opscockpit: serving metrics on http://127.0.0.1:9108/metrics")
    assert stream.writes == ["opscockpit: serving metrics on http://127.0.0.1:9108/metrics\n"]
