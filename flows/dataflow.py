"""The bytewax dataflow: wiring only. The runtime (`flows.runtime`) and the KPI
families (`flows.kpis`) hold all logic.

    input (decoded batches, keyed by shard)
      -> shards: stateful_batch, one runtime Shard with every family per shard
           -> typed outputs, split by type: dead letters, alerts, KPI records,
              and window partials -> windows: the combine stage -> KPI records

`python -m bytewax.run "flows.dataflow:replay_flow('events.jsonl')"` runs a
replay without the CLI.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, Sink

from flows.kpis import ALL_FAMILIES, COMBINERS, FAMILIES, Families
from flows.kpis.upgrade import upgrade
from flows.runtime import snapshot
from flows.runtime.combine import CombineStage
from flows.runtime.core import Shard
from flows.runtime.outputs import SINK_KEY, Alert, DeadLetter, Output, Partials, Routed
from flows.settings import Runtime, Settings
from flows.sources import REPLAY_SHARD, LinesSource, file_lines

COMBINE_KEY = "all"  # the window stage's state key: where no placement moves it
FLOW, INPUT_STEP, SHARD_STEP, COMBINE_STEP = (
    "opscockpit",
    "input",
    "shards",
    "windows",
)  # recovery keeps these
OUTPUTS = ("dead_letters", "alerts", "kpis")  # the Sinks fields, each output step's name


@dataclass(frozen=True)
class Layout:
    """Which shards hold state and which source partitions feed the watermark."""

    shards: tuple[str, ...]
    partitions: tuple[str, ...]
    windows: str = COMBINE_KEY  # the window stage's state key, which places it


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
    """Feeds one shard's runtime; it is created on the shard's first batch."""

    def __init__(
        self,
        runtime: Runtime,
        layout: Layout,
        resume: bytes | None,
        families: tuple[Any, ...] = FAMILIES,
    ) -> None:
        self.runtime, self.layout, self.families = runtime, layout, families  # and entities
        self.config = runtime.settings.engine(layout.partitions)
        self.shard: Shard | None = None
        if resume is not None:
            self._publish(
                snapshot.load_shard(resume, self.config, runtime.labels, families, upgrade)
            )

    def _publish(self, shard: Shard) -> Shard:
        self.shard = shard
        self.runtime.board.publish(f"shard:{shard.shard}", shard.ledger)
        return shard

    def on_batch(self, values: list[Any]) -> tuple[list[Output], bool]:
        shard = self.shard
        for kind, name, source, *rest in values:
            if shard is None:
                shard = self._publish(Shard(name, self.config, self.runtime.labels, self.families))
            if kind == "events":
                shard.process(source, rest[0])
            else:
                shard.mark(source, rest[0], rest[1])
        self.runtime.board.ready.set()
        return (shard.drain() if shard else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        if self.shard is None:
            return [], StatefulBatchLogic.RETAIN
        self.shard.finish()
        return self.shard.drain(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.runtime.settings.recovery or self.shard is None:
            return None
        return snapshot.dump_shard(self.shard)


class CombineLogic(StatefulBatchLogic[Any, Output, bytes | None]):
    """Feeds the single combine stage with the window partials of every shard."""

    def __init__(
        self,
        runtime: Runtime,
        layout: Layout,
        resume: bytes | None,
        combiners: tuple[Any, ...] = COMBINERS,
        records: bool = True,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.stage = CombineStage(
            layout.shards, settings.window, combiners, runtime.labels, settings.kpi, records
        )
        if resume is not None:
            snapshot.load_combine(resume, self.stage, upgrade)
        runtime.board.publish("windows", self.stage.ledger)
        for name, source in self.stage.item_sources().items():
            runtime.board.publish_items(name, source)

    def on_batch(self, values: list[Partials]) -> tuple[list[Output], bool]:
        self.runtime.board.ready.set()
        for partials in values:
            self.stage.add(partials)
        return self.stage.drain(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.runtime.settings.recovery:
            return None
        return snapshot.dump_combine(self.stage)


def output_parts(sinks: Sinks) -> dict[str, list[str]]:
    """The recovery parts of each output step, by step id (a Kafka sink's part is
    its topic)."""
    return {
        f"{FLOW}.{name}_out": sink.list_parts()
        for name in OUTPUTS
        if isinstance(sink := getattr(sinks, name), FixedPartitionedSink)
    }


def input_parts(source: Source[Any]) -> dict[str, list[str]]:
    """The recovery parts of the input step (a Kafka partition, a simulator's)."""
    if isinstance(source, FixedPartitionedSource):
        return {f"{FLOW}.{INPUT_STEP}": source.list_parts()}
    return {}


def kept_windows(directory: Path | None) -> str | None:
    """The state key of the window stage in a recovery directory, if it holds one: a
    restart keeps it where it was (an earlier release placed it by its key alone)."""
    keys: set[str] = set()
    for path in sorted(directory.glob("part-*.sqlite3")) if directory else ():
        with suppress(sqlite3.Error), closing(sqlite3.connect(path)) as db:
            query = "SELECT DISTINCT state_key FROM snaps WHERE step_id = ?"
            keys.update(key for (key,) in db.execute(query, (f"{FLOW}.{COMBINE_STEP}",)))
    return min(keys) if keys else None


def check_recovery(directory: Path, window: int, parts: dict[str, list[str]] | None = None) -> None:
    """Refuse, before the dataflow starts, snapshots this build cannot read or
    kept on another `window` size, a part file that is no recovery file, and
    recovery state of input or output parts this run does not have (`input_parts`,
    `output_parts`: bytewax panics on a part it no longer has): one line (a refusal
    inside a running dataflow comes with bytewax's panic)."""
    parts = parts or {}
    readers = {
        f"{FLOW}.{SHARD_STEP}": (snapshot.SHARD_FORMAT, {f.NAME: f.VERSION for f in FAMILIES}),
        f"{FLOW}.{COMBINE_STEP}": (snapshot.COMBINE_FORMAT, {c.NAME: c.VERSION for c in COMBINERS}),
    }
    kept: dict[str, set[str]] = {}
    for path in sorted(directory.glob("part-*.sqlite3")):
        try:
            with closing(sqlite3.connect(path)) as db:
                # bytewax 0.21's recovery table: the pickled value each snapshot() gave.
                query = "SELECT step_id, ser_change FROM snaps WHERE ser_change IS NOT NULL"
                for step, blob in db.execute(query):
                    if step in readers and (data := snapshot.loads(blob)) is not None:
                        snapshot.read(data, *readers[step], upgrade, window)
                for step, part in db.execute("SELECT DISTINCT step_id, state_key FROM snaps"):
                    kept.setdefault(step, set()).add(part)
        except (sqlite3.Error, snapshot.Damaged) as exc:
            raise snapshot.SnapshotError(
                f"{path.name} is not an opscockpit recovery file ({exc})"
            ) from None
    for step, wanted in parts.items():
        if not (gone := sorted(kept.get(step, set()) - set(wanted))):
            continue
        if step == f"{FLOW}.{INPUT_STEP}":
            raise snapshot.SnapshotError(
                f"it read {', '.join(gone)}, and this run reads {', '.join(wanted)}: resume "
                "with the input it read, or start from another --recovery-dir"
            )
        name = step.removeprefix(f"{FLOW}.").removesuffix("_out")
        raise snapshot.SnapshotError(
            f"it wrote {name} to {', '.join(gone)}, and this run writes them to "
            f"{', '.join(wanted)}: give the same output options, or another --recovery-dir"
        )


def _is(kind: type) -> Any:
    return lambda output: type(output) is kind


def _value(keyed: tuple[str, Output]) -> Output:
    return keyed[1]


def _routed(output: Output) -> Routed:
    """An output for a sink, whole (the sink makes its records)."""
    return (SINK_KEY, output)


def build_flow(
    runtime: Runtime,
    source: Source[Any],
    layout: Layout,
    sinks: Sinks,
    families: Families = ALL_FAMILIES,
) -> Dataflow:
    """The opscockpit dataflow over any source of decoded batches; `families` chooses
    which run (all of them but where a benchmark leaves some out)."""
    flow = Dataflow(FLOW)
    batches = op.input(INPUT_STEP, flow, source)
    results = op.stateful_batch(
        SHARD_STEP, batches, lambda resume: ShardLogic(runtime, layout, resume, families.shard)
    )
    shard_outputs = op.map("unkey", results, _value)
    partials = op.branch("window_partials", shard_outputs, _is(Partials))
    keyed = op.map("to_combine", partials.trues, lambda output: (layout.windows, output))
    records = sinks.kpis is not None  # else the combine steps make none
    combined = op.stateful_batch(
        COMBINE_STEP,
        keyed,
        lambda resume: CombineLogic(runtime, layout, resume, families.combine, records),
    )
    outputs = op.merge("outputs", partials.falses, op.map("unkey_combined", combined, _value))
    dead_letters = op.branch("dead_letters", outputs, _is(DeadLetter))
    alerts = op.branch("alerts", dead_letters.falses, _is(Alert))
    # The web API's recent alerts, whatever sink the records go to.
    op.inspect(
        "alerts_on_board",
        alerts.trues,
        lambda _step, alert: runtime.board.alerts.add(alert.key, alert.record),
    )
    streams: dict[str, Stream[Any]] = dict(
        zip(OUTPUTS, (dead_letters.trues, alerts.trues, alerts.falses), strict=True)
    )
    for name, stream in streams.items():
        sink = getattr(sinks, name)
        if sink is not None:
            op.output(f"{name}_out", op.map(f"{name}_routed", stream, _routed), sink)
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
