"""Bytewax sinks for output records: JSON Lines files (Kafka topics live in `kafka`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.runtime.outputs import Output, written


class OutputError(Exception):
    """An output file that cannot be written, in one line."""


class _JsonLinesPartition(StatefulSinkPartition[Output, None]):
    """Writes until the file refuses (a full disk, say): then it keeps the reason
    on its sink and writes no more, since an error raised inside bytewax ends the
    run in a Rust panic of many lines rather than the command's one."""

    def __init__(self, sink: JsonLinesSink) -> None:
        self.sink = sink

    def write_batch(self, values: list[Output]) -> None:
        sink = self.sink
        if sink.failure is None:
            with sink.refusal():
                sink.handle.write(b"".join(out.value + b"\n" for out in written(values)))
                sink.handle.flush()

    def snapshot(self) -> None:
        return None  # a replay keeps no recovery state


class JsonLinesSink(FixedPartitionedSink[Output, None]):
    """Records as JSON Lines in one file, written by one worker. The file is opened
    (a regular one emptied) before the flow runs and closed after it: it exists even
    when nothing is written (bytewax builds a sink's partition at its first record),
    and a named pipe is opened once, so its reader sees the end only after the last
    record. `failure` says why the file could not be written, once it could not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failure: str | None = None
        try:
            self.handle = path.open("wb")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None

    @contextmanager
    def refusal(self) -> Iterator[None]:
        """Keep the first OSError as the failure."""
        try:
            yield
        except OSError as exc:
            if self.failure is None:
                self.failure = f"cannot write {self.path}: {exc.strerror or exc}"

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _JsonLinesPartition:
        return _JsonLinesPartition(self)

    def close(self) -> None:
        with self.refusal():  # its last bytes may not fit
            self.handle.close()

    def check(self) -> None:
        """Raise OutputError if a record could not be written."""
        if self.failure is not None:
            raise OutputError(self.failure)
