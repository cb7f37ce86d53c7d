"""Helpers shared by the benchmarks: figures, timing, child processes, RSS, /metrics."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.bench.child import PEAK_MARK

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
DATA_DIR = BENCH_DIR / "data"
KIB = 1024
MIB = 1024 * 1024


class BenchFailure(Exception):
    """The system under test misbehaved (wrong counts, a crash): the benchmark fails."""


def log(message: str) -> None:
    """Progress on stderr, so that stdout ends with the table alone."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- figures and their targets


@dataclass
class Figure:
    """One line of the results table."""

    bench: str
    name: str
    shown: str  # the value as printed
    target: str = ""  # "" when the figure is informational
    status: str = "info"  # "met", "not met", or "info"
    distance: str = ""  # how far from the target, either way

    def row(self) -> list[str]:
        verdict = self.status if not self.distance else f"{self.status} ({self.distance})"
        return [self.bench, self.name, self.shown, self.target or "-", verdict]


def at_least(value: float, target: float, unit: Callable[[float], str]) -> tuple[str, str]:
    """(status, distance) of a figure that should reach `target`."""
    if value >= target:
        return "met", f"+{unit(value - target)}, {value / target:.2f}x the target"
    return "not met", f"{unit(target - value)} short, needs {target / max(value, 1e-12):.2f}x"


def at_most(value: float, target: float, unit: Callable[[float], str]) -> tuple[str, str]:
    """(status, distance) of a figure that should stay below `target`."""
    if value < target:
        return "met", f"{unit(target - value)} under"
    return "not met", f"{unit(value - target)} over, {value / target:.2f}x the limit"


def rate(value: float) -> str:
    return f"{value:,.0f} ev/s"


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def points(value: float) -> str:
    return f"{100 * value:.1f} points"


def mib(value: float) -> str:
    return f"{value / MIB:,.1f} MiB"


def nbytes(value: float) -> str:
    return f"{value:,.0f} B"


def ms(value: float) -> str:
    return f"{1000 * value:,.1f} ms"


def factor(value: float) -> str:
    return f"{value:.2f}x"


@dataclass
class Spread:
    """Several measurements of one quantity: best, median, worst."""

    values: list[float]
    higher_is_better: bool = True

    @property
    def best(self) -> float:
        return max(self.values) if self.higher_is_better else min(self.values)

    @property
    def worst(self) -> float:
        return min(self.values) if self.higher_is_better else max(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> float:
        """(worst - best) relative to best, as a positive share."""
        return abs(self.best - self.worst) / self.best if self.best else 0.0

    def describe(self, unit: Callable[[float], str]) -> str:
        if len(self.values) == 1:
            return f"{unit(self.best)} (1 run)"
        return (
            f"{unit(self.best)} best of {len(self.values)}; median {unit(self.median)}, "
            f"worst {unit(self.worst)} (spread {pct(self.spread())})"
        )

    def raw(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "best": self.best,
            "median": self.median,
            "worst": self.worst,
        }


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[min(int(rank), len(ordered)) - 1]


# --- the machine


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        # Its build moves the floor: Debian's (PGO, LTO) read 1.25x as fast as pyenv's.
        "python_executable": os.path.realpath(sys.executable),
        "bytewax": version("bytewax"),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- child processes


def opscockpit_command(*args: str) -> list[str]:
    """The `opscockpit` CLI of this checkout, as a child process command."""
    return [sys.executable, "-m", "flows.cli", *args]


def opscockpit_measured(*args: str, entries_every: float | None = None) -> list[str]:
    """`opscockpit ARGS` (the same main()) reporting its peak RSS at exit, and with
    `entries_every` a replay's state entries periodically (see tests/bench/child.py)."""
    extra = ["--entries", str(entries_every)] if entries_every else []
    return [sys.executable, "-m", "tests.bench.child", *extra, *args]


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and its descendants, in bytes (0 once gone)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants,
    including descendants that have exited and been waited for."""
    total = 0.0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for member in members:
        try:
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def machine_busy_cpu() -> float:
    """CPU seconds all processes of the machine have used (steal excluded)."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


def machine_steal_cpu() -> float:
    """CPU seconds the hypervisor gave to other guests while this one wanted to run."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


class OthersCpu:
    """How much CPU processes outside this benchmark used: the noise on the figures."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.started = time.monotonic()
        self.busy = machine_busy_cpu()
        self.steal = machine_steal_cpu()
        self.ours = tree_cpu(self.me)

    def stolen(self) -> float:
        """Average number of cores the hypervisor took away (steal time) since construction."""
        wall = time.monotonic() - self.started
        return (machine_steal_cpu() - self.steal) / max(wall, 1e-9)

    def cores(self) -> float:
        """Average number of cores others kept busy since construction."""
        wall = time.monotonic() - self.started
        others = (machine_busy_cpu() - self.busy) - (tree_cpu(self.me) - self.ours)
        return max(others, 0.0) / max(wall, 1e-9)


class RssSampler:
    """Samples the RSS of a process tree every `every` seconds in a thread."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        self.process = psutil.Process(pid)
        self.every = every
        self.started = time.monotonic()
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.process)
            if rss:
                self.samples.append((time.monotonic() - self.started, rss))
            self._stop.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


@dataclass
class Finished:
    """A child process that ran to completion."""

    returncode: int
    wall_s: float
    peak_rss: int  # bytes: VmHWM reported by the child, else the largest RSS sample
    stderr: str
    samples: list[tuple[float, int]] = field(default_factory=list)


def run_to_completion(
    command: list[str],
    *,
    sample_every: float | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    timeout_s: float = 3600,
) -> Finished:
    """Run a command; measure its wall time and peak RSS, maybe sample RSS."""
    started = time.monotonic()
    child = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []

    def read_stderr() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            if on_stderr_line is not None:
                on_stderr_line(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    sampler = RssSampler(child.pid, sample_every) if sample_every else None
    timer = threading.Timer(timeout_s, child.kill)
    timer.start()
    try:
        child.wait()
    finally:
        timer.cancel()
    wall = time.monotonic() - started
    samples = sampler.stop() if sampler else []
    reader.join(timeout=10)
    peak = max((rss for _t, rss in samples), default=0)
    for line in lines:
        if line.startswith(PEAK_MARK):
            peak = int(line.split()[1]) * KIB
    text = "".join(line for line in lines if not line.startswith(PEAK_MARK))
    return Finished(child.returncode, wall, peak, text, samples)


class Service:
    """A long-running child (a cockpit, a load generator) that is always stopped."""

    def __init__(self, command: list[str], *, stdout: int | None = subprocess.DEVNULL) -> None:
        self.command = command
        self.child = subprocess.Popen(
            command, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True
        )
        self.process = psutil.Process(self.child.pid)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.child.stderr is not None
        for line in self.child.stderr:
            self.stderr.append(line)

    def alive(self) -> bool:
        return self.child.poll() is None

    def check_alive(self, what: str) -> None:
        if not self.alive():
            time.sleep(0.2)  # let the reader collect the last words
            tail = "".join(self.stderr[-20:])
            raise BenchFailure(f"{what} exited with {self.child.returncode}:\n{tail}")

    def stop(self, timeout_s: float = 30) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                for member in self.process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        member.kill()
                self.child.kill()
                self.child.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- /metrics

_COUNTED = re.compile(
    r"^cockpit_events_(?:total|duplicate_total|late_total|rejected_total)\{[^}]*\} (\S+)$",
    re.MULTILINE,
)


def events_seen(text: str) -> int:
    """Events accepted + duplicate + late + rejected in an exposition: every line read."""
    return round(sum(float(value) for value in _COUNTED.findall(text)))


def sample_value(text: str, name: str) -> float:
    """The value of a series without labels (0 when absent)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def scrape(port: int, timeout_s: float = 5.0) -> str | None:
    """The /metrics page, or None while it is not served (starting, restoring)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=timeout_s
        ) as response:
            return str(response.read().decode())
    except OSError:
        return None


def scrape_all(ports: Iterable[int]) -> list[str] | None:
    """Every process's page, or None if one is not served yet."""
    pages = []
    for port in ports:
        page = scrape(port)
        if page is None:
            return None
        pages.append(page)
    return pages


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, every: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every)


def board_events_seen(totals: dict[str, dict[Any, Any]]) -> int:
    """The same sum as `events_seen`, from a board's totals."""
    names = (
        "cockpit_events_total",
        "cockpit_events_duplicate_total",
        "cockpit_events_late_total",
        "cockpit_events_rejected_total",
    )
    return round(sum(sum(totals.get(name, {}).values()) for name in names))


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count
