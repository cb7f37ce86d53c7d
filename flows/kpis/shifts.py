# cython: language_level=3
"""Throughput per shift (contract §3.3): per fc and closed shift instance, units
picked, orders shipped, and units picked per hour of the instance's real length.

A pick counts by its own ts and fc (whether or not its order exists); an order
by its earliest shipment, placed by the later of that shipment's ts and the
order's placed ts (§2), with that shipment's fc. Both times are at or after W
when they change a count, so an instance's counts are final once W reaches its
end, and an earliest shipment that moves earlier moves its count between open
instances. Picks travel with their order, so each shard counts per (fc,
instance) and reports an instance once its W reaches the instance's end. Every
shard reports at every instance end of every calendar in the settings, so the
combine step (`ShiftThroughput`) finalises an instance as soon as the least W
of all shards reaches its end, whichever shards counted it: a `shift` record
for every closed instance from the one holding the fc's first pick or
shipment on (idle ones with zeros), and gauges of each named shift's latest
closed instance.
"""

from __future__ import annotations

from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.calendar import Calendar, Calendars, Shift
from flows.declare import GAUGE, Metric, metric
from flows.kpisettings import KpiSettings
from flows.runtime.combine import CombineContext
from flows.runtime.outputs import KpiRecord, key_part
from flows.timeutil import format_time

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core

UNITS_PICKED = metric(
    "cockpit_shift_units_picked",
    GAUGE,
    "Units picked in the latest closed instance of each shift.",
    ("fc", "shift"),
    group="fulfilment",
    contract=True,
)
ORDERS_SHIPPED = metric(
    "cockpit_shift_orders_shipped",
    GAUGE,
    "Orders whose earliest shipment fell in the latest closed instance of each shift.",
    ("fc", "shift"),
    group="fulfilment",
    contract=True,
)
PICKED_PER_HOUR = metric(
    "cockpit_shift_units_picked_per_hour",
    GAUGE,
    "Units picked per hour of the latest closed instance of each shift (its real length).",
    ("fc", "shift"),
    group="fulfilment",
    contract=True,
)


@cython.final
@cython.cclass
class Tally:
    """One fc's counts in one shift instance [start, end) on a shard."""

    fc: str
    start: cython.longlong
    end: cython.longlong
    units: cython.longlong
    shipped: cython.longlong
    orders: list  # type: ignore[type-arg]  # ids counted here (some may have moved since)

    def __init__(self, fc: str, start: int, end: int) -> None:
        self.fc, self.start, self.end = fc, start, end
        self.units = self.shipped = 0
        self.orders = []


@cython.cclass
class Shifts(entity.OrderWatcher):
    """The shard side: counts per fc and shift instance until W reaches its end."""

    NAME = "shifts"
    KINDS = ("inventory.picked",)
    WATCHES = entity.SHIPPED | entity.SHIPMENT_FINAL

    calendars: object  # Calendars: each fc's, made on first use
    every: list  # type: ignore[type-arg]  # each distinct calendar of the settings
    tallies: dict  # type: ignore[type-arg]
    current: dict  # type: ignore[type-arg]
    shipments: dict  # type: ignore[type-arg]

    def __init__(self) -> None:
        self.tallies = {}  # (fc, instance start) -> Tally, until reported
        self.shipments = {}  # order id -> the Tally counting its earliest shipment

    def attach(self) -> None:
        kpi = self.context.config.kpi
        self.calendars = Calendars(kpi)
        self.every = every_calendar(kpi)
        self.current = {}  # fc -> its latest Tally: most events fall into it
        self.report_at = core.MIN_TS  # at once; then at each instance end

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        tally: Tally = self.tally(event.fc, ts)
        qty: cython.longlong = event.qty
        tally.units += qty

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        """The earliest shipment is new or moved earlier: count the order where it
        now falls, and no longer where it fell (an instance still open). Once it is
        final, an order that left state first is taken back (as the orders family
        never counts it); its instance is still open, as W has just reached it."""
        counted: Tally | None = None
        if change & entity.SHIPMENT_FINAL:
            if order.gone:
                counted = self.shipments.pop(order_id, None)
                if counted is not None:
                    counted.shipped -= 1
            return
        placed: cython.longlong = max(order.shipped, order.placed)
        tally: Tally = self.tally(event.fc, placed)
        if not change & entity.FIRST_SHIPMENT:  # else an entry left by an earlier life
            counted = self.shipments.get(order_id)
        if counted is tally:
            return
        if counted is not None:
            counted.shipped -= 1
        tally.shipped += 1
        tally.orders.append(order_id)
        self.shipments[order_id] = tally

    @cython.cfunc
    def tally(self, fc: str, ts: cython.longlong) -> Tally:
        """The counts of the fc's instance holding ts: one calendar look-up at most."""
        found: Tally | None = self.current.get(fc)
        if found is not None and found.start <= ts < found.end:
            return found
        shift: Shift = self.calendars[fc].instance_at(ts)  # type: ignore[index]
        key = (fc, shift.start_us)
        found = self.tallies.get(key)
        if found is None:
            found = self.tallies[key] = Tally(fc, shift.start_us, shift.end_us)
        self.current[fc] = found
        return found

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """(fc, instance start, units picked, orders shipped) of every instance that
        ended at or before W and counted anything; the next report is due at the
        next instance end of any calendar."""
        watermark: cython.longlong = self.context.watermark
        tally: Tally
        rows = []
        for key in sorted([key for key, open_ in self.tallies.items() if open_.end <= watermark]):
            tally = self.tallies.pop(key)
            for order_id in tally.orders:
                if self.shipments.get(order_id) is tally:
                    del self.shipments[order_id]
            if tally.units or tally.shipped:
                rows.append((tally.fc, tally.start, tally.units, tally.shipped))
        self.current = {}
        next_end: cython.longlong = core.MAX_TS
        for calendar in self.every:
            next_end = min(next_end, calendar.instance_at(watermark).end_us)
        self.report_at = next_end
        return rows

    def export_state(self) -> Any:
        """Open instances' counts, and where each order's earliest shipment counts."""
        return {
            "tallies": [
                (tally.fc, tally.start, tally.end, tally.units, tally.shipped)
                for tally in self.tallies.values()
            ],
            "shipments": {
                order_id: (tally.fc, tally.start) for order_id, tally in self.shipments.items()
            },
        }

    def restore_state(self, state: Any) -> None:
        self.tallies, self.shipments = {}, {}
        tally: Tally
        for fc, start, end, units, shipped in state["tallies"]:
            tally = self.tallies[fc, start] = Tally(fc, start, end)
            tally.units, tally.shipped = units, shipped
        for order_id, key in state["shipments"].items():
            tally = self.shipments[order_id] = self.tallies[key]
            tally.orders.append(order_id)


def every_calendar(kpi: KpiSettings) -> list[Calendar]:
    """One calendar per distinct time zone and shifts: the default and each fc's own."""
    settings = {(kpi.time_zone, kpi.shifts)} | {kpi.calendar(fc) for fc, _ in kpi.fcs}
    return [Calendar.from_settings(zone, shifts) for zone, shifts in sorted(settings)]


class ShiftThroughput:
    """The combine step: every shard's counts per fc and instance, finalised once
    the least W of all shards reaches the instance's end. Plain Python: it runs per
    report, not per event."""

    NAME: ClassVar[str] = Shifts.NAME
    VERSION: ClassVar[int] = 1
    METRICS: ClassVar[tuple[Metric, ...]] = (UNITS_PICKED, ORDERS_SHIPPED, PICKED_PER_HOUR)

    def __init__(self, context: CombineContext) -> None:
        self.context = context
        self.calendars = Calendars(context.kpi)
        self.pending: dict[tuple[str, int], list[int]] = {}  # (fc, start) -> [units, orders]
        self.next: dict[str, int] = {}  # fc -> start of its next instance to finalise
        self.latest: dict[tuple[str, str], tuple[int, int, float]] = {}  # (fc, shift) ->

    def add(self, rows: list[tuple[str, int, int, int]]) -> None:
        """One shard's counts of instances that ended at or before its W. An fc
        starts at its earliest: no row of an earlier instance can come once the
        least W passed that instance's end."""
        for fc, start, units, shipped in rows:
            counts = self.pending.setdefault((fc, start), [0, 0])
            counts[0] += units
            counts[1] += shipped
            if start < self.next.get(fc, core.MAX_TS):
                self.next[fc] = start

    def close(self, closed: int, out: list[Any]) -> None:
        """Windows mean nothing here: instances close as W passes their ends."""

    def follow(self, watermark: int, out: list[Any]) -> None:
        """Every instance that ended at or before the least W of all shards: its
        record, and its shift's gauges."""
        finalised = False
        for fc in sorted(self.next):
            calendar = self.calendars[fc]
            shift = calendar.instance_at(self.next[fc])
            while shift.end_us <= watermark:
                units, shipped = self.pending.pop((fc, shift.start_us), (0, 0))
                if self.context.records:
                    out.append(record(fc, shift, units, shipped))
                self.latest[fc, shift.name] = (units, shipped, units / shift.hours)
                shift = calendar.instance_at(shift.end_us)
                finalised = True
            self.next[fc] = shift.start_us
        if finalised:
            self.publish()

    def publish(self) -> None:
        """Each shift's latest closed instance per fc; fcs folded into one label
        (`other`) add up."""
        gauges: tuple[dict[Any, Any], ...] = ({}, {}, {})
        for (fc, name), values in sorted(self.latest.items()):
            key = (self.context.label("fc", fc), name)
            for gauge, value in zip(gauges, values, strict=True):
                gauge[key] = gauge.get(key, 0) + value
        for gauge_metric, gauge in zip(self.METRICS, gauges, strict=True):
            self.context.series[gauge_metric.name] = gauge

    def export_state(self) -> Any:
        return {"pending": self.pending, "next": self.next, "latest": self.latest}

    def restore_state(self, state: Any) -> None:
        self.pending, self.next, self.latest = state["pending"], state["next"], state["latest"]


def record(fc: str, shift: Shift, units: int, shipped: int) -> KpiRecord:
    """A `shift` record (contract §5), keyed `shift|fc|window_start`."""
    window_start = format_time(shift.start_us)
    hours = shift.hours
    return KpiRecord(
        f"shift|{key_part(fc)}|{window_start}",
        {
            "kpi": "shift",
            "fc": fc,
            "shift": shift.name,
            "window_start": window_start,
            "window_end": format_time(shift.end_us),
            "hours": hours,
            "units_picked": units,
            "orders_shipped": shipped,
            "value": units / hours,
        },
    )
