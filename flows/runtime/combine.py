"""The combine stage: KPIs that need every shard (contract §3, per window).

Shards report, at each window close, their families' partial rows and how far
they have closed. A family's combine step (`Combiner`) gets every shard's rows,
and is asked to close windows only once every shard has closed them, in window
order, so a running total (on hand before a window) is exact whatever the
number of shards. A step that also follows W (`FollowsWatermark`: its rows are
not per window) is told the least W of all shards whenever that moves: every
shard has then reported every row up to it. Plain Python: it runs once per
window close or report, not per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from flows.declare import Metric
from flows.kpisettings import KpiSettings
from flows.labels import LabelCap
from flows.ledger import Ledger
from flows.published import ItemSource
from flows.runtime.consts import MIN_TS
from flows.runtime.outputs import KpiRecord, KpiRecords, Output, Partials
from flows.timeutil import format_time


@dataclass
class CombineContext:
    """What a combine step uses: the window size, its metric series, labels, the
    KPI settings, W (the least of the shards' when they last closed), and whether
    anything takes KPI records: where nothing does (a replay without --kpis, the
    simulator's run), the steps make none."""

    window: int
    series: dict[str, dict[Any, Any]]
    labels: LabelCap
    kpi: KpiSettings
    watermark: int = MIN_TS
    records: bool = True

    def label(self, name: str, value: str) -> str:
        """A label value as metrics may use it: admitted, or `other` beyond the cap.
        Not counted in `cockpit_label_overflow_total`: the events that carried the
        value counted their uses on the shards."""
        return self.labels.fold(name, value)

    def decided(self) -> str:
        """W as RFC 3339, the `decided_ts` of records made now."""
        return format_time(self.watermark)


class Combiner(Protocol):
    """A family's combine step, named as the family whose rows it takes."""

    NAME: ClassVar[str]
    VERSION: ClassVar[int]
    METRICS: ClassVar[tuple[Metric, ...]]

    def __init__(self, context: CombineContext) -> None: ...
    def add(self, rows: Any) -> None: ...
    def close(self, closed: int, out: list[Any]) -> None: ...
    def export_state(self) -> Any: ...
    def restore_state(self, state: Any) -> None: ...


@runtime_checkable
class FollowsWatermark(Protocol):
    """A combine step that acts as W moves, not only as windows close."""

    def follow(self, watermark: int, out: list[Any]) -> None:
        """Every shard reported its rows up to `watermark`, the least of their W."""


class CombineStage:
    """Every combine step, fed by every shard. Picklable through `export`."""

    def __init__(
        self,
        shards: tuple[str, ...],
        window: int,
        combiners: tuple[type[Combiner], ...],
        labels: LabelCap,
        kpi: KpiSettings,
        records: bool = True,
    ) -> None:
        self.progress: dict[str, int] = dict.fromkeys(shards, MIN_TS)
        self.watermarks: dict[str, int] = dict.fromkeys(shards, MIN_TS)
        self.combined_through = MIN_TS
        self.ledger = Ledger(tuple(m for kind in combiners for m in kind.METRICS))
        self.context = CombineContext(window, self.ledger.series, labels, kpi, records=records)
        self.combiners: dict[str, Combiner] = {kind.NAME: kind(self.context) for kind in combiners}
        self.followers = [c for c in self.combiners.values() if isinstance(c, FollowsWatermark)]
        self.out: list[Output] = []

    def add(self, partials: Partials) -> None:
        """One shard's partials; windows every shard has closed are combined, and
        steps that follow W learn how far every shard has reported."""
        for name, rows in partials.rows.items():
            self.combiners[name].add(rows)
        shard = partials.shard
        reported = min(self.watermarks.values())
        self.progress[shard] = max(self.progress.get(shard, MIN_TS), partials.closed_through)
        self.watermarks[shard] = max(self.watermarks.get(shard, MIN_TS), partials.watermark)
        watermark = min(self.watermarks.values())
        closed = min(self.progress.values())
        if closed > self.combined_through:
            self.context.watermark = watermark
            for combiner in self.combiners.values():
                combiner.close(closed, self.out)
            self.combined_through = closed
        if watermark > reported:
            self.context.watermark = watermark
            for follower in self.followers:
                follower.follow(watermark, self.out)

    def item_sources(self) -> dict[str, ItemSource]:
        """The combine steps that publish per-item detail for the web API, by name."""
        return {
            name: source
            for name, combiner in self.combiners.items()
            if (source := getattr(combiner, "published", None)) is not None
        }

    def drain(self) -> list[Output]:
        """Take the records produced so far, each run of KPI records as one batch
        (each record routed through the dataflow on its own cost more than writing it)."""
        out: list[Output] = []
        run: list[KpiRecord] = []
        for output in self.out:
            if type(output) is KpiRecord:
                run.append(output)
                continue
            if run:
                out.append(KpiRecords(run))
                run = []
            out.append(output)
        if run:
            out.append(KpiRecords(run))
        self.out = []
        return out

    def export(self) -> dict[str, Any]:
        """Plain data for a snapshot (`flows.runtime.snapshot` adds the versions)."""
        return {
            "progress": dict(self.progress),
            "watermarks": dict(self.watermarks),
            "combined_through": self.combined_through,
            "combiners": {
                name: {
                    "series": {m.name: self.ledger.series[m.name] for m in combiner.METRICS},
                    "state": combiner.export_state(),
                }
                for name, combiner in self.combiners.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `export` gave."""
        self.progress.update(state["progress"])
        self.watermarks.update(state.get("watermarks", state["progress"]))
        self.combined_through = state["combined_through"]
        for name, saved in state["combiners"].items():
            combiner = self.combiners.get(name)
            if combiner is None:
                continue  # a combine step this build no longer has
            for metric, series in saved["series"].items():
                self.ledger.series[metric] = series
            combiner.restore_state(saved["state"])
