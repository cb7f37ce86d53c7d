# cython: language_level=3
"""Deliveries and late deliveries (contract §3.1), per region of the order.

The first `delivered` update decides: late if its ts is after the delivery
promise Dd. A non-cancelled order still undelivered when W passes Dd is late
from that moment. Either way a late order is counted once, exactly when W
passes Dd, with a `late_delivery` alert; an on-time delivery counts at once.
"""

from __future__ import annotations

from typing import Any

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, GAUGE, metric

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core
from flows.events import DELIVERY_STATUSES

DELIVERIES = metric(
    "cockpit_deliveries_total",
    COUNTER,
    "Orders delivered, by first delivery on time.",
    ("region", "on_time"),
    group="customer",
    contract=True,
)
LATE_DELIVERIES = metric(
    "cockpit_late_deliveries_total",
    COUNTER,
    "Orders late for their delivery promise.",
    ("region",),
    group="customer",
    contract=True,
)
PAST_PROMISE = metric(
    "cockpit_orders_past_delivery_promise",
    GAUGE,
    "Orders not delivered, not cancelled, past their delivery promise.",
    ("region",),
    group="customer",
    contract=True,
)
UPDATES = metric(
    "cockpit_delivery_updates_total",
    COUNTER,
    "Carrier delivery updates by status.",
    ("status",),
    group="customer",
    known=DELIVERY_STATUSES,
)

# Its bits of Order.flags (above its flag_shift), and its timer.
DECIDED = cython.declare(cython.longlong, 1)  # W passed the delivery promise
COUNTED = cython.declare(cython.longlong, 2)  # the first delivery is counted
PAST = cython.declare(cython.longlong, 4)  # in the past-promise gauge
T_DEADLINE = cython.declare(cython.longlong, 0)


@cython.cclass
class Deliveries(entity.OrderWatcher):
    """Deliveries on time and late, and orders past their delivery promise."""

    NAME = "deliveries"
    KINDS = ("delivery.updated",)
    METRICS = (DELIVERIES, LATE_DELIVERIES, PAST_PROMISE, UPDATES)
    FLAG_BITS = 3
    HOLDS = True
    WATCHES = entity.PLACED | entity.FIRST_CANCELLATION | entity.DELIVERED | entity.EXPIRED

    deliveries: core.Counts
    late: core.Counts
    past_promise: core.Counts
    updates: core.Counts

    def attach(self) -> None:
        counts = self.context.counts
        self.deliveries, self.late = counts(DELIVERIES), counts(LATE_DELIVERIES)
        self.past_promise, self.updates = counts(PAST_PROMISE), counts(UPDATES)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        self.updates.add(event.status)

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        if change & entity.PLACED:
            self.after(order.deliver_by, T_DEADLINE, order_id, order)
            return
        self.leave_past_promise(order)
        if change & entity.DELIVERED and not self.has(order, COUNTED):
            if order.delivered <= order.deliver_by:
                self.count(order, True)
            elif self.has(order, DECIDED):
                self.count(order, False)
        if not change & entity.EXPIRED:
            self.settle(order_id, order)

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        """W passed the delivery promise."""
        order: entity.Order = self.order_of(key, ref)
        if order is None:
            return
        self.set(order, DECIDED)
        deliver_by: cython.longlong = order.deliver_by
        if order.delivered > deliver_by and order.cancelled > deliver_by:
            self.late.add(order.region)
            late = self.alert(
                "late_delivery", key, order, deliver_by, "delivered_ts", order.delivered
            )
            self.context.emit(late)
        if order.delivered != core.NEVER and not self.has(order, COUNTED):
            self.count(order, False)
        if order.delivered == core.NEVER and order.cancelled == core.NEVER:
            self.set(order, PAST)
            self.past_promise.add(order.region)
        self.settle(key, order)

    @cython.cfunc
    def count(self, order: entity.Order, on_time: cython.bint) -> None:
        self.set(order, COUNTED)
        self.deliveries.add((order.region, "true" if on_time else "false"))

    @cython.cfunc
    def leave_past_promise(self, order: entity.Order) -> None:
        if self.has(order, PAST):
            self.clear(order, PAST)
            self.past_promise.add(order.region, -1)

    @cython.cfunc
    def settle(self, order_id: str, order: entity.Order) -> None:
        """Let the order go once its delivery is decided and known (or it was cancelled)."""
        if self.has(order, DECIDED) and (
            order.cancelled != core.NEVER or order.delivered != core.NEVER
        ):
            self.release(order_id, order)
