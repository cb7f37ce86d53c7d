"""`opscockpit run --processes N`: N copies of the command as one bytewax cluster
on this machine.

Apart from `flows.live` so that the parent starts its children without first
importing bytewax and the dataflow (0.3 s here), which only the children use.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

# A local cluster's processes join in order through marker files in this directory.
CLUSTER_DIR = "OPSCOCKPIT_CLUSTER_DIR"
# The wall clock (µs) at its start, so that each process simulates the same history.
CLUSTER_STARTED = "OPSCOCKPIT_CLUSTER_STARTED"
JOIN_MARGIN_S = 0.1  # from a marker to its process listening (a few ms of bytewax set-up)
JOIN_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0  # for the other processes to stop once one has failed


def join_in_order(
    process: int, directory: str | None, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Connect to a local cluster only after the processes before this one listen.

    Process i connects to every process j < i and, refused, retries only after a
    whole second (timely's fixed back-off), which delayed about every other start.
    Each process leaves a marker just before it starts listening, and waits for
    the markers of those before it (at most JOIN_TIMEOUT_S: then bytewax retries).
    """
    if directory is None:
        return
    markers = [Path(directory, str(earlier)) for earlier in range(process)]
    waited = 0.0
    while not all(marker.exists() for marker in markers) and waited < JOIN_TIMEOUT_S:
        sleep(0.01)
        waited += 0.01
    if markers:
        sleep(JOIN_MARGIN_S)
    Path(directory, str(process)).touch()


def cluster_started() -> int | None:
    """When the local cluster of this process started (None: not one of a local
    cluster's processes)."""
    value = os.environ.get(CLUSTER_STARTED, "")
    return int(value) if value.isdigit() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_local_cluster(argv: Sequence[str], processes: int) -> int:
    """Run `opscockpit ARGV` as processes 0..N-1 of one cluster; the first non-zero
    exit status (a negative one for a signal), else 0.

    Signals to this process go to every child, so Ctrl-C stops the cluster.
    """
    addresses = ";".join(f"127.0.0.1:{_free_port()}" for _ in range(processes))
    command = [sys.executable, "-m", "flows.cli", *argv]
    with tempfile.TemporaryDirectory(prefix="opscockpit-cluster-") as markers:
        env = {**os.environ, CLUSTER_DIR: markers, CLUSTER_STARTED: str(time.time_ns() // 1000)}
        parent = os.getpid()
        children = [
            subprocess.Popen(
                [*command, "--process-id", str(i), "--addresses", addresses],
                env=env,
                preexec_fn=lambda: die_with(parent),  # noqa: PLW1509 (no threads yet)
            )
            for i in range(processes)
        ]

        def forward(signum: int, _frame: FrameType | None) -> None:
            for child in children:
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return supervise(children)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent: int) -> None:
    """In a child, before it runs: killed as its parent dies, even by SIGKILL, which
    forwards no signal. Orphans would go on consuming and writing snapshots to the
    recovery directory, and hold the ports a restart needs. Linux only (prctl)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def supervise(children: Sequence[subprocess.Popen[bytes]], poll_s: float = 0.1) -> int:
    """Wait for every child. Once one fails, stop the others: the cluster cannot go on
    without it, and timely would retry connecting to it forever (deaf to SIGTERM
    while it does, hence SIGKILL after STOP_GRACE_S). A death by a signal is the
    status returned before the failures it caused in the others."""
    while True:
        statuses = [child.poll() for child in children]
        failed = min(filter(None, statuses), key=lambda status: status > 0, default=0)
        if failed:
            _stop(children)
            return failed
        if None not in statuses:
            return 0
        time.sleep(poll_s)


def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
