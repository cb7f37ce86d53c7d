# cython: language_level=3
"""Stock and sell-through (contract §3.1), per fc of each event.

On hand = Σ stowed - Σ picked + Σ adjusted delta over accepted events (returns do
not restock); unit counters count every accepted event at once, whether or not
its order or receipt is known. Per closed tumbling window [a, b), sell-through
is units ordered / (on hand as of a + units stowed in [a, b)), and days of
cover is on hand as of b / units ordered per day. Shards report their windows'
units ordered, stowed and on-hand change per fc; the combine stage adds them up
once every shard has closed a window, in window order, so "on hand as of a" is
exact whatever the number of shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, GAUGE, Metric, metric
from flows.labels import OTHER
from flows.runtime.combine import CombineContext
from flows.runtime.outputs import KpiRecord, key_part
from flows.timeutil import US_PER_SECOND, format_time

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core

UNITS_STOWED = metric(
    "cockpit_units_stowed_total",
    COUNTER,
    "Units stowed.",
    ("fc",),
    group="inventory",
    contract=True,
)
UNITS_PICKED = metric(
    "cockpit_units_picked_total",
    COUNTER,
    "Units picked.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
ON_HAND = metric(
    "cockpit_units_on_hand",
    GAUGE,
    "Units on hand: stowed - picked + adjusted.",
    ("fc",),
    group="inventory",
    contract=True,
)
SELL_THROUGH = metric(
    "cockpit_sell_through_ratio",
    GAUGE,
    "Units ordered / (on hand at window start + units stowed), latest closed window.",
    ("fc",),
    unit="percentunit",
    group="inventory",
    contract=True,
)
ADJUSTED = metric(
    "cockpit_units_adjusted_total",
    COUNTER,
    "Units added (up) or removed (down) by stock adjustments.",
    ("fc", "direction"),
    group="inventory",
)
COVER = metric(
    "cockpit_stock_cover_seconds",
    GAUGE,
    "Days of cover, in seconds: how long on hand at the end of the latest closed "
    "window lasts at that window's ordering rate.",
    ("fc",),
    unit="s",
    group="inventory",
)

DAY = 86400 * US_PER_SECOND


@cython.final
@cython.no_gc  # three ints
@cython.cclass
class Part:
    """A shard's share of one window and fc."""

    ordered: cython.longlong
    stowed: cython.longlong
    change: cython.longlong  # of on hand

    def __init__(self, ordered: int = 0, stowed: int = 0, change: int = 0) -> None:
        self.ordered, self.stowed, self.change = ordered, stowed, change


@cython.final
@cython.cclass
class Place:
    """An fc as this family counts its events: its label's cells, and its part of
    the window of its latest event. Found once per event (a lookup per metric and
    per part cost more than the rest of the event)."""

    label: str
    picked: core.Cell
    stowed: core.Cell
    on_hand: core.Cell
    up: core.Cell
    down: core.Cell
    start: cython.longlong  # the window `part` is of (MIN_TS: none)
    part: Part


@cython.cclass
class Stock(entity.OrderWatcher):
    """Unit counters, on hand, and each window's partials for sell-through."""

    NAME = "stock"
    KINDS = ("inventory.stowed", "inventory.picked", "inventory.adjusted")
    METRICS = (UNITS_STOWED, UNITS_PICKED, ON_HAND, ADJUSTED)
    WATCHES = entity.PLACED

    windows: dict  # type: ignore[type-arg]
    current_start: cython.longlong
    current: dict  # type: ignore[type-arg]
    window: cython.longlong
    places: dict  # type: ignore[type-arg]
    stowed: core.Counts
    picked: core.Counts
    on_hand: core.Counts
    adjusted: core.Counts

    def __init__(self) -> None:
        self.windows = {}  # window start -> fc -> Part

    def attach(self) -> None:
        context = self.context
        self.window = context.window
        self.current_start, self.current = core.MIN_TS, {}  # the window of the last event
        self.places = {}  # admitted fc (None: beyond the label cap) -> Place
        self.stowed, self.picked = context.counts(UNITS_STOWED), context.counts(UNITS_PICKED)
        self.on_hand, self.adjusted = context.counts(ON_HAND), context.counts(ADJUSTED)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        place: Place | None = self.places.get(event.fc)
        if place is None:
            place = self.place(event.fc)
        qty: cython.longlong
        part: Part = self.place_part(place, ts)
        if kind == "inventory.picked":
            qty = event.qty
            self.picked.bump(place.picked, qty)
            self.on_hand.bump(place.on_hand, -qty)
            part.change -= qty
        elif kind == "inventory.stowed":
            qty = event.qty
            self.stowed.bump(place.stowed, qty)
            self.on_hand.bump(place.on_hand, qty)
            part.stowed += qty
            part.change += qty
        else:  # inventory.adjusted
            qty = event.delta
            self.on_hand.bump(place.on_hand, qty)
            part.change += qty
            if qty:
                self.adjusted.bump(place.up if qty > 0 else place.down, abs(qty))

    @cython.cfunc
    def place(self, fc: str) -> Place:
        """The Place of an fc not met yet, or of one beyond the label cap: those
        share one, kept under None, and ask for their label at each event (which
        counts the fold)."""
        label = self.context.label("fc", fc)
        key = None if label == OTHER else fc
        place: Place | None = self.places.get(key)
        if place is None:
            place = self.places[key] = Place()
            place.label, place.start = label, core.MIN_TS
            place.picked, place.stowed = self.picked.cell(label), self.stowed.cell(label)
            place.on_hand = self.on_hand.cell(label)
            place.up = self.adjusted.cell((label, "up"))
            place.down = self.adjusted.cell((label, "down"))
        return place

    @cython.cfunc
    def place_part(self, place: Place, ts: cython.longlong) -> Part:
        start: cython.longlong = ts - ts % self.window
        if place.start != start:
            place.part, place.start = self.part(ts, place.label), start
        return place.part

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        part: Part = self.part(order.placed, order.fc)
        part.ordered += order.units

    @cython.cfunc
    def part(self, ts: cython.longlong, fc: str) -> Part:
        start: cython.longlong = ts - ts % self.window
        if start != self.current_start:
            current: dict | None = self.windows.get(start)  # type: ignore[type-arg]
            if current is None:
                current = self.windows[start] = {}
            self.current_start, self.current = start, current
        part: Part | None = self.current.get(fc)
        if part is None:
            part = self.current[fc] = Part()
        return part

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """Partials of the windows ending at or before `end`: (start, fc, ordered,
        stowed, on-hand change), in window and fc order."""
        self.current_start = core.MIN_TS
        place: Place
        for place in self.places.values():
            place.start = core.MIN_TS  # its part left with its window
        rows = []
        part: Part
        for start in sorted([start for start in self.windows if start + self.window <= end]):
            parts = self.windows.pop(start)
            for fc in sorted(parts):
                part = parts[fc]
                rows.append((start, fc, part.ordered, part.stowed, part.change))
        return rows

    def export_state(self) -> Any:
        """{(window start, fc): [ordered, stowed, change]}"""
        state = {}
        part: Part
        for start, parts in self.windows.items():
            for fc, part in parts.items():
                state[start, fc] = [part.ordered, part.stowed, part.change]
        return state

    def restore_state(self, state: Any) -> None:
        self.windows = {}
        for (start, fc), counts in state.items():
            self.windows.setdefault(start, {})[fc] = Part(*counts)


class SellThrough:
    """The combine step of the stock family: sell-through and days of cover per fc
    and window, from every shard's partials. Plain Python: it runs once per
    window, not per event."""

    NAME: ClassVar[str] = Stock.NAME
    VERSION: ClassVar[int] = 1
    METRICS: ClassVar[tuple[Metric, ...]] = (SELL_THROUGH, COVER)

    def __init__(self, context: CombineContext) -> None:
        self.window = context.window
        self.series = context.series
        self.records = context.records
        self.pending: dict[int, dict[str, list[int]]] = {}
        self.on_hand: dict[str, int] = {}  # from every window combined so far
        self.latest: dict[str, tuple[int, float | None, float | None]] = {}

    def add(self, rows: list[tuple[int, str, int, int, int]]) -> None:
        """One shard's partials."""
        for start, fc, ordered, stowed, change in rows:
            part = self.pending.setdefault(start, {}).setdefault(fc, [0, 0, 0])
            part[0] += ordered
            part[1] += stowed
            part[2] += change

    def close(self, closed: int, out: list[Any]) -> None:
        """Every shard closed every window ending at or before `closed`. A window
        no shard saw an order or a stock move in has records too (its fcs sold 0
        of their stock); without records its gauges come from `publish` alone."""
        due: Sequence[int] = sorted(s for s in self.pending if s + self.window <= closed)
        if self.records and (self.latest or due):  # every window since the first
            last = max((s for s, _ratio, _cover in self.latest.values()), default=None)
            first = due[0] if last is None else last + self.window
            due = range(first, closed - self.window + 1, self.window)
        for start in due:
            self.combine(start, self.pending.pop(start, {}), out)
        self.publish(closed - self.window)

    def combine(self, start: int, parts: dict[str, list[int]], out: list[Any]) -> None:
        times = window_times(start, self.window) if self.records else ("", "")
        for fc in sorted(self.on_hand.keys() | parts.keys()):
            ordered, stowed, change = parts.get(fc, (0, 0, 0))
            before = self.on_hand.get(fc, 0)
            divisor = before + stowed
            # 0 sold of a negative divisor is 0.0, as a quiet window's gauge, not -0.0.
            sell_through = (ordered / divisor if ordered else 0.0) if divisor else None
            on_hand_end = before + change
            per_day = ordered * DAY / self.window
            cover = on_hand_end / per_day if ordered else None  # days
            self.on_hand[fc] = on_hand_end
            self.latest[fc] = (start, sell_through, cover)
            if not self.records:
                continue
            if sell_through is not None:
                out.append(record("sell_through", fc, times, sell_through, ordered, divisor))
            if cover is not None:
                out.append(record("days_of_cover", fc, times, cover, on_hand_end, per_day))

    def publish(self, latest_start: int) -> None:
        """Gauges show the latest closed window; a quiet window sells 0 of its stock."""
        sell_through: dict[str, float] = {}
        cover: dict[str, float] = {}
        for fc, on_hand in self.on_hand.items():
            start, ratio, days = self.latest[fc]
            if start != latest_start:
                ratio, days = (0.0 if on_hand else None), None
            if ratio is not None:
                sell_through[fc] = ratio
            if days is not None:
                cover[fc] = days * DAY / US_PER_SECOND
        self.series[SELL_THROUGH.name] = sell_through
        self.series[COVER.name] = cover

    def export_state(self) -> Any:
        return {"pending": self.pending, "on_hand": self.on_hand, "latest": self.latest}

    def restore_state(self, state: Any) -> None:
        self.pending, self.on_hand, self.latest = (
            state["pending"],
            state["on_hand"],
            state["latest"],
        )


def window_times(start: int, window: int) -> tuple[str, str]:
    """The window's start and end as record times, made once for all its records
    (a backfill's windows are each new text, ~1 µs a time)."""
    return format_time(start), format_time(start + window)


def record(
    kpi: str,
    owner: str,
    times: tuple[str, str],
    value: float,
    numerator: float,
    divisor: float,
    label: str = "fc",
) -> KpiRecord:
    """A ratio KPI record (contract §5) of an fc (or of what `label` names, such
    as a widget) for the window of `times`, keyed `kpi|owner|window_start`. Its
    figures are floats in both builds (the compiled one takes them as C doubles)."""
    window_start, window_end = times
    return KpiRecord(
        f"{kpi}|{key_part(owner)}|{window_start}",
        {
            "kpi": kpi,
            label: owner,
            "window_start": window_start,
            "window_end": window_end,
            "value": value,
            "numerator": float(numerator),
            "divisor": float(divisor),
        },
    )
