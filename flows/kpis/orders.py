# cython: language_level=3
"""Orders and the ship SLA (contract §3.1), per fc of the order.

An order is on time if its earliest shipment has ts <= its ship promise S. It
is breached if it was neither shipped nor cancelled at ts <= S and W has passed
S, or it shipped late: decided once W > S (every event with ts <= S has
arrived), counted once, with a `ship_sla_breach` alert. A shipment is counted
in `cockpit_orders_shipped_total` once it is final (W passed it, or the input
ended at it: the order entity tells), while the order is still in the order book, with the order's
cycle time and its line units in `cockpit_units_shipped_total` (both by the fc of
that shipment). Orders awaiting shipment are counted by stage as events arrive.
"""

from __future__ import annotations

from typing import Any

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, CYCLE_BUCKETS, GAUGE, HISTOGRAM, metric
from flows.entities.orders import STAGE_NAMES
from flows.timeutil import US_PER_SECOND

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core

UNITS_ORDERED = metric(
    "cockpit_units_ordered_total",
    COUNTER,
    "Units ordered.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
ORDERS_PLACED = metric(
    "cockpit_orders_placed_total",
    COUNTER,
    "Orders placed (first order.placed of an order).",
    ("fc",),
    group="fulfilment",
    contract=True,
)
UNITS_SHIPPED = metric(
    "cockpit_units_shipped_total",
    COUNTER,
    "Line units of orders at their first shipment, by the fc of that shipment.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
SHIPPED = metric(
    "cockpit_orders_shipped_total",
    COUNTER,
    "Orders shipped, by first shipment on time.",
    ("fc", "on_time"),
    group="fulfilment",
    contract=True,
)
BREACHES = metric(
    "cockpit_ship_sla_breaches_total",
    COUNTER,
    "Orders that breached their ship promise.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
AWAITING = metric(
    "cockpit_orders_awaiting_shipment",
    GAUGE,
    "Orders placed, not shipped, not cancelled.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
PAST_PROMISE = metric(
    "cockpit_orders_past_ship_promise",
    GAUGE,
    "Orders awaiting shipment whose ship promise has passed.",
    ("fc",),
    group="fulfilment",
    contract=True,
)
IN_STAGE = metric(
    "cockpit_orders_in_stage",
    GAUGE,
    "Orders awaiting shipment by stage: placed (not picked), picked, packed.",
    ("fc", "stage"),
    group="fulfilment",
)
CYCLE = metric(
    "cockpit_order_cycle_seconds",
    HISTOGRAM,
    "Time from order placed to first shipment.",
    ("fc",),
    unit="s",
    buckets=CYCLE_BUCKETS,
    group="fulfilment",
)

# Its bits of Order.flags (above its flag_shift), and its timer.
DECIDED = cython.declare(cython.longlong, 1)  # W passed the ship promise
COUNTED = cython.declare(cython.longlong, 2)  # the earliest shipment is counted
PAST = cython.declare(cython.longlong, 4)  # in the past-promise gauge
T_DEADLINE = cython.declare(cython.longlong, 0)


@cython.cclass
class Orders(entity.OrderWatcher):
    """Units ordered, shipments, breaches and the backlog by stage."""

    NAME = "orders"
    VERSION = 2  # 1: its own timer at each earliest shipment
    METRICS = (
        UNITS_ORDERED,
        ORDERS_PLACED,
        SHIPPED,
        UNITS_SHIPPED,
        BREACHES,
        AWAITING,
        PAST_PROMISE,
        IN_STAGE,
        CYCLE,
    )
    FLAG_BITS = 3
    HOLDS = True
    WATCHES = (
        entity.PLACED
        | entity.SHIPPED
        | entity.CANCELLED
        | entity.PICKED
        | entity.PACKED
        | entity.EXPIRED
        | entity.SHIPMENT_FINAL
    )

    units_ordered: core.Counts
    placed: core.Counts
    shipped: core.Counts
    units_shipped: core.Counts
    breaches: core.Counts
    awaiting: core.Counts
    past_promise: core.Counts
    in_stage: core.Counts
    cycle: core.Histogram
    stage_cells: dict  # type: ignore[type-arg]

    def attach(self) -> None:
        counts = self.context.counts
        self.units_ordered, self.shipped = counts(UNITS_ORDERED), counts(SHIPPED)
        self.placed, self.units_shipped = counts(ORDERS_PLACED), counts(UNITS_SHIPPED)
        self.breaches, self.awaiting = counts(BREACHES), counts(AWAITING)
        self.past_promise, self.in_stage = counts(PAST_PROMISE), counts(IN_STAGE)
        self.cycle = self.context.histogram(CYCLE)
        self.stage_cells = {}  # fc -> (its cell of `awaiting`, its cells of `in_stage`...)

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        if change & entity.SHIPMENT_FINAL:
            if not order.gone:  # else every family let it go, or it expired: not counted
                self.count_shipment(order)
                self.settle(order_id, order)
            return
        if change & entity.PLACED:
            self.units_ordered.add(order.fc, order.units)
            self.placed.add(order.fc)
            self.after(order.ship_by, T_DEADLINE, order_id, order)
        after: cython.int = entity.NO_STAGE if change & entity.EXPIRED else order.stage()
        if after != before:
            self.restage(order, before, after)
        if change & entity.CANCELLED:
            self.settle(order_id, order)

    @cython.cfunc
    def restage(self, order: entity.Order, before: cython.int, after: cython.int) -> None:
        """Move the order between stages; awaiting shipment is any stage."""
        fc = order.fc
        cells: tuple | None = self.stage_cells.get(fc)  # type: ignore[type-arg]
        if cells is None:
            stages = [self.in_stage.cell((fc, name)) for name in STAGE_NAMES[1:]]
            cells = self.stage_cells[fc] = (self.awaiting.cell(fc), *stages)  # by stage
        if before != entity.NO_STAGE:
            self.in_stage.bump(cells[before], -1)
        if after != entity.NO_STAGE:
            self.in_stage.bump(cells[after], 1)
        if before == entity.NO_STAGE:
            self.awaiting.bump(cells[0], 1)
        elif after == entity.NO_STAGE:
            self.awaiting.bump(cells[0], -1)
            if self.has(order, PAST):
                self.clear(order, PAST)
                self.past_promise.add(fc, -1)

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        """W passed the ship promise (its one timer)."""
        order: entity.Order = self.order_of(key, ref)
        if order is not None:
            self.deadline(key, order)

    @cython.cfunc
    def deadline(self, order_id: str, order: entity.Order) -> None:
        """W passed the ship promise: events with ts <= promise can no longer arrive."""
        self.set(order, DECIDED)
        ship_by: cython.longlong = order.ship_by
        if order.shipped > ship_by and order.cancelled > ship_by:
            self.breaches.add(order.fc)
            breach = self.alert(
                "ship_sla_breach", order_id, order, ship_by, "shipped_ts", order.shipped
            )
            self.context.emit(breach)
        if order.shipped == core.NEVER and order.cancelled == core.NEVER:
            self.set(order, PAST)
            self.past_promise.add(order.fc)
        self.settle(order_id, order)

    @cython.cfunc
    def count_shipment(self, order: entity.Order) -> None:
        self.set(order, COUNTED)
        on_time = "true" if order.shipped <= order.ship_by else "false"
        self.shipped.add((order.ship_fc, on_time))
        self.units_shipped.add(order.ship_fc, order.units)
        seconds: cython.double = (order.shipped - order.placed) / US_PER_SECOND
        self.cycle.observe(order.fc, seconds)

    @cython.cfunc
    def settle(self, order_id: str, order: entity.Order) -> None:
        """Let the order go once its SLA is decided and its shipment counted (or it
        was cancelled): no event can change this family's outcomes any more."""
        if self.has(order, DECIDED) and (
            order.cancelled != core.NEVER
            or (order.shipped != core.NEVER and self.has(order, COUNTED))
        ):
            self.release(order_id, order)
