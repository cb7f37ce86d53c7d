"""Run `opscockpit` as a real process in tests, scrape it, and wait for conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tests.kafka_broker import free_port
from tests.reference import Samples, parse_exposition

T = TypeVar("T")


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


def metrics_text(port: int) -> str:
    """The /metrics page served on a loopback port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


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


@contextmanager
def cockpit(
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
    probe: Callable[[int], object] = metrics_text,
) -> Iterator[Cockpit]:
    """Start `opscockpit run ARGS` serving metrics on a free port; stop it with SIGTERM.
    It has started once `probe(port)` answers (by default a plain /metrics scrape)."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "--metrics-port", str(port), *args],
        stdout=subprocess.DEVNULL,
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


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
