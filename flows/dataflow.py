"""The bytewax dataflow: wiring only. All KPI logic lives in `engine` and `windows`.

    input (decoded batches, keyed by shard)
      -> shards: stateful_batch, one ShardEngine per shard
           -> dead letters, alerts                       -> their sinks
           -> closed-window partials -> windows: one WindowAggregator -> KPI records

`python -m bytewax.run "flows.dataflow:replay_flow('events.jsonl')"` runs a
replay without the CLI.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows.engine import Output, ShardEngine
from flows.settings import Runtime, Settings
from flows.sources import REPLAY_SHARD, LinesSource, file_lines
from flows.windows import KpiRecord, WindowAggregator

WINDOWS_KEY = "all"


@dataclass(frozen=True)
class Layout:
    """Which shards hold state and which source partitions feed the watermark."""

    shards: tuple[str, ...]
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class Sinks:
    """Where each output goes; None drops it.

    Sinks take `(key, (key, record))` items: the outer key routes (bytewax strips
    it), the inner one is the message key a Kafka sink needs.
    """

    dead_letters: Sink[Any] | None = None
    alerts: Sink[Any] | None = None
    kpis: Sink[Any] | None = None


def single(name: str) -> Layout:
    """The layout of a one-partition input (a file, stdin, the simulator)."""
    return Layout((REPLAY_SHARD,), (name,))


class ShardLogic(StatefulBatchLogic[Any, Output, bytes | None]):
    """Feeds one shard's engine; the engine is created on the shard's first batch."""

    def __init__(self, runtime: Runtime, layout: Layout, resume: bytes | None) -> None:
        self.runtime, self.layout = runtime, layout
        self.config = runtime.settings.engine(layout.partitions)
        self.engine: ShardEngine | None = None
        if resume is not None:
            self._publish(pickle.loads(resume).attach(self.config, runtime.labels))

    def _publish(self, engine: ShardEngine) -> ShardEngine:
        self.engine = engine
        self.runtime.board.publish(f"shard:{engine.shard}", engine.ledger)
        return engine

    def on_batch(self, values: list[Any]) -> tuple[list[Output], bool]:
        engine = self.engine
        for kind, shard, source, *rest in values:
            if engine is None:
                engine = self._publish(ShardEngine(shard, self.config, self.runtime.labels))
            if kind == "events":
                engine.process(source, rest[0])
            else:
                engine.mark(source, rest[0], rest[1])
        self.runtime.board.ready.set()
        return (engine.drain() if engine else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        if self.engine is None:
            return [], StatefulBatchLogic.RETAIN
        self.engine.finish()
        return self.engine.drain(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.runtime.settings.recovery or self.engine is None:
            return None
        return pickle.dumps(self.engine, protocol=pickle.HIGHEST_PROTOCOL)


class WindowLogic(StatefulBatchLogic[Any, KpiRecord, bytes | None]):
    """Feeds the single window aggregator with the partials of every shard."""

    def __init__(self, runtime: Runtime, layout: Layout, resume: bytes | None) -> None:
        self.runtime = runtime
        self.aggregator: WindowAggregator = (
            pickle.loads(resume)
            if resume is not None
            else WindowAggregator(layout.shards, runtime.settings.window)
        )
        runtime.board.publish("windows", self.aggregator.ledger)

    def on_batch(self, values: list[Any]) -> tuple[list[KpiRecord], bool]:
        self.runtime.board.ready.set()
        for shard, (closed_through, rows) in values:
            self.aggregator.add(shard, closed_through, rows)
        return self.aggregator.drain(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.runtime.settings.recovery:
            return None
        return pickle.dumps(self.aggregator, protocol=pickle.HIGHEST_PROTOCOL)


def _kind_is(kind: str) -> Callable[[Output], bool]:
    return lambda output: output[0] == kind


def build_flow(runtime: Runtime, source: Source[Any], layout: Layout, sinks: Sinks) -> Dataflow:
    """The opscockpit dataflow over any source of decoded batches."""
    flow = Dataflow("opscockpit")
    batches = op.input("input", flow, source)
    results = op.stateful_batch(
        "shards", batches, lambda resume: ShardLogic(runtime, layout, resume)
    )
    outputs = op.map("unkey", results, lambda keyed: keyed[1])
    windows = op.filter("window_partials", outputs, _kind_is("window"))
    partials = op.map("to_windows", windows, lambda output: (WINDOWS_KEY, (output[1], output[2])))
    kpis = op.stateful_batch(
        "windows", partials, lambda resume: WindowLogic(runtime, layout, resume)
    )
    streams = {
        "dead_letters": op.filter("dead_letters", outputs, _kind_is("dlq")),
        "alerts": op.filter("alerts", outputs, _kind_is("alert")),
        "kpis": op.map("kpi_records", kpis, lambda keyed: keyed[1]),
    }
    wired = False
    for name, stream in streams.items():
        sink = getattr(sinks, name)
        if sink is not None:
            records = op.map(
                f"{name}_records", stream, lambda output: (output[1], (output[1], output[2]))
            )
            op.output(f"{name}_out", records, sink)
            wired = True
    if not wired:
        op.inspect("discard", streams["kpis"], lambda _step, _item: None)
    return flow


def replay_flow(path: str, settings: Settings | None = None) -> Dataflow:
    """A replay of a JSON Lines file for `python -m bytewax.run` (metrics are not written)."""
    runtime = Runtime(settings or Settings())
    source = LinesSource(
        "input",
        path,
        file_lines(path),
        runtime.settings.batch_size,
        runtime.settings.max_event_bytes,
    )
    return build_flow(runtime, source, single("input"), Sinks())
