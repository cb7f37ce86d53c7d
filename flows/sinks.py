"""Bytewax sinks for output records: JSON Lines files (Kafka topics live in `kafka`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.runtime.outputs import Output, written


class OutputError(Exception):
    """An output file that cannot be written, in one line."""


class _JsonLinesPartition(StatefulSinkPartition[Output, int]):
    """Writes until the file refuses (a full disk, say): then it keeps the reason
    on its sink and writes no more, since an error raised inside bytewax ends the
    run in a Rust panic of many lines rather than the command's one."""

    def __init__(self, sink: JsonLinesSink, resume_state: int | None) -> None:
        self.sink = sink
        self.handle = sink.path.open("ab")
        # On resume, drop what was written after the snapshot: it is written again.
        # A pipe, a terminal or a device (/dev/null) is only written to.
        self.regular = stat.S_ISREG(os.fstat(self.handle.fileno()).st_mode)
        if self.regular:
            with self.refusal():
                self.handle.seek(resume_state or 0)
                self.handle.truncate()

    @contextmanager
    def refusal(self) -> Iterator[None]:
        """Keep the first OSError as the sink's failure."""
        try:
            yield
        except OSError as exc:
            if self.sink.failure is None:
                self.sink.failure = f"cannot write {self.sink.path}: {exc.strerror or exc}"

    def write_batch(self, values: list[Output]) -> None:
        if self.sink.failure is None:
            with self.refusal():
                self.handle.write(b"".join(out.value + b"\n" for out in written(values)))
                self.handle.flush()

    def snapshot(self) -> int:
        if not self.regular or self.sink.failure is not None:
            return 0
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
        with self.refusal():  # its last bytes may not fit
            self.handle.close()


class JsonLinesSink(FixedPartitionedSink[Output, int]):
    """Records as JSON Lines in one file, written by one worker. `failure` says why
    the file could not be written, once it could not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failure: str | None = None

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesPartition:
        return _JsonLinesPartition(self, resume_state)

    def check(self) -> None:
        """Raise OutputError if a record could not be written."""
        if self.failure is not None:
            raise OutputError(self.failure)
