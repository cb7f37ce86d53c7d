# cython: language_level=3
"""Customer experience per closed window (contract §3.4): the cancellation,
return and click-through ratios, and cancelled orders and returned units by
reason.

Shards count each window's numerators and divisors per fc (or widget); the
combine step adds every shard's once all of them closed the window. Orders are
sharded by order id, so an order's parts all come from one shard.

- Orders placed count in the window of their placed ts, with the order's fc.
- An order's cancellation is decided once W passes its earliest cancellation c:
  no earlier cancellation, and no shipment at or before c, can arrive after
  that. It counts once in `cockpit_orders_cancelled_total{fc, reason}` with the
  reason of that cancellation (of two at c, the smaller event id's) and,
  when c is earlier than the earliest shipment, as cancelled before shipping in
  the window of the later of c and the placed ts (§2).
- An order's line units count as shipped once its earliest shipment s is final
  (W passed it, or the input ended at it: no earlier one, nor one at s with a
  smaller event id, can arrive then; the order entity tells), in
  the window of the later of s and the placed ts, with that shipment's fc.
  Both decisions come before the window they fall into closes, so each
  window's parts are exact however the earliest times move while it is open.
- Returns, impressions and clicks count in the window of their own ts (a return
  with its own fc, whether or not its order is known).
"""

from __future__ import annotations

from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, GAUGE, Metric, metric
from flows.kpis.stock import record, window_times
from flows.labels import UNKNOWN
from flows.runtime.combine import CombineContext

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core

CANCELLED = metric(
    "cockpit_orders_cancelled_total",
    COUNTER,
    "Orders cancelled.",
    ("fc", "reason"),
    group="fulfilment",
)
RETURNED = metric(
    "cockpit_units_returned_total",
    COUNTER,
    "Units returned by customers.",
    ("fc", "reason"),
    group="inventory",
)
CANCELLATION_RATIO = metric(
    "cockpit_cancellation_ratio",
    GAUGE,
    "Orders cancelled before shipping / orders placed, latest closed window.",
    ("fc",),
    unit="percentunit",
    group="customer",
    contract=True,
)
RETURN_RATIO = metric(
    "cockpit_return_ratio",
    GAUGE,
    "Units returned / units shipped, latest closed window.",
    ("fc",),
    unit="percentunit",
    group="customer",
    contract=True,
)
CLICK_THROUGH = metric(
    "cockpit_recommendation_click_through_ratio",
    GAUGE,
    "Recommendation clicks / impressions, latest closed window.",
    ("widget",),
    unit="percentunit",
    group="customer",
    contract=True,
)

# The ratios, by their index in a window's parts: (record kind, gauge, label).
RATIOS = (
    ("cancellation_ratio", CANCELLATION_RATIO, "fc"),
    ("return_ratio", RETURN_RATIO, "fc"),
    ("click_through_ratio", CLICK_THROUGH, "widget"),
)
CANCELLATIONS = cython.declare(cython.int, 0)
RETURNS = cython.declare(cython.int, 1)
CLICKS = cython.declare(cython.int, 2)
T_CANCELLATION = cython.declare(cython.longlong, 0)


@cython.final
@cython.no_gc  # two ints
@cython.cclass
class Ratio:
    """A shard's numerator and divisor of one ratio, window and fc (or widget)."""

    numerator: cython.longlong
    divisor: cython.longlong

    def __init__(self, numerator: int = 0, divisor: int = 0) -> None:
        self.numerator, self.divisor = numerator, divisor


@cython.inline
@cython.cfunc
def later(a: cython.longlong, b: cython.longlong) -> cython.longlong:
    return a if a > b else b


@cython.cclass
class Customer(entity.OrderWatcher):
    """The shard side: each window's parts of the three ratios, and the reason
    counters."""

    NAME = "customer"
    # 2: a cancellation's timer held its reason as a label; 1: its own timer at each
    # earliest shipment
    VERSION = 3
    KINDS = ("return.received", "recommendation.shown", "recommendation.clicked")
    METRICS = (CANCELLED, RETURNED)
    WATCHES = entity.PLACED | entity.CANCELLED | entity.SHIPMENT_FINAL
    # It holds an order only while a cancellation awaits its decision: a shipment
    # at or before that cancellation may still arrive, and must find the order.
    HOLDS_ON = entity.CANCELLED

    windows: dict  # type: ignore[type-arg]
    current_start: cython.longlong
    current: list  # type: ignore[type-arg]
    window: cython.longlong
    fcs: dict  # type: ignore[type-arg]
    widgets: dict  # type: ignore[type-arg]
    reasons: dict  # type: ignore[type-arg]
    cancelled: core.Counts
    returned: core.Counts

    def __init__(self) -> None:
        self.windows = {}  # window start -> [{fc or widget: Ratio}] by ratio

    def attach(self) -> None:
        context = self.context
        self.window = context.window
        self.current_start, self.current = core.MIN_TS, []  # the window of the last part
        self.fcs, self.widgets = context.known_values("fc"), context.known_values("widget")
        self.reasons = context.known_values("reason")
        self.cancelled, self.returned = context.counts(CANCELLED), context.counts(RETURNED)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        ratio: Ratio
        if kind == "return.received":
            fc = self.fcs.get(event.fc) or self.context.label("fc", event.fc)
            qty: cython.longlong = event.qty
            self.returned.add((fc, self.reason(event.reason)), qty)
            ratio = self.part(ts, RETURNS, fc)
            ratio.numerator += qty
            return
        # The storefront family counts this event's use of its widget label.
        widget = self.widgets.get(event.widget) or self.context.labels.fold("widget", event.widget)
        ratio = self.part(ts, CLICKS, widget)
        if kind == "recommendation.shown":
            ratio.divisor += 1
        else:
            ratio.numerator += 1

    @cython.cfunc
    def reason(self, reason: Any) -> str:
        """A reason label: `unknown` when the event has none."""
        if reason is None:
            reason = UNKNOWN
        label: str = self.reasons.get(reason) or self.context.label("reason", reason)
        return label

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        ratio: Ratio
        if change & entity.PLACED:
            ratio = self.part(order.placed, CANCELLATIONS, order.fc)
            ratio.divisor += 1
        elif change & entity.CANCELLED:  # a new earliest cancellation (it holds the order)
            # Its reason as the event spells it: folded into a label only if it
            # decides (one that another replaces takes no place under the cap).
            decision = (order, order.cancelled, event.reason, order.cancel_id)
            self.after(order.cancelled, T_CANCELLATION, order_id, decision)
        elif not order.gone:  # the earliest shipment is final (an order gone first: not shipped)
            fc: str = cython.cast(str, order.ship_fc)
            ratio = self.part(later(order.shipped, order.placed), RETURNS, fc)
            ratio.divisor += order.units

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        """W passed an earliest cancellation (its one timer, ref (order, ts, reason,
        event id), and True after them where an earlier release had made the reason
        a label); one an earlier one replaced since (or one at its ts with a smaller
        event id) decides nothing. The order may have left the order book: its facts
        are final."""
        order: entity.Order = ref[0]
        when: cython.longlong = ref[1]
        ratio: Ratio
        if order.cancelled != when or ref[3] != order.cancel_id:
            return
        self.cancelled.add((order.fc, ref[2] if len(ref) > 4 else self.reason(ref[2])))
        if when < order.shipped:
            ratio = self.part(later(when, order.placed), CANCELLATIONS, order.fc)
            ratio.numerator += 1
        self.release(key, order)

    @cython.cfunc
    def part(self, ts: cython.longlong, index: cython.int, owner: str) -> Ratio:
        """The parts of one ratio in the window of `ts`, for an fc or widget."""
        start: cython.longlong = ts - ts % self.window
        if start != self.current_start:
            parts: list | None = self.windows.get(start)  # type: ignore[type-arg]
            if parts is None:
                parts = self.windows[start] = [{} for _ in RATIOS]
            self.current_start, self.current = start, parts
        ratios: dict = self.current[index]  # type: ignore[type-arg]
        ratio: Ratio | None = ratios.get(owner)
        if ratio is None:
            ratio = ratios[owner] = Ratio()
        return ratio

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """(window start, kpi, fc or widget, numerator, divisor) of each window
        ending at or before `end`, in order."""
        self.current_start = core.MIN_TS
        rows = []
        ratio: Ratio
        for start in sorted([start for start in self.windows if start + self.window <= end]):
            parts = self.windows.pop(start)
            for index, ratios in enumerate(parts):
                kpi = RATIOS[index][0]
                for owner in sorted(ratios):
                    ratio = ratios[owner]
                    rows.append((start, kpi, owner, ratio.numerator, ratio.divisor))
        return rows

    def export_state(self) -> Any:
        """{window start: [{fc or widget: (numerator, divisor)}] by ratio}"""
        state: dict[int, list[dict[str, tuple[int, int]]]] = {}
        ratio: Ratio
        for start, parts in self.windows.items():
            saved = state[start] = [{} for _ in RATIOS]
            for index, ratios in enumerate(parts):
                for owner, ratio in ratios.items():
                    saved[index][owner] = (ratio.numerator, ratio.divisor)
        return state

    def restore_state(self, state: Any) -> None:
        self.windows = {
            start: [{owner: Ratio(*pair) for owner, pair in ratios.items()} for ratios in parts]
            for start, parts in state.items()
        }


class CustomerRatios:
    """The combine step: every shard's parts per window; a record per window and
    fc (or widget) whose divisor is not 0, and gauges of the latest closed window
    (absent where the ratio is not set there). Plain Python: it runs once per
    window, not per event."""

    NAME: ClassVar[str] = Customer.NAME
    VERSION: ClassVar[int] = 1
    METRICS: ClassVar[tuple[Metric, ...]] = tuple(gauge for _kpi, gauge, _label in RATIOS)

    def __init__(self, context: CombineContext) -> None:
        self.window = context.window
        self.series = context.series
        self.records = context.records
        self.pending: dict[int, dict[tuple[str, str], list[int]]] = {}

    def add(self, rows: list[tuple[int, str, str, int, int]]) -> None:
        """One shard's parts."""
        for start, kpi, owner, numerator, divisor in rows:
            part = self.pending.setdefault(start, {}).setdefault((kpi, owner), [0, 0])
            part[0] += numerator
            part[1] += divisor

    def close(self, closed: int, out: list[Any]) -> None:
        """Every shard closed every window ending at or before `closed`."""
        latest = closed - self.window
        gauges: dict[str, dict[str, float]] = {gauge.name: {} for gauge in self.METRICS}
        kinds = {kpi: (gauge.name, label) for kpi, gauge, label in RATIOS}
        for start in sorted(s for s in self.pending if s + self.window <= closed):
            times = window_times(start, self.window) if self.records else ("", "")
            for (kpi, owner), (numerator, divisor) in sorted(self.pending.pop(start).items()):
                if divisor == 0:
                    continue  # not set
                value = numerator / divisor
                gauge, label = kinds[kpi]
                if self.records:
                    out.append(record(kpi, owner, times, value, numerator, divisor, label))
                if start == latest:
                    gauges[gauge][owner] = value
        self.series.update(gauges)

    def export_state(self) -> Any:
        return self.pending

    def restore_state(self, state: Any) -> None:
        self.pending = state
