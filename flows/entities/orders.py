# cython: language_level=3
"""The order entity: each order's facts, kept once for every family that reads them.

An order exists from its first accepted `order.placed` (a repeated one is
ignored). Its facts are the earliest time of each later step: shipment (and the
fc it shipped from), cancellation, delivery, pick and pack, `NEVER` until known.
Once W passes the earliest shipment, or a finite input ends at it, it is final
(an earlier one, or one at its ts with a smaller event id, would be late): the
entity keeps the one timer for it, and tells its watchers once.
Events of an order not placed (yet) are held, and apply as if they came after
it when it is placed; held events still unclaimed when W passes their ts + the
orphan horizon are dropped and counted.

Families watching orders (`OrderWatcher`) are told what changed, with the stage
the order was in before (and, in `OrderBook.previous`, the time the changed fact
had before). Of two cancellations, or shipments, at one ts, the one with the
smaller event id is the earliest (§2: events in (ts, event_id) order); watchers
hear of it again.
Each claims bits of `Order.flags` for what it decided, and a bit of
`Order.pending` it clears once no event can change its outcomes; the order
leaves state when every watcher has let it go, or when W passes its
later promise plus the retention (`--retention`).

Runs interpreted, and compiled by Cython from this same source (`orders.pxd`).
"""

from __future__ import annotations

from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.entities import ENTITY_METRICS, ORPHAN_EVENTS, STATE_EXPIRED
from flows.runtime.ids import key_table
from flows.runtime.outputs import Alert, key_part
from flows.timeutil import format_time

if cython.compiled:
    from cython.cimports.flows.runtime import core
else:
    from flows.runtime import core

    # What changed, as bits of `on_order(change, ...)` (C constants in orders.pxd).
    PLACED = 1
    SHIPPED = 2  # the earliest shipment moved (FIRST_SHIPMENT too when there was none)
    FIRST_SHIPMENT = 4
    CANCELLED = 8
    FIRST_CANCELLATION = 16
    DELIVERED = 32
    FIRST_DELIVERY = 64
    PICKED = 128
    PACKED = 256
    EXPIRED = 512  # dropped by the retention: the order leaves every gauge
    SHIPMENT_FINAL = 1024  # W passed the earliest shipment (told once)
    # Where an order awaiting shipment stands, from its facts (`Order.stage`).
    NO_STAGE = 0
    STAGE_PLACED = 1
    STAGE_PICKED = 2
    STAGE_PACKED = 3
    # The order book's timers.
    T_ORPHANS = 0
    T_RETENTION = 1
    T_SHIPMENT = 2

STAGE_NAMES = ("", "placed", "picked", "packed")
ORDER_KINDS = (
    "order.placed",
    "order.cancelled",
    "order.shipped",
    "delivery.updated",
    "inventory.picked",
    "inventory.packed",
)
FIELDS = (
    "fc",
    "region",
    "placed",
    "ship_by",
    "deliver_by",
    "units",
    "shipped",
    "ship_fc",
    "cancelled",
    "delivered",
    "picked",
    "packed",
    "flags",
    "pending",
    "gone",
    "final",
    "named",
    "cancel_id",
    "ship_id",
)
# Each state version added fields at the end: snapshots at version 1 hold the
# first 15 (`final` is set by the upgrade), at version 2 the first 16 or 17: a
# cancellation or shipment restored without its event id keeps its reason or fc
# against a tie.


@cython.no_gc  # strings and ints only: never in a cycle, so never scanned
@cython.final
@cython.cclass
class Order:
    """The facts of one order; times in µs, `NEVER` for what has not happened."""

    fc: str
    region: str
    placed: cython.longlong
    ship_by: cython.longlong
    deliver_by: cython.longlong
    units: cython.longlong
    shipped: cython.longlong
    ship_fc: object
    cancelled: cython.longlong
    delivered: cython.longlong
    picked: cython.longlong
    packed: cython.longlong
    flags: cython.longlong
    pending: cython.longlong
    gone: cython.bint  # left state: timers that still name it do nothing
    final: cython.bint  # W passed its earliest shipment, and watchers were told
    named: object  # (fc, region) as the events spell them where a label cap folded either
    cancel_id: object  # the event id of the earliest cancellation
    ship_id: object  # the event id of the earliest shipment

    def __init__(self) -> None:
        self.clear()

    @cython.cfunc
    def clear(self) -> None:
        """No fact known yet."""
        self.fc = self.region = ""
        self.placed = self.ship_by = self.deliver_by = self.units = 0
        self.shipped = self.cancelled = self.delivered = core.NEVER
        self.picked = self.packed = core.NEVER
        self.ship_fc = self.named = self.cancel_id = self.ship_id = None
        self.flags = self.pending = 0
        self.gone = self.final = False

    @cython.ccall
    def stage(self) -> cython.int:
        """Awaiting shipment as of the facts so far: placed, picked or packed; or
        NO_STAGE once shipped or cancelled."""
        if self.shipped != core.NEVER or self.cancelled != core.NEVER:
            return NO_STAGE
        if self.packed != core.NEVER:
            return STAGE_PACKED
        if self.picked != core.NEVER:
            return STAGE_PICKED
        return STAGE_PLACED

    def __reduce__(self) -> Any:
        return (restore_order, tuple(getattr(self, name) for name in FIELDS))


@cython.cfunc
@cython.inline
def comes_first(
    ts: cython.longlong, event_id: str, known: cython.longlong, known_id: object
) -> cython.bint:
    """Whether an event (ts, event_id) is earlier than the known one: §2's (ts,
    event_id) order. One restored without its id (an earlier release) stays."""
    if ts != known:
        return ts < known
    return known_id is not None and event_id < cython.cast(str, known_id)


def restore_order(*values: Any) -> Order:
    """An order from its FIELDS (snapshots; both builds read the same pickle), or
    from their first ones in a snapshot of an earlier state version."""
    order = Order()
    for name, value in zip(FIELDS[: len(values)], values, strict=True):
        setattr(order, name, value)
    return order


ORDER_SIZE = cython.declare(cython.Py_ssize_t, Order.__basicsize__)  # bytes to prefetch
# A bit of `Order.pending` the book holds an order by while its watchers hear of
# it, above the watchers' own (at most 62 flag bits, so at most 62 watchers).
TELLING = cython.declare(cython.longlong, 1 << 62)


@cython.cclass
class OrderWatcher(core.Family):
    """A family that reads orders. It declares which changes it wants (WATCHES),
    how many bits of `Order.flags` it needs (FLAG_BITS), whether orders wait for
    it to let them go from their placing (HOLDS), and from which changes on
    (HOLDS_ON: held before any watcher hears of the change, so that no other
    watcher's release drops the order first); the order book gives it `flag_shift` and
    `need` when the shard is wired."""

    WATCHES: ClassVar[int] = 0
    FLAG_BITS: ClassVar[int] = 0
    HOLDS: ClassVar[bool] = False
    HOLDS_ON: ClassVar[int] = 0
    book: OrderBook
    flag_shift: cython.longlong
    need: cython.longlong
    watches: cython.longlong

    @cython.cfunc
    def on_order(
        self, change: cython.longlong, order_id: str, order: Order, before: cython.int, event: Any
    ) -> None:
        """`change` happened to `order`, which was in stage `before`, by `event`
        (None when W passing a time made it)."""

    @cython.cfunc
    def release(self, order_id: str, order: Order) -> None:
        """No event can change this family's outcomes of the order any more."""
        self.book.release(order_id, order, self.need)

    @cython.cfunc
    def order_of(self, order_id: Any, ref: Any) -> Order:
        """The order a timer names, or None once it left state."""
        order: Order | None = self.book.orders[order_id] if ref is None else ref
        return None if order is None or order.gone else order  # type: ignore[return-value]

    @cython.cfunc
    def has(self, order: Order, flag: cython.longlong) -> cython.bint:
        """One of this family's flags of the order."""
        return (order.flags >> self.flag_shift) & flag != 0

    @cython.cfunc
    def set(self, order: Order, flag: cython.longlong) -> None:
        order.flags |= flag << self.flag_shift

    @cython.cfunc
    def clear(self, order: Order, flag: cython.longlong) -> None:
        order.flags &= ~(flag << self.flag_shift)

    def alert(
        self, name: str, order_id: str, order: Order, deadline: int, happened: str, at: int
    ) -> Alert:
        """A per-order alert (contract §5), keyed `alert|order_id`: the deadline
        passed. `happened` names when the awaited step happened as of the
        decision: by W, or null. A step after W may not have arrived yet, and
        reporting it when it had would make the record depend on arrival order."""
        named: tuple[str, str] | None = order.named  # type: ignore[assignment]
        fc, region = (order.fc, order.region) if named is None else named
        return Alert(
            f"{name}|{key_part(order_id)}",
            {
                "alert": name,
                "order_id": order_id,
                "fc": fc,
                "region": region,
                "deadline": format_time(deadline),
                happened: None if at >= self.context.watermark else format_time(at),
                "decided_ts": self.context.decided(),
            },
        )


@cython.cclass
class OrderBook(core.Family):
    """The orders of a shard, the events held for orders not placed yet, and the
    families watching them."""

    NAME = "orders_entity"
    # 2: a shipment was final once W reached it (a tie at its ts came in arrival
    # order); 1: the orders and customer families kept their own shipment timers
    VERSION = 3
    END_TAGS = (T_SHIPMENT,)
    KINDS = ORDER_KINDS
    METRICS = ENTITY_METRICS
    PREFETCHES = True

    orders: Any  # a KeyTable: order id -> Order, a missing id reads as None
    orphans: dict  # type: ignore[type-arg]
    watchers: list  # type: ignore[type-arg]
    audiences: list  # type: ignore[type-arg]
    holds: list  # type: ignore[type-arg]
    needs: cython.longlong
    retention: cython.longlong
    previous: cython.longlong  # while watchers hear of a change: the time it replaced
    fcs: dict  # type: ignore[type-arg]
    regions: dict  # type: ignore[type-arg]
    orphan_counts: core.Counts
    expired: core.Counts

    def __init__(self) -> None:
        self.orders = key_table()
        self.orphans = {}  # order id -> [(ts, event)] held until it is placed

    def attach(self) -> None:
        context = self.context
        self.retention = context.config.retention
        self.fcs = context.known_values("fc")
        self.regions = context.known_values("region")
        self.orphan_counts = context.counts(ORPHAN_EVENTS)
        self.expired = context.counts(STATE_EXPIRED)
        self.watchers = [f for f in context.families if isinstance(f, OrderWatcher)]
        self.needs = 0
        shift = 0
        watcher: OrderWatcher
        for bit, watcher in enumerate(self.watchers):
            watcher.book = self
            watcher.need = 1 << bit if type(watcher).HOLDS or type(watcher).HOLDS_ON else 0
            watcher.flag_shift = shift
            watcher.watches = type(watcher).WATCHES
            self.needs |= watcher.need if type(watcher).HOLDS else 0
            shift += type(watcher).FLAG_BITS
        if shift > 62:
            raise ValueError(f"order watchers need {shift} flag bits; an order has 62")
        # The watchers of each combination of change bits, and the need bits it
        # sets, found on its first use.
        self.audiences = [None] * (SHIPMENT_FINAL << 1)
        self.holds = [0] * (SHIPMENT_FINAL << 1)

    def layout(self) -> dict[str, tuple[int, int, int]]:
        """Each watcher's (need bit, flag shift, flag bits), by NAME."""
        return {w.NAME: (w.need, w.flag_shift, type(w).FLAG_BITS) for w in self.watchers}

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        if kind == "order.placed":
            self.place(ts, event)
        elif kind != "delivery.updated" or event.status == "delivered":
            self.order_event(kind, ts, event)

    @cython.cfunc
    def prefetch(self, events: list) -> None:  # type: ignore[type-arg]
        """Start loading the orders a batch's events name: looked up one by one, each
        lookup waits for memory (open orders are spread over tens of MB)."""
        self.orders.prefetch([event.order_id for event in events], ORDER_SIZE)

    @cython.cfunc
    def place(self, ts: cython.longlong, event: Any) -> None:
        order_id = event.order_id
        if order_id in self.orders:
            return  # the first order.placed of an order defines it
        context = self.context
        fc = self.fcs.get(event.fc) or context.label("fc", event.fc)
        region = self.regions.get(event.region) or context.label("region", event.region)
        units: cython.longlong = 0
        for line in event.lines:
            units += line.qty
        ship_by: cython.longlong = event.promised_ship_by
        deliver_by: cython.longlong = event.promised_delivery_by
        order: Order = Order.__new__(Order)  # no call of __init__ through Python
        order.clear()
        order.fc, order.region, order.placed = fc, region, ts
        order.ship_by, order.deliver_by, order.units = ship_by, deliver_by, units
        if fc != event.fc or region != event.region:  # folded: its alerts name them
            order.named = (event.fc, event.region)
        order.pending = self.needs
        self.orders[order_id] = order
        self.notify(PLACED, order_id, order, NO_STAGE, event)
        if self.retention:
            # Passed once W > the deadline (an event at it is not late yet).
            self.after(max(ship_by, deliver_by) + self.retention, T_RETENTION, order_id, order)
        held = self.orphans.pop(order_id, None)
        if held is not None:
            for early_ts, early in held:
                self.apply(order_id, order, early.kind, early_ts, early)

    @cython.cfunc
    def order_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        order_id = event.order_id
        order = self.orders[order_id]
        if order is not None:
            self.apply(order_id, order, kind, ts, event)
            return
        held: list | None = self.orphans.get(order_id)  # type: ignore[type-arg]
        if held is None:
            held = self.orphans[order_id] = []
        self.hold(held, ts, event, T_ORPHANS, order_id)

    @cython.cfunc
    def apply(
        self, order_id: str, order: Order, kind: str, ts: cython.longlong, event: Any
    ) -> None:
        """An event of a placed order: only an earlier time than known changes a fact."""
        before: cython.int = order.stage()
        change: cython.longlong
        if kind == "inventory.picked":
            if ts >= order.picked:
                return
            change = PICKED
            self.previous, order.picked = order.picked, ts
        elif kind == "order.shipped":
            if not comes_first(ts, event.event_id, order.shipped, order.ship_id):
                return
            change = SHIPPED | (FIRST_SHIPMENT if order.shipped == core.NEVER else 0)
            if ts != order.shipped:  # (a tie has its timer) never final yet: it would be late
                self.after(ts, T_SHIPMENT, order_id, order)
            self.previous, order.shipped = order.shipped, ts
            order.ship_fc = self.fcs.get(event.fc) or self.context.label("fc", event.fc)
            order.ship_id = event.event_id
        elif kind == "inventory.packed":
            if ts >= order.packed:
                return
            change = PACKED
            self.previous, order.packed = order.packed, ts
        elif kind == "delivery.updated":
            if ts >= order.delivered:
                return
            change = DELIVERED | (FIRST_DELIVERY if order.delivered == core.NEVER else 0)
            self.previous, order.delivered = order.delivered, ts
        else:  # order.cancelled
            if not comes_first(ts, event.event_id, order.cancelled, order.cancel_id):
                return
            change = CANCELLED | (FIRST_CANCELLATION if order.cancelled == core.NEVER else 0)
            self.previous, order.cancelled = order.cancelled, ts
            order.cancel_id = event.event_id
        self.notify(change, order_id, order, before, event)

    @cython.cfunc
    def notify(
        self, change: cython.longlong, order_id: str, order: Order, before: cython.int, event: Any
    ) -> None:
        """Tell the watchers of `change` (only those: each is a cache line or two)."""
        watcher: OrderWatcher
        audience: list | None = self.audiences[change]  # type: ignore[type-arg]
        if audience is None:
            audience = self.audiences[change] = []
            for watcher in self.watchers:
                if watcher.watches & change:
                    audience.append(watcher)
                if type(watcher).HOLDS_ON & change:
                    self.holds[change] |= watcher.need
        hold: cython.longlong = self.holds[change]
        order.pending |= hold
        for watcher in audience:
            watcher.on_order(change, order_id, order, before, event)

    @cython.ccall
    def release(self, order_id: str, order: Order, need: cython.longlong) -> None:
        """A watcher is done with the order; it leaves state once every one is."""
        order.pending &= ~need
        if order.pending == 0 and not order.gone:
            order.gone = True
            del self.orders[order_id]

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        if tag == T_SHIPMENT:
            self.shipment_final(key, ref)
        elif tag == T_RETENTION:
            self.expire(key, ref)
        else:
            self.expire_orphans(key)

    @cython.cfunc
    def shipment_final(self, order_id: str, order: Order) -> None:
        """W passed the earliest shipment (or the input ended at it): tell the
        watchers, once (the timer of a later time it replaced finds it told).
        Told even when the order has left
        the book, as `gone`; one still in it is held while they hear of it, so that
        a watcher's release leaves it `gone` to none told after it."""
        if order.final:
            return
        order.final = True
        held: cython.bint = not order.gone
        if held:
            order.pending |= TELLING
        self.notify(SHIPMENT_FINAL, order_id, order, order.stage(), None)
        if held:
            self.release(order_id, order, TELLING)

    @cython.cfunc
    def expire(self, order_id: str, order: Order) -> None:
        """W passed the later promise plus the retention: an order still open leaves
        state and every gauge."""
        if order is None:
            order = self.orders[order_id]  # a timer restored without its order
        if order is None or order.gone:
            return
        if not order.final and order.shipped < self.context.watermark:
            # A shipment at the deadline is final at this W too: told first.
            self.shipment_final(order_id, order)
            if order.gone:
                return
        self.expired.add("order")
        self.notify(EXPIRED, order_id, order, order.stage(), None)
        order.gone = True
        del self.orders[order_id]

    @cython.cfunc
    def expire_orphans(self, order_id: str) -> None:
        """Drop held events whose horizon W has passed (counting them); wait for the rest."""
        held: list | None = self.orphans.get(order_id)  # type: ignore[type-arg]
        if held is None:
            return
        for event in self.past_horizon(held, T_ORPHANS, order_id):
            self.orphan_counts.add(event.kind)
        if not held:
            del self.orphans[order_id]

    def entries(self, into: dict[str, int]) -> None:
        into["orders"] = len(self.orders)
        into["orphans"] = len(self.orphans)

    def export_state(self) -> Any:
        return {
            "orders": self.orders.to_dict(),
            "orphans": self.orphans,
            "layout": self.layout(),
            "retention_timers": True,
        }

    def restore_state(self, state: Any) -> None:
        self.orders = key_table(state["orders"])
        self.orphans = state["orphans"]
        saved = state["layout"]
        if saved != self.layout():
            self.relayout(saved)
        if self.retention and not state["retention_timers"]:
            order: Order
            for order_id, order in self.orders.items():
                when = max(order.ship_by, order.deliver_by) + self.retention + 1
                self.at(when, T_RETENTION, order_id, order)

    def relayout(self, saved: dict[str, tuple[int, int, int]]) -> None:
        """Move each watcher's flags and need bit to where this build keeps them
        (a family added or removed since the snapshot)."""
        watcher: OrderWatcher
        order: Order
        for order in self.orders.values():
            flags = pending = 0
            for watcher in self.watchers:
                if watcher.NAME in saved:
                    need, shift, bits = saved[watcher.NAME]
                    mine = (order.flags >> shift) & ((1 << bits) - 1)
                    flags |= mine << watcher.flag_shift
                    pending |= watcher.need if order.pending & need else 0
                # A watcher new since the snapshot never saw these orders: it
                # holds none of them.
            order.flags, order.pending = flags, pending
