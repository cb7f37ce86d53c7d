"""Keep each shard on the worker that reads its Kafka partition, and the window stage
on worker 0.

bytewax assigns input partitions to workers and routes keyed items to workers by
two different hashes, so a shard named after its partition usually lives on
another worker than the reader, and with several processes every batch crosses
the network while one process may hold every shard. Both hashes depend only on
the names and the total number of workers, so a short probe dataflow run with
that many worker threads tells where each name lands; each shard then gets the
first key that lands with its partition's reader.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.run import cli_main
from bytewax.testing import TestingSource

CANDIDATES_PER_SHARD = 64


class _Nothing(StatelessSourcePartition[Any], StatefulSourcePartition[Any, None]):
    def next_batch(self) -> list[Any]:
        raise StopIteration

    def snapshot(self) -> None:
        return None


class _Workers(DynamicSource[Any]):
    """Learns which thread is which worker."""

    def __init__(self) -> None:
        self.index_of: dict[int, int] = {}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Nothing:
        self.index_of[threading.get_ident()] = worker_index
        return _Nothing()


class _Readers(FixedPartitionedSource[Any, None]):
    """Learns which thread builds (reads) each partition."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self.thread_of: dict[str, int] = {}

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Nothing:
        self.thread_of[for_part] = threading.get_ident()
        return _Nothing()


def _probe(
    workers: int, parts: list[str], keys: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Worker index of each input partition and of each state key, for `workers` workers."""
    who, readers = _Workers(), _Readers(parts)
    key_thread: dict[str, int] = {}

    def note(state: None, _value: None) -> tuple[None, None]:
        return None, None

    flow = Dataflow("opscockpit_placement")
    op.inspect("workers_seen", op.input("workers", flow, who), lambda _s, _x: None)
    op.inspect("readers_seen", op.input("readers", flow, readers), lambda _s, _x: None)
    keyed = op.input("keys", flow, TestingSource([(key, None) for key in keys], batch_size=4096))
    seen = op.stateful_map("route", keyed, note)
    op.inspect(
        "keys_seen", seen, lambda _s, item: key_thread.__setitem__(item[0], threading.get_ident())
    )
    cli_main(flow, workers_per_process=workers, epoch_interval=timedelta(seconds=1))
    index = who.index_of
    return (
        {part: index[thread] for part, thread in readers.thread_of.items()},
        {key: index[thread] for key, thread in key_thread.items()},
    )


class Placement(NamedTuple):
    keys: dict[str, str]  # shard -> its state key
    windows: str  # the window stage's state key
    worker_of: dict[str, int]  # shard -> the worker reading its partition


def shard_keys(workers: int, reader_of_shard: dict[str, str], windows: str) -> Placement:
    """A state key per shard that lands on the worker reading its partition, and a key
    for the window stage, `windows` or a variant of it, that lands on worker 0, so
    that process 0 (the first port) serves the figures made from closed windows.

    `reader_of_shard` maps a shard (a partition index) to the input partition whose
    reader should hold it. With one worker every key is itself.
    """
    if workers <= 1:
        return Placement(
            {shard: shard for shard in reader_of_shard}, windows, dict.fromkeys(reader_of_shard, 0)
        )
    candidates = {shard: _candidates(shard) for shard in reader_of_shard}
    leads = _candidates(windows)
    part_worker, key_worker = _probe(
        workers,
        sorted(set(reader_of_shard.values())),
        [key for keys in [*candidates.values(), leads] for key in keys],
    )
    chosen, worker_of = {}, {}
    for shard, part in reader_of_shard.items():
        wanted = worker_of[shard] = part_worker[part]
        chosen[shard] = next((key for key in candidates[shard] if key_worker[key] == wanted), shard)
    return Placement(
        chosen, next((key for key in leads if key_worker[key] == 0), windows), worker_of
    )


def _candidates(shard: str) -> list[str]:
    return [shard, *(f"{shard}~{n}" for n in range(1, CANDIDATES_PER_SHARD))]
