"""`opscockpit run` on the embedded default: a live cockpit within 30 seconds."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.cluster import JOIN_MARGIN_S, JOIN_TIMEOUT_S, join_in_order
from flows.metrics import METRICS
from tests.kafka_broker import free_port
from tests.processes import cockpit, events_read, metrics_text, opscockpit, wait_for
from tests.reference import Samples, parse_exposition

CONTRACT = [m for m in METRICS if m.contract]


def sample_names(metric_name: str, kind: str) -> str:
    return f"{metric_name}_count" if kind == "histogram" else metric_name


def test_every_contract_metric_is_live_within_30_seconds_and_counters_move():
    started = time.monotonic()
    with cockpit(ready_timeout=30) as running:

        def all_present() -> bool:
            samples = running.samples()
            return all(samples.get(sample_names(m.name, m.kind)) for m in CONTRACT)

        wait_for(all_present, 30 - (time.monotonic() - started), "every metric of contract §4")
        assert time.monotonic() - started < 30
        first = sum(running.samples()["cockpit_events_total"].values())
        wait_for(
            lambda: sum(running.samples()["cockpit_events_total"].values()) > first,
            20,
            "live events after the backfill",
            progress=running.progress,
        )
        exposition = running.text()
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_sigterm_stops_cleanly():
    with cockpit("--backfill", "1h") as running:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
        stderr = running.process.stderr.read().decode() if running.process.stderr else ""
    assert "stopped" in stderr and "Traceback" not in stderr


# Buffered, as a user's shell has it (this environment may set PYTHONUNBUFFERED).
BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
SIMULATE = (sys.executable, "-m", "flows.cli", "simulate", "--out")


def test_a_command_writes_all_its_output_before_it_exits(tmp_path):
    """The command skips the interpreter's teardown (`flows.cli.run`): what it wrote
    to stdout must be flushed first."""
    written = tmp_path / "events.jsonl"
    opscockpit("simulate", "--out", str(written), "--hours", "2")
    piped = subprocess.run(
        [*SIMULATE, "-", "--hours", "2"], capture_output=True, env=BUFFERED, check=True
    )
    assert piped.stdout == written.read_bytes() and piped.stdout.count(b"\n") > 10_000


def test_a_reader_that_leaves_early_ends_the_command_with_status_1_and_no_traceback():
    command = [*SIMULATE, "-", "--hours", "24"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=BUFFERED
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"{")
        process.stdout.close()
        errors = process.stderr.read()
        assert process.wait(timeout=60) == 1
    assert errors == b""


def test_a_busy_metrics_port_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = opscockpit("run", "--metrics-port", str(port), check=False, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot serve /metrics" in lines[0], lines


def test_a_local_cluster_whose_process_fails_stops_with_its_error():
    """Process 0 cannot serve /metrics; process 1 would wait for it forever."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = opscockpit(
            "run", "--processes", "2", "--metrics-port", str(port), check=False, timeout=60
        )
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "cannot serve /metrics" in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "opscockpit: error: a cluster process exited with status 1"
    )


def test_a_local_cluster_whose_process_is_killed_says_so_in_one_line_each():
    """The survivor's bytewax panicked with a traceback, and the cluster reported the
    survivor's status 1, not the kill that caused it."""
    with cockpit("--processes", "2", "--scale", "0.05", "--backfill", "1h") as running:
        wait_for(lambda: len(children(running.process.pid)) == 2, 30, "both processes")
        wait_for(lambda: events_read(running.samples()) > 0, 60, "events")
        os.kill(children(running.process.pid)[1], signal.SIGKILL)
        assert running.process.wait(timeout=60) == 1
        assert running.process.stderr is not None
        said = running.process.stderr.read().decode()
    assert "Traceback" not in said, said
    assert said.splitlines()[-1] == "opscockpit: error: a cluster process was killed by signal 9"


@pytest.mark.parametrize(
    ("option", "signum"),
    [
        ("--processes", signal.SIGINT),
        ("--processes", signal.SIGTERM),
        ("--workers", signal.SIGINT),
    ],
)
def test_a_run_of_several_workers_stops_cleanly_on_a_signal(option, signum):
    """The one simulator partition is read by one worker: a worker reading none never
    saw the stop request, and the run, the cluster's processes with it, went on."""
    port = free_port(2)
    with cockpit(option, "2", "--scale", "0.05", port=port) as running:
        pids = children(running.process.pid)
        assert len(pids) == (2 if option == "--processes" else 0)
        if pids:  # a signal before process 1 serves interrupts its start, not its run
            wait_for(lambda: serving(port + 1), 60, "process 1")
        running.process.send_signal(signum)
        assert running.process.wait(timeout=60) == 0
        stderr = running.process.stderr.read().decode() if running.process.stderr else ""
    assert stderr.count("opscockpit: stopped") == max(len(pids), 1), stderr
    assert "Traceback" not in stderr and "panicked" not in stderr, stderr
    wait_for(lambda: not any(map(running_process, pids)), 30, "the children's exits")


def serving(port: int) -> bool:
    try:
        metrics_text(port)
    except OSError:
        return False
    return True


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_processes_of_a_local_cluster_die_with_it_even_by_sigkill():
    """SIGKILL forwards nothing: orphans went on consuming, writing snapshots to the
    recovery directory and holding the ports a restart needs."""
    with cockpit("--processes", "2", "--scale", "0.05") as running:
        pids = children(running.process.pid)
        assert len(pids) == 2
        running.process.kill()
        running.process.wait()
        wait_for(lambda: not any(map(running_process, pids)), 30, "the children's exits")


@pytest.mark.parametrize("scale", [["--processes", "2"], ["--processes", "2", "--workers", "2"]])
def test_each_process_of_a_cluster_on_the_simulator_serves_its_share(scale):
    """The simulator is a partition per worker, so each process of a cluster reads
    one, holds its shard and serves its figures and ready state (port 0 once
    showed none); every partition tells every shard its progress, so both keep W.
    The window stage is on process 0: its port serves what closed windows make
    (it was on process 1 of two, by its key's hash)."""
    port = free_port(2)
    with cockpit(*scale, "--scale", "0.05", "--backfill", "3h", port=port) as running:
        shares: list[Samples] = []

        def both_serve() -> bool:
            try:
                shares[:] = [parse_exposition(metrics_text(port + i)) for i in range(2)]
            except OSError:  # the second process may not serve yet
                return False
            return all(
                events_read(share) > 0
                and sum(share.get("cockpit_orders_in_stage", {}).values()) > 0
                and share.get("cockpit_watermark_timestamp_seconds", {}).get((), 0) > 0
                for share in shares
            ) and bool(shares[0].get("cockpit_sell_through_ratio"))

        wait_for(both_serve, 90, "figures on both ports", progress=running.progress)
        assert "cockpit_sell_through_ratio" not in shares[1]
        for i in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{port + i}/-/ready", timeout=5) as ready:
                assert ready.status == 200


@pytest.mark.parametrize("process_id", ["0", "1"])
def test_a_cluster_process_whose_peer_never_answers_stops_on_sigterm(process_id):
    """While timely connects a cluster it runs no Python, where the signal handlers
    run: a process whose peer never came was deaf to SIGTERM and Ctrl-C for ever."""
    metrics = free_port(4)  # process i serves on metrics + i; the peers listen on + 2, + 3
    addresses = f"127.0.0.1:{metrics + 2};127.0.0.1:{metrics + 3}"

    def serving(port: int) -> None:  # /metrics answers 503 until the job is ready
        url = f"http://127.0.0.1:{port + int(process_id)}/-/healthy"
        urllib.request.urlopen(url, timeout=5).close()

    argv = ("--process-id", process_id, "--addresses", addresses)
    with cockpit(*argv, port=metrics, probe=serving) as running:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
        assert running.process.stderr is not None
        said = running.process.stderr.read().decode().splitlines()
        assert said[-1] == "opscockpit: stopped before the job started"


def running_process(pid: int) -> bool:
    """Neither gone nor a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


NO_KAFKA_CONFIG = "cannot read Kafka config /nope/x: No such file or directory"
ADDRESSES_NEED_IDS = "--addresses names 2 processes: give each its --process-id, from 0 to 1"


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["run", "--lateness", "soon"], 2, "--lateness: not a duration: 'soon'"),
        (["run", "--workers", "0"], 2, "--workers: must be an integer from 1"),
        (["run", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["run", "--kafka-config", "/nope/x"], 2, "--kafka-config needs --kafka"),
        (["run", "--kpis-topic", "k"], 2, "--kpis-topic needs --kafka"),
        (["run", "--start", "latest"], 2, "--start needs --kafka"),
        (["run", "--kafka", "127.0.0.1:9", "--kafka-config", "/nope/x"], 1, NO_KAFKA_CONFIG),
        (["run", "--process-id", "1"], 2, "--process-id needs --addresses"),
        (["run", "--addresses", "h:1;h:2"], 2, ADDRESSES_NEED_IDS),
        (["run", "--process-id", "2", "--addresses", "h:1;h:2"], 2, ADDRESSES_NEED_IDS),
        (["run", "--process-id", "-1", "--addresses", "h:1;h:2"], 2, "--process-id: must be"),
        (
            ["run", "--processes", "2", "--process-id", "0", "--addresses", "h:1;h:2"],
            2,
            "--processes starts a cluster on this machine and --addresses names one across",
        ),
        (["run", "--recovery-dir", ""], 2, "--recovery-dir: an empty path"),
        (["run", "--processes", "2000"], 2, "--processes: must be an integer from 1 to 1024"),
        (["simulate", "--kafka", "127.0.0.1:9", "--kafka-config", "/nope/x"], 1, NO_KAFKA_CONFIG),
        (["simulate", "--out", "-", "--topic", "t"], 2, "--topic needs --kafka"),
        (
            ["simulate", "--out", "-", "--kafka-config", "/nope/x"],
            2,
            "--kafka-config needs --kafka",
        ),
    ],
)
def test_bad_options_are_one_line_errors(args, status, says):
    """One line naming the option or file, a usage error's status 2 (argparse's), and
    1 for a problem found in what an option names."""
    result = opscockpit(*args, check=False, timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == status, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("opscockpit") and says in stderr, stderr


class FakeSleep:
    """Records sleeps; after `create_after` of them, leaves the marker `create`."""

    def __init__(self, directory, create: str | None = None, create_after: int = 0) -> None:
        self.directory, self.create, self.create_after = directory, create, create_after
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.create is not None and len(self.calls) == self.create_after:
            (self.directory / self.create).touch()


def test_local_cluster_processes_join_in_order(tmp_path):
    # Outside a local cluster: nothing to wait for, nothing written.
    outside = FakeSleep(tmp_path)
    join_in_order(1, None, outside)
    assert outside.calls == [] and list(tmp_path.iterdir()) == []
    # Process 0 connects to nobody: it leaves its marker at once.
    first = FakeSleep(tmp_path)
    join_in_order(0, str(tmp_path), first)
    assert first.calls == [] and (tmp_path / "0").exists()
    # Process 2 waits for the marker of process 1 too, then for 0 to be listening.
    third = FakeSleep(tmp_path, create="1", create_after=3)
    join_in_order(2, str(tmp_path), third)
    assert third.calls == [0.01, 0.01, 0.01, JOIN_MARGIN_S]
    assert (tmp_path / "2").exists()


def test_a_process_whose_elders_never_mark_joins_after_the_timeout(tmp_path):
    waiting = FakeSleep(tmp_path)
    join_in_order(1, str(tmp_path), waiting)
    assert sum(waiting.calls[:-1]) == pytest.approx(JOIN_TIMEOUT_S)
    assert waiting.calls[-1] == JOIN_MARGIN_S and (tmp_path / "1").exists()
