"""Bytewax sources that decode at the edge and emit whole batches.

Every source emits `(shard, message)` pairs, one per batch, never one per
event: `("events", shard, source partition, [Event | Reject, ...])` or
`("mark", shard, source partition, largest ts, idle)`. Decoding happens here, on the
worker that reads the partition.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from io import IOBase
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from bytewax.inputs import AbortExecution, FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import ffwd_iter

from flows.decode import Event, Reject, decode_all
from flows.timeutil import US_PER_SECOND

Message = tuple[str, tuple[Any, ...]]
REPLAY_SHARD = "0"


def decode_batch(
    payloads: list[bytes], max_bytes: int, origin: Callable[[int], dict[str, Any]], first: int
) -> list[Event | Reject]:
    """Decode payloads; a reject gets `origin(first + index)` so it can be found again.

    Lines may keep their newline (JSON allows trailing white space); a reject's
    payload is kept without it.
    """
    items, rejects = decode_all(payloads, max_bytes)
    for index in rejects:
        reject = items[index]
        reject.origin = origin(first + index)
        reject.payload = reject.payload.rstrip(b"\n")
    return items


class Progress:
    """Prints events/s to stderr every few seconds of a long replay."""

    def __init__(
        self, clock: Callable[[], int], stream: TextIO = sys.stderr, every: int = 2 * US_PER_SECOND
    ) -> None:
        self.clock, self.stream, self.every = clock, stream, every
        self.started = self.last = clock()
        self.count = 0

    def add(self, count: int) -> None:
        self.count += count
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            rate = self.count * US_PER_SECOND / max(now - self.started, 1)
            print(
                f"opscockpit: {self.count:,} events, {rate:,.0f} events/s",
                file=self.stream,
                flush=True,
            )


class _LinesPartition(StatefulSourcePartition[Message, int]):
    def __init__(
        self,
        name: str,
        file: str,
        lines: Iterator[bytes],
        line: int,
        batch_size: int,
        max_bytes: int,
        progress: Progress | None,
    ) -> None:
        self.name, self.file, self.lines, self.line = name, file, lines, line
        self.batch_size, self.max_bytes, self.progress = batch_size, max_bytes, progress

    def next_batch(self) -> list[Message]:
        chunk = list(islice(self.lines, self.batch_size))
        if not chunk:
            self.close()
            raise StopIteration
        items = decode_batch(
            chunk, self.max_bytes, lambda n: {"file": self.file, "line": n}, self.line + 1
        )
        self.line += len(chunk)
        if self.progress is not None:
            self.progress.add(len(chunk))
        return [(REPLAY_SHARD, ("events", REPLAY_SHARD, self.name, items))]

    def snapshot(self) -> int:
        return self.line

    def close(self) -> None:
        if isinstance(self.lines, IOBase) and self.lines is not sys.stdin.buffer:
            self.lines.close()


class LinesSource(FixedPartitionedSource[Message, int]):
    """JSON Lines from a file, stdin or any iterable of bytes, as one partition."""

    def __init__(
        self,
        name: str,
        file: str,
        open_lines: Callable[[], Iterator[bytes]],
        batch_size: int,
        max_bytes: int,
        progress: Progress | None = None,
    ) -> None:
        self.name, self.file, self.open_lines = name, file, open_lines
        self.batch_size, self.max_bytes, self.progress = batch_size, max_bytes, progress

    def list_parts(self) -> list[str]:
        return [self.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _LinesPartition:
        lines = self.open_lines()
        skip = resume_state or 0
        ffwd_iter(lines, skip)
        return _LinesPartition(
            self.name, self.file, lines, skip, self.batch_size, self.max_bytes, self.progress
        )


def file_lines(path: str) -> Callable[[], Iterator[bytes]]:
    """Open a JSON Lines file (or `-` for stdin) for a LinesSource."""

    def open_lines() -> Iterator[bytes]:
        # The file itself, not a generator over it: islice then reads lines in C.
        return sys.stdin.buffer if path == "-" else Path(path).open("rb")

    return open_lines


SimResume = tuple[int, int]  # (start of the simulation, emissions released so far)
STOP_CHECK = US_PER_SECOND // 2


def stop_if_asked(stop: threading.Event) -> None:
    """End an endless source without end-of-input semantics: state resumes from the last
    snapshot, and W is not flushed as it would be at the end of a file."""
    if stop.is_set():
        raise AbortExecution()


class _SimulatorPartition(StatefulSourcePartition[Message, SimResume]):
    """Simulated events released when the wall clock reaches their arrival time."""

    def __init__(
        self, source: SimulatorSource, stream: Iterator[tuple[int, bytes]], start: int, emitted: int
    ) -> None:
        self.name, self.clock, self.stop = source.name, source.clock, source.stop
        self.batch_size, self.max_bytes = source.batch_size, source.max_bytes
        self.stream, self.start, self.emitted = stream, start, emitted
        self.pending = next(self.stream)

    def next_batch(self) -> list[Message]:
        stop_if_asked(self.stop)
        now = self.clock()
        payloads: list[bytes] = []
        while self.pending[0] <= now and len(payloads) < self.batch_size:
            payloads.append(self.pending[1])
            self.pending = next(self.stream)
        if not payloads:
            return []
        items = decode_batch(
            payloads, self.max_bytes, lambda n: {"source": self.name, "sequence": n}, self.emitted
        )
        self.emitted += len(payloads)
        return [(REPLAY_SHARD, ("events", REPLAY_SHARD, self.name, items))]

    def next_awake(self) -> datetime | None:
        """At the next arrival, or sooner: a stop request (Ctrl-C) is seen within
        STOP_CHECK even when the next simulated event is minutes away."""
        arrival = self.pending[0]
        now = self.clock()
        if arrival <= now:
            return None
        return datetime.fromtimestamp(min(arrival, now + STOP_CHECK) / US_PER_SECOND, UTC)

    def snapshot(self) -> SimResume:
        return (self.start, self.emitted)


class SimulatorSource(FixedPartitionedSource[Message, SimResume]):
    """The embedded default: simulated history from `backfill` ago at full speed, then live.

    The start is part of the resume state, so a restarted process regenerates the
    same events and skips those it has already released.
    """

    def __init__(
        self,
        name: str,
        stream_from: Callable[[int], Iterator[tuple[int, bytes]]],
        backfill: int,
        clock: Callable[[], int],
        stop: threading.Event,
        batch_size: int,
        max_bytes: int,
    ) -> None:
        self.name, self.stream_from, self.backfill = name, stream_from, backfill
        self.clock, self.stop, self.batch_size, self.max_bytes = clock, stop, batch_size, max_bytes

    def list_parts(self) -> list[str]:
        return [self.name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: SimResume | None
    ) -> _SimulatorPartition:
        if resume_state is None:
            minute = 60 * US_PER_SECOND
            start = (self.clock() - self.backfill) // minute * minute
            emitted = 0
        else:
            start, emitted = resume_state
        stream = self.stream_from(start)
        ffwd_iter(stream, emitted)
        return _SimulatorPartition(self, stream, start, emitted)
