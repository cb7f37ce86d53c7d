"""Bytewax sources that decode at the edge and emit whole batches.

Every source emits `(shard, message)` pairs, one per batch, never one per
event: `("events", shard, source partition, [Event | Reject, ...])` or
`("mark", shard, source partition, largest ts, idle)`. Decoding happens here, on the
worker that reads the partition.
"""

from __future__ import annotations

import sys
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from io import BufferedIOBase, BytesIO
from operator import attrgetter
from pathlib import Path
from typing import Any, TextIO, cast

from bytewax.inputs import AbortExecution, FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import ffwd_iter

from flows.decode import INVALID_EVENT, Event, Reject, decode_all, too_large
from flows.runtime.consts import MIN_TS
from flows.settings import Runtime
from flows.timeutil import US_PER_MS, US_PER_SECOND, format_time

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


def refuse_ahead(
    items: list[Event | Reject],
    payloads: list[bytes],
    origin: Callable[[int], dict[str, Any]],
    now: int,
    most: int,
) -> int:
    """Events more than `most` ahead of the clock `now` become rejects (invalid_event)
    in place, as Kafka 4's brokers refuse records stamped an hour ahead: one producer
    with a clock in the future moved W there for good (every open order's deadline
    passed, false alerts by the thousand, each later event of its partition late).
    0: no bound. Returns the batch's `latest_of` then, for its Marks (one pass over
    its times, not two)."""
    latest, bound = latest_of(items), now + most
    if not most or latest <= bound:
        return latest
    for index, item in enumerate(items):
        if item.ts > bound:
            error = (
                f"ts {format_time(item.ts)} is more than {most / US_PER_SECOND:g} s "
                f"(--max-future) ahead of the clock, {format_time(now)}"
            )
            items[index] = Reject(INVALID_EVENT, error, payloads[index], origin(index))
    return latest_of(items)


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
    def __init__(self, source: LinesSource, lines: LineReader, line: int) -> None:
        self.source, self.lines, self.line = source, lines, line

    def next_batch(self) -> list[Message]:
        source = self.source
        chunk: list[bytes] = []
        cuts: dict[int, int] = {}
        with source.reading():
            chunk, cuts = self.lines.take(source.batch_size)
        if source.failure is not None or (source.stop is not None and source.stop.is_set()):
            self.close()
            raise AbortExecution()  # the input ends without end-of-input semantics
        if not chunk:
            self.close()
            raise StopIteration

        def origin(line: int) -> dict[str, Any]:
            return {"file": source.file, "line": line}

        items = decode_batch(chunk, source.max_bytes, origin, self.line + 1)
        for index, size in cuts.items():  # kept cut: their start, and their size
            line = self.line + 1 + index
            items[index] = too_large(chunk[index], size, source.max_bytes, origin(line), size)
        self.line += len(chunk)
        if source.progress is not None:
            source.progress.add(len(chunk))
        return [(REPLAY_SHARD, ("events", REPLAY_SHARD, source.name, items))]

    def snapshot(self) -> int:
        return self.line

    def close(self) -> None:
        if self.lines.stream is not sys.stdin.buffer:
            self.lines.stream.close()


class InputError(Exception):
    """The input could not be read: the one line to say why."""


class LinesSource(FixedPartitionedSource[Message, int]):
    """JSON Lines from a file or stdin, as one partition.

    Once `stop` is set (a signal), or a read fails, the input ends where it is,
    without end-of-input semantics (nothing more closes); `failure` then says why
    a read failed."""

    def __init__(
        self,
        name: str,
        file: str,
        open_lines: Callable[[], BufferedIOBase],
        batch_size: int,
        max_bytes: int,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.name, self.file, self.open_lines = name, file, open_lines
        self.batch_size, self.max_bytes, self.progress = batch_size, max_bytes, progress
        self.stop = stop
        self.failure: str | None = None

    def list_parts(self) -> list[str]:
        return [self.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _LinesPartition:
        skip = resume_state or 0
        lines = LineReader(BytesIO(), 0)
        with self.reading():  # bytewax panics at an exception here: the first batch ends
            lines = LineReader(self.open_lines(), self.max_bytes or sys.maxsize)
            while skip > lines.taken and lines.take(min(skip - lines.taken, BATCH_SKIP))[0]:
                pass
        return _LinesPartition(self, lines, skip)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A read that fails (EIO, EACCES) ends the input, saying why (`failure`)."""
        try:
            yield
        except OSError as exc:
            self.failure = f"cannot read {self.file}: {exc.strerror or exc}"


def file_lines(path: str) -> Callable[[], BufferedIOBase]:
    """Open a JSON Lines file (or `-` for stdin) for a LinesSource."""

    def open_lines() -> BufferedIOBase:
        return cast(BufferedIOBase, sys.stdin.buffer) if path == "-" else Path(path).open("rb")

    return open_lines


BLOCK = 1 << 20  # bytes a read asks for
BATCH_SKIP = 100_000  # lines skipped at a time, resuming


class LineReader:
    """A stream's lines (without their newline), in batches, each line kept to at
    most `limit` bytes. Read a line at a time, one without an end (a binary file,
    /dev/zero) filled memory before its size could be checked; read in blocks and
    split in C, it costs what iterating over the file did. A line cut keeps its
    first `limit` bytes and its whole size (`cuts`, by line index)."""

    def __init__(self, stream: BufferedIOBase, limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.lines: list[bytes] = []  # read, not taken
        self.taken = 0  # lines taken so far: the index of `lines[0]`
        self.cuts: dict[int, int] = {}  # line index -> its whole size, for lines cut
        self.partial: list[bytes] = []  # the kept start of the line being read
        self.partial_size = 0  # its whole size so far
        self.ended = False

    def take(self, count: int) -> tuple[list[bytes], dict[int, int]]:
        """Up to `count` lines (none: the end), and the cut ones among them by their
        index in the batch."""
        while len(self.lines) < count and not self.ended:
            self.fill()
        batch, self.lines = self.lines[:count], self.lines[count:]
        first, self.taken = self.taken, self.taken + len(batch)
        cuts = {}
        if self.cuts:
            for index in [index for index in self.cuts if index < self.taken]:
                cuts[index - first] = self.cuts.pop(index)
        return batch, cuts

    def fill(self) -> None:
        block = self.stream.read1(BLOCK)  # what a pipe has, not a whole block
        if not block:
            self.ended = True
            if self.partial_size:
                self.finish()
            return
        parts = block.split(b"\n")
        self.extend(parts[0])
        if len(parts) == 1:
            return
        self.finish()
        whole = parts[1:-1]  # lines within the block: shorter than it
        if whole and self.limit < BLOCK and max(map(len, whole)) > self.limit:
            first = self.taken + len(self.lines)
            for offset, line in enumerate(whole):
                if len(line) > self.limit:
                    self.cuts[first + offset] = len(line)
                    whole[offset] = line[: self.limit]
        self.lines += whole
        self.extend(parts[-1])

    def extend(self, piece: bytes) -> None:
        """More of the line being read, of which only its first `limit` bytes stay."""
        room = self.limit + 1 - sum(map(len, self.partial))
        if room > 0 and piece:
            self.partial.append(piece[:room])
        self.partial_size += len(piece)

    def finish(self) -> None:
        """The line being read ended (its newline, or the end of the stream)."""
        line = b"".join(self.partial)
        if self.partial_size > self.limit:
            self.cuts[self.taken + len(self.lines)] = self.partial_size
            line = line[: self.limit]
        self.lines.append(line)
        self.partial, self.partial_size = [], 0


SimResume = tuple[int, int]  # (start of the simulation, emissions passed so far)
Emission = tuple[int, str, bytes]  # (arrival, entity key, payload)
STOP_CHECK = US_PER_SECOND // 2
MARK_EVERY = 100 * US_PER_MS  # at most one progress mark per partition this often
UNCLAIMED_MAX = 100_000  # events kept for a partition of the process not built yet
latest_ts = attrgetter("ts")  # a reject's ts is MIN_TS: it never moves the watermark


def latest_of(items: list[Event | Reject]) -> int:
    """The largest ts of a batch's events (MIN_TS: rejects only)."""
    latest: int = max(map(latest_ts, items))
    return latest


def stop_if_asked(stop: threading.Event) -> None:
    """End an endless source without end-of-input semantics: state resumes from the last
    snapshot, and W is not flushed as it would be at the end of a file."""
    if stop.is_set():
        raise AbortExecution()


class Marks:
    """One partition's progress (its largest event ts, and whether it idles), told to
    every shard so that each knows W over all partitions."""

    def __init__(self, name: str, shards: list[str], now: int, idle_timeout: int) -> None:
        self.name, self.shards, self.idle_timeout = name, shards, idle_timeout
        self.max_ts, self.idle, self.last_event = MIN_TS, False, now
        self.marked: tuple[int, bool] | None = None
        self.last_mark = 0

    def saw(self, latest: int, now: int) -> None:
        """A batch read at `now` whose `latest_of` is `latest`: events move the
        progress, rejects (no event time) not."""
        if latest > MIN_TS:
            self.max_ts, self.idle, self.last_event = max(self.max_ts, latest), False, now

    def settle(self, caught_up: bool, now: int) -> None:
        """Idle once caught up with no event for the idle timeout."""
        self.idle = caught_up and now - self.last_event >= self.idle_timeout

    def due(self, now: int) -> list[Message]:
        """At once when idleness flips, else at most every MARK_EVERY."""
        state = (self.max_ts, self.idle)
        if state == self.marked:
            return []
        idle_flipped = self.marked is None or self.marked[1] != self.idle
        if not idle_flipped and now - self.last_mark < MARK_EVERY:
            return []
        self.marked, self.last_mark = state, now
        return [(shard, ("mark", shard, self.name, *state)) for shard in self.shards]


def partition_of(key: str, count: int) -> int:
    """The partition of an entity key: the same in every process (`hash` is not)."""
    return zlib.crc32(key.encode()) % count


def simulator_parts(name: str, count: int) -> list[str]:
    """One partition is `name` (as every release before several were), more `name:index`."""
    return [name] if count == 1 else [f"{name}:{index}" for index in range(count)]


class _Simulation:
    """One run of the simulation, its events queued for the partitions that take them.

    Every partition runs the same simulation and keeps the events of its own keys, so
    the partitions of one process share one run (each running its own would cost N
    times the generation under one GIL, ~6 µs an event). A partition takes its events
    in the run's order; the others' wait in their queues. A partition built after the
    run generated past its position runs the simulation on its own, as does one built
    again (a test's resume), and so does a partition of this process not built yet
    whose queue reached UNCLAIMED_MAX.
    """

    def __init__(
        self,
        stream_from: Callable[[int], Iterator[Emission]],
        start: int,
        first: int,
        count: int,
        indices: Iterable[int],
    ) -> None:
        self.stream_from, self.start, self.count = stream_from, start, count
        self.lock = threading.Lock()  # a process's workers are threads
        self.begin(first)
        self.queues: dict[int, deque[tuple[int, bytes]]] = {index: deque() for index in indices}
        self.skip: dict[int, int] = {}  # partition -> its events before this were taken
        self.joined: set[int] = set()

    def join(self, index: int, start: int, emitted: int) -> bool:
        """Partition `index`, resuming after `emitted` events of the run from `start`,
        takes its events here; False if this run cannot give them all (then it runs
        its own)."""
        with self.lock:
            queue = self.queues.get(index)
            if index in self.joined or queue is None or start != self.start:
                return False
            if emitted < self.first:
                if self.sequence > self.first:  # events it passed are gone
                    return False
                self.begin(emitted)
            while queue and queue[0][0] < emitted:
                queue.popleft()
            self.skip[index] = emitted
            self.joined.add(index)
            return True

    def begin(self, first: int) -> None:
        """Generate from the run's event `first` on."""
        self.stream = self.stream_from(self.start)
        ffwd_iter(self.stream, first)
        self.pending = next(self.stream)
        self.sequence = self.first = first  # the whole run's index of `pending`

    def take(self, index: int, now: int, most: int) -> tuple[list[bytes], list[int], bool]:
        """Up to `most` of the partition's events that arrived by `now`, their
        sequence numbers, and whether it has taken every event arrived by now. At most
        `most` events per partition of the run are generated per call."""
        payloads: list[bytes] = []
        sequences: list[int] = []
        with self.lock:
            queue, queues, count = self.queues[index], self.queues, self.count
            budget = most * count
            while len(queue) < most and budget and self.pending[0] <= now:
                _arrival, key, payload = self.pending
                owner = partition_of(key, count) if count > 1 else 0
                waiting = queues.get(owner)
                if waiting is not None and self.sequence >= self.skip.get(owner, 0):
                    waiting.append((self.sequence, payload))
                    if len(waiting) > UNCLAIMED_MAX and owner not in self.joined:
                        del queues[owner]  # never built here: its partition runs its own
                self.sequence += 1
                budget -= 1
                self.pending = next(self.stream)
            while queue and len(payloads) < most:
                sequence, payload = queue.popleft()
                payloads.append(payload)
                sequences.append(sequence)
            caught_up = not queue and self.pending[0] > now
        return payloads, sequences, caught_up

    def next_arrival(self, index: int) -> int:
        """When the partition next has an event to take (at once if one waits)."""
        with self.lock:
            return MIN_TS if self.queues[index] else self.pending[0]

    def position(self, index: int) -> int:
        """The run's events before this hold none the partition has not taken."""
        with self.lock:
            queue = self.queues[index]
            return queue[0][0] if queue else max(self.sequence, self.skip.get(index, 0))


class _SimulatorPartition(StatefulSourcePartition[Message, SimResume]):
    """Simulated events released when the wall clock reaches their arrival time.

    Each partition (one per worker) keeps the events of the simulation whose key is
    its own, as a Kafka topic keyed by entity would hold them, and tells every shard
    its progress and idleness as a Kafka partition does: so W is the same for any
    number of workers."""

    def __init__(self, source: SimulatorSource, index: int, simulation: _Simulation) -> None:
        self.clock, self.stop = source.clock, source.stop
        self.batch_size, self.max_bytes = source.batch_size, source.max_bytes
        self.name, self.shard = source.parts[index], source.shard_of[index]
        self.index, self.simulation = index, simulation
        self.marks = Marks(self.name, source.shards, self.clock(), source.idle_timeout)

    def next_batch(self) -> list[Message]:
        stop_if_asked(self.stop)
        now = self.clock()
        payloads, sequences, caught_up = self.simulation.take(self.index, now, self.batch_size)
        out: list[Message] = []
        if payloads:
            origin = {"source": self.name}
            items = decode_batch(
                payloads, self.max_bytes, lambda n: origin | {"sequence": sequences[n]}, 0
            )
            self.marks.saw(latest_of(items), now)
            out.append((self.shard, ("events", self.shard, self.name, items)))
        self.marks.settle(caught_up, now)
        out.extend(self.marks.due(now))
        return out

    def next_awake(self) -> datetime | None:
        """At the next arrival, or sooner: a stop request (Ctrl-C) is seen within
        STOP_CHECK even when the next simulated event is minutes away."""
        arrival = self.simulation.next_arrival(self.index)
        now = self.clock()
        if arrival <= now:
            return None
        return datetime.fromtimestamp(min(arrival, now + STOP_CHECK) / US_PER_SECOND, UTC)

    def snapshot(self) -> SimResume:
        return (self.simulation.start, self.simulation.position(self.index))


class SimulatorSource(FixedPartitionedSource[Message, SimResume]):
    """The embedded default: simulated history from `backfill` ago at full speed, then live.

    The start is part of the resume state, so a restarted process regenerates the
    same events and skips those it has already passed. `shard_of` names the shard of
    each partition (`simulator_parts`); `local`, the partitions this process reads
    (all when not given), which share one run of the simulation. A new run starts
    `backfill` before `started` (the cluster's start, so that every process starts
    the same run) or else the clock at the first partition built.
    """

    def __init__(
        self,
        name: str,
        stream_from: Callable[[int], Iterator[Emission]],
        shard_of: dict[int, str],
        backfill: int,
        runtime: Runtime,
        local: Iterable[int] | None = None,
        started: int | None = None,
    ) -> None:
        settings = runtime.settings
        self.stream_from, self.backfill, self.shard_of = stream_from, backfill, shard_of
        self.clock, self.stop = runtime.clock, runtime.stop
        self.batch_size, self.max_bytes = settings.batch_size, settings.max_event_bytes
        self.idle_timeout = settings.idle_timeout
        self.parts = simulator_parts(name, len(shard_of))
        self.shards = sorted(set(shard_of.values()))
        self.local = sorted(shard_of if local is None else local)
        self.started = started
        self.shared: _Simulation | None = None
        self.lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: SimResume | None
    ) -> _SimulatorPartition:
        index = self.parts.index(for_part)
        with self.lock:
            if resume_state is None:
                if self.started is None:
                    self.started = self.clock()
                minute = 60 * US_PER_SECOND
                start, emitted = (self.started - self.backfill) // minute * minute, 0
            else:
                start, emitted = resume_state
            if self.shared is None:
                self.shared = self.run(start, emitted, self.local)
            simulation = self.shared
            if not simulation.join(index, start, emitted):
                simulation = self.run(start, emitted, [index])
                simulation.join(index, start, emitted)
        return _SimulatorPartition(self, index, simulation)

    def run(self, start: int, emitted: int, indices: Iterable[int]) -> _Simulation:
        return _Simulation(self.stream_from, start, emitted, len(self.parts), indices)
