"""Run `opscockpit` as a real process in tests, scrape it, and wait for conditions."""

from __future__ import annotations

import os
import reprlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

from tests.kafka_broker import free_port
from tests.reference import Samples, parse_exposition

T = TypeVar("T")
# A wait that keeps seeing progress still ends after this many times its timeout.
HARD_CAP = 10


def opscockpit(
    *args: str, timeout: float = 120, check: bool = True, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run one opscockpit command to completion."""
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        timeout=timeout,
        input=input_bytes,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"opscockpit {' '.join(args)} failed: {result.stderr.decode()}")
    return result


def stderr_lines(
    process: subprocess.Popen[bytes], needle: str, count: int, timeout: float = 120
) -> list[str]:
    """The first `count` lines of a process's stderr that contain `needle`; fails with
    all it wrote if they do not come within `timeout` s or it exits first (a plain
    loop over stderr waits for ever on a process that hangs)."""
    assert process.stderr is not None
    written: list[str] = []
    found: list[str] = []
    done = threading.Event()

    def read(stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace")
            written.append(line)
            if needle in line:
                found.append(line)
            if len(found) >= count:
                break
        done.set()

    threading.Thread(target=read, args=(process.stderr,), daemon=True).start()
    if not done.wait(timeout) or len(found) < count:
        raise AssertionError(
            f"{len(found)} of {count} lines with {needle!r} in {timeout:.0f} s"
            f" (exit status {process.poll()}); stderr:\n{''.join(written)}"
        )
    return found[:count]


def metrics_text(port: int) -> str:
    """The /metrics page served on a loopback port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def events_read(samples: Samples) -> float:
    """Every event a run has read: counted, rejected, duplicate or late."""
    kinds = ("", "_rejected", "_duplicate", "_late")
    return sum(sum(samples.get(f"cockpit_events{kind}_total", {}).values()) for kind in kinds)


def progress_of(samples: Samples) -> tuple[object, ...]:
    """How far a run has got, for `wait_for(progress=...)`: the events it has read,
    its watermark and its consumer lag (which moves as a backlog is read)."""
    return (
        events_read(samples),
        samples.get("cockpit_watermark_timestamp_seconds", {}),
        samples.get("cockpit_kafka_consumer_lag", {}),
    )


def progress_at(port: int) -> tuple[object, ...]:
    """`progress_of` a scrape of the /metrics on a loopback port."""
    return progress_of(parse_exposition(metrics_text(port)))


class Cockpit:
    """A running `opscockpit run` with its metrics port."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port

    def text(self) -> str:
        return metrics_text(self.port)

    def samples(self) -> Samples:
        return parse_exposition(self.text())

    def alive(self) -> bool:
        return self.process.poll() is None

    def progress(self) -> tuple[object, ...]:
        return progress_at(self.port)


@contextmanager
def cockpit(
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
    probe: Callable[[int], object] = metrics_text,
    stdout: int = subprocess.DEVNULL,
) -> Iterator[Cockpit]:
    """Start `opscockpit run ARGS` serving metrics on a free port; stop it with SIGTERM.
    It has started once `probe(port)` answers (by default a plain /metrics scrape).
    Its stderr is a pipe; its stdout one only if asked (`stdout=subprocess.PIPE`)."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "--metrics-port", str(port), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    running = Cockpit(process, port)
    try:
        wait_for(lambda: _scrapeable(running, probe), ready_timeout, "metrics endpoint")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _scrapeable(running: Cockpit, probe: Callable[[int], object]) -> bool:
    if not running.alive():
        stderr = running.process.stderr.read().decode() if running.process.stderr else ""
        raise AssertionError(f"opscockpit exited with {running.process.returncode}: {stderr}")
    try:
        probe(running.port)
    except OSError:
        return False
    return True


class WaitFailed(AssertionError):
    """A `wait_for` that ran out of time (not an assertion of its condition)."""


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    every: float = 0.25,
    progress: Callable[[], object] | None = None,
) -> T:
    """Poll until `condition()` is truthy and return its value; fail after `timeout` s.

    With `progress` (a snapshot of how far the system under test has got: events
    counted, offsets read, a file's size), `timeout` counts only the seconds since the
    snapshot last changed: a slower or busier machine does the same work later, and only
    a stall is a failure. So that a livelock cannot hang the run, a wait still fails
    after HARD_CAP times `timeout` in all."""
    started = time.monotonic()
    last = progress() if progress is not None else None
    moved = started
    while True:
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if progress is None:
            if now - started > timeout:
                raise WaitFailed(f"timed out after {_seconds(timeout)} waiting for {what}")
        else:
            seen = progress()
            if seen != last:
                last, moved = seen, now
            elif now - moved > timeout:
                raise WaitFailed(
                    f"no progress for {_seconds(timeout)} waiting for {what} "
                    f"(last progress: {reprlib.repr(last)})"
                )
            if now - started > HARD_CAP * timeout:
                raise WaitFailed(
                    f"hard cap of {_seconds(HARD_CAP * timeout)} reached waiting for {what}, "
                    f"though it progressed (last progress: {reprlib.repr(last)})"
                )
        time.sleep(every)


def _seconds(duration: float) -> str:
    return f"{round(duration, 2):g}s"
