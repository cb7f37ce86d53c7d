"""Bytewax sinks for output records: JSON Lines files (Kafka topics live in `kafka`)."""

from __future__ import annotations

import os
from pathlib import Path

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.runtime.outputs import Output, written


class _JsonLinesPartition(StatefulSinkPartition[Output, int]):
    def __init__(self, path: Path, resume_state: int | None) -> None:
        self.handle = path.open("ab")
        # On resume, drop what was written after the snapshot: it is written again.
        self.handle.seek(resume_state or 0)
        self.handle.truncate()

    def write_batch(self, values: list[Output]) -> None:
        self.handle.write(b"".join(out.value + b"\n" for out in written(values)))
        self.handle.flush()

    def snapshot(self) -> int:
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
        self.handle.close()


class JsonLinesSink(FixedPartitionedSink[Output, int]):
    """Records as JSON Lines in one file, written by one worker."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesPartition:
        return _JsonLinesPartition(self.path, resume_state)
