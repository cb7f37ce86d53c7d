"""The event-time KPI engine of one shard: plain Python, no bytewax, no Prometheus.

A shard owns the entities (orders, receipts) of the input partitions routed to
it, keeps its own view of the watermark W (contract §2) and counts every KPI of
contract §3 into a `Ledger`. It works on batches: `process` takes the decoded
events of one source partition, `mark` the progress of any source partition,
`finish` ends a finite input. Deadlines, receipt completions and windows are
event-time timers fired as W passes them, never by scanning open entities.

Outcomes are decided only when later input can no longer change them (any
event with ts < W is late), so results do not depend on the arrival order of
events that are not late.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from flows.decode import Event, Reject
from flows.labels import OTHER, LabelCap
from flows.ledger import Ledger, add, observe
from flows.metrics import BY_NAME
from flows.timeutil import US_PER_SECOND, format_time


class Seen(Protocol):
    """The de-duplication table, event id -> hour of its ts: a dict, or the
    compiled IdTable (a dict missed the CPU caches on most events)."""

    def __contains__(self, event_id: object, /) -> bool: ...
    def __getitem__(self, event_id: str, /) -> int: ...
    def __setitem__(self, event_id: str, hour: int, /) -> None: ...
    def __delitem__(self, event_id: str, /) -> None: ...
    def __len__(self) -> int: ...
    def get(self, event_id: str, /) -> int | None: ...


def _forget_ids(seen: Seen, ids: list[str], hour: int) -> None:
    """Forget the ids seen in `hour`, unless seen again later."""
    for event_id in ids:
        if seen.get(event_id) == hour:
            del seen[event_id]


_compiled: Callable[[Any, str, list[Any], type], int] | None
_forget: Callable[[Any, list[str], int], None]  # compiled: for the IdTable it makes
_id_table: Callable[[dict[str, int]], Seen]
try:
    # Optional: built by `pip install` where a C compiler is found (see pyproject).
    from flows._fastengine import IdTable as _id_table
    from flows._fastengine import admit as _compiled
    from flows._fastengine import forget as _forget
except ImportError:  # no compiler at install time: the same results, slower
    _compiled, _forget, _id_table = None, _forget_ids, dict

MIN_TS = -(1 << 62)
MAX_TS = 1 << 62
HOUR = 3600 * US_PER_SECOND

Output = tuple[str, str, Any]  # (kind, message key, record)

# Order record fields.
O_FC, O_REGION, O_SHIP_BY, O_DELIVER_BY, O_PLACED = 0, 1, 2, 3, 4
O_SHIPPED, O_SHIP_FC, O_CANCELLED, O_DELIVERED, O_FLAGS = 5, 6, 7, 8, 9
# Order flags.
SHIP_DECIDED, SHIP_COUNTED, DELIVERY_DECIDED, DELIVERY_COUNTED = 1, 2, 4, 8
PAST_SHIP, PAST_DELIVERY, PICKED, PACKED, RETAINED = 16, 32, 64, 128, 256
# Receipt record fields.
R_FC, R_RECEIVED, R_QTY, R_STOWED, R_STOWS, R_AWAITING = 0, 1, 2, 3, 4, 5
# Timer kinds, fired in (time, kind) order.
T_SHIP, T_DELIVERY, T_RECEIPT, T_ORDER_ORPHANS, T_RECEIPT_ORPHAN = 0, 1, 2, 3, 4
T_ORDER_RETENTION, T_RECEIPT_RETENTION, T_SHIPMENT = 5, 6, 7

DOCK_TO_STOCK = BY_NAME["cockpit_dock_to_stock_seconds"]
ORDER_CYCLE = BY_NAME["cockpit_order_cycle_seconds"]
PAGE_LOAD = BY_NAME["cockpit_page_load_seconds"]
SEARCH_LATENCY = BY_NAME["cockpit_search_latency_seconds"]


@dataclass(frozen=True)
class EngineConfig:
    """Event-time settings of the engine, all durations in microseconds."""

    lateness: int = 60 * US_PER_SECOND
    window: int = HOUR
    dedup_horizon: int = 24 * HOUR
    orphan_horizon: int = 24 * HOUR
    retention: int = 0  # 0 keeps open entities until they complete
    sources: tuple[str, ...] = ("input",)  # every source partition that feeds W


def _stage(order: list[Any]) -> str | None:
    """Where an order awaiting shipment stands, or None once shipped or cancelled."""
    if order[O_SHIPPED] is not None or order[O_CANCELLED] is not None:
        return None
    flags = order[O_FLAGS]
    return "packed" if flags & PACKED else "picked" if flags & PICKED else "placed"


class ShardEngine:
    """All state and KPI logic of one shard. Picklable plain data."""

    def __init__(self, shard: str, config: EngineConfig, labels: LabelCap) -> None:
        self.shard = shard
        self.ledger = Ledger()
        # Watermark: largest accepted (or reported) ts per source partition.
        self.max_ts: dict[str, int] = dict.fromkeys(config.sources, MIN_TS)
        self.idle: set[str] = set()
        self.watermark = MIN_TS
        # De-duplication: id -> hour of its ts, and ids by hour for expiry.
        self.seen: Seen = {}  # an IdTable once attached, where compiled
        self.seen_hours: dict[int, list[str]] = {}
        # Event-time timers: (fire when W >= at, kind, entity id).
        self.timers: list[tuple[int, int, str]] = []
        self.orders: dict[str, list[Any]] = {}
        self.order_orphans: dict[str, list[tuple[int, Event]]] = {}
        self.receipts: dict[str, list[Any]] = {}
        # Tumbling windows: (window start, fc) -> [units ordered, units stowed, on-hand delta].
        self.window_parts: dict[tuple[int, str], list[int]] = {}
        self.closed_through = MIN_TS
        self._attach(config, labels)

    # --- wiring that is not state

    def _attach(self, config: EngineConfig, labels: LabelCap) -> None:
        self.config = config
        self.labels = labels
        self.out: list[Output] = []
        if isinstance(self.seen, dict) and _id_table is not dict:  # new, or unpickled
            self.seen = _id_table(self.seen)  # (an IdTable pickles as a dict)
        for source in config.sources:
            self.max_ts.setdefault(source, MIN_TS)
        self.series = series = self.ledger.series
        self._events = series["cockpit_events_total"]
        self._rejected = series["cockpit_events_rejected_total"]
        self._duplicate = series["cockpit_events_duplicate_total"]
        self._late = series["cockpit_events_late_total"]
        self._known = {name: labels.values(name) for name in ("fc", "region", "page", "widget")}
        # Direct references for the busiest handlers, which the compiled loop
        # (`_fastengine.c`) reads too.
        self._pages, self._widgets = self._known["page"], self._known["widget"]
        self._fcs, self._regions = self._known["fc"], self._known["region"]
        self._cycle_buckets = ORDER_CYCLE.buckets
        self._page_load = series["cockpit_page_load_seconds"]
        self._page_buckets = PAGE_LOAD.buckets
        self._shown = series["cockpit_recommendations_shown_total"]
        self._search_latency = series["cockpit_search_latency_seconds"]
        self._search_buckets = SEARCH_LATENCY.buckets
        self._zero_results = series["cockpit_searches_zero_results_total"]
        self._cart_units = series["cockpit_cart_units_added_total"]
        self._handlers = {
            "order.placed": self._order_placed,
            "order.cancelled": self._order_event,
            "order.shipped": self._order_event,
            "delivery.updated": self._delivery_updated,
            "return.received": self._return_received,
            "inventory.received": self._inventory_received,
            "inventory.stowed": self._inventory_stowed,
            "inventory.picked": self._inventory_picked,
            "inventory.packed": self._order_event,
            "inventory.adjusted": self._inventory_adjusted,
            "page.viewed": self._page_viewed,
            "search.performed": self._search_performed,
            "cart.added": self._cart_added,
            "recommendation.shown": self._recommendation_shown,
            "recommendation.clicked": self._recommendation_clicked,
        }
        self._apply = {
            "order.shipped": self._apply_shipped,
            "order.cancelled": self._apply_cancelled,
            "delivery.updated": self._apply_delivered,
            "inventory.picked": self._apply_picked,
            "inventory.packed": self._apply_packed,
        }
        self._fire = (
            self._ship_deadline,
            self._delivery_deadline,
            self._receipt_complete,
            self._order_orphans_expire,
            self._receipt_orphan_expire,
            self._order_retention,
            self._receipt_retention,
            self._shipment_final,
        )

    # What a snapshot holds; everything else is wiring rebuilt by `attach`.
    _STATE = (
        "shard",
        "ledger",
        "max_ts",
        "idle",
        "watermark",
        "seen",
        "seen_hours",
        "timers",
        "orders",
        "order_orphans",
        "receipts",
        "window_parts",
        "closed_through",
    )

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self._STATE}
        state["admitted_labels"] = self.labels.export()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def attach(self, config: EngineConfig, labels: LabelCap) -> ShardEngine:
        """Re-attach settings and the shared label cap after unpickling."""
        labels.restore(self.__dict__.pop("admitted_labels", {}))
        self._attach(config, labels)
        return self

    def drain(self) -> list[Output]:
        """Take the outputs produced so far."""
        out, self.out = self.out, []
        return out

    # --- input

    def process(self, source: str, items: list[Event | Reject]) -> None:
        """Apply a batch of decoded events (and rejects) from one source partition.

        The per-event loop was most of a replay's time: it runs compiled
        (`_fastengine.c`, the same loop on the same state) where it was built,
        and `_admit` takes whatever it leaves (a property test compares both).
        """
        taken = 0 if _compiled is None else _compiled(self, source, items, Reject)
        self._admit(source, items, taken)

    def _admit(self, source: str, items: list[Event | Reject], start: int) -> None:
        """The loop of `process`, from `items[start]` on."""
        lateness = self.config.lateness
        watermark = self.watermark
        own_max = self.max_ts.get(source, MIN_TS)
        others = self._others_min(source)
        # Late against the partition's own progress (what replay does with one
        # partition), or against W should W be ahead after this partition idled:
        # so lateness never depends on how fast other partitions are read.
        late_below = max(own_max - lateness, watermark)
        seen, seen_hours = self.seen, self.seen_hours
        duplicate, late = self._duplicate, self._late
        handlers, timers = self._handlers, self.timers
        accepted: list[str] = []
        bucket_hour, bucket_start, bucket_end, bucket = MIN_TS, 0, 0, []
        for item in islice(items, start, None):
            if type(item) is Reject:
                self._reject(item)
                continue
            event: Event = item
            kind = event.kind
            event_id = event.event_id
            ts = event.ts
            if event_id in seen and self._remembered(seen[event_id]):
                duplicate[kind] = duplicate.get(kind, 0) + 1
                continue
            if not bucket_start <= ts < bucket_end:  # cheaper than dividing every ts
                bucket_hour = ts // HOUR
                bucket_start, bucket_end = bucket_hour * HOUR, (bucket_hour + 1) * HOUR
                bucket = seen_hours.setdefault(bucket_hour, [])
            seen[event_id] = bucket_hour
            bucket.append(event_id)
            if ts < late_below:
                late[kind] = late.get(kind, 0) + 1
                continue
            if ts > own_max:
                own_max = ts
                candidate = (own_max if own_max < others else others) - lateness
                if candidate > watermark:
                    # Deadlines fire at the exact event that passes them, so the
                    # outcome never depends on how the input was batched.
                    watermark = self.watermark = candidate
                    if timers and timers[0][0] <= watermark:
                        self._fire_due()
                late_below = own_max - lateness
                if late_below < watermark:
                    late_below = watermark
            accepted.append(kind)
            handlers[kind](event)
        events = self._events
        for kind, count in Counter(accepted).items():
            events[kind] = events.get(kind, 0) + count
        self.max_ts[source] = own_max
        self.idle.discard(source)
        self._advance(watermark)

    def _reject(self, reject: Reject) -> None:
        add(self._rejected, reject.reason)
        self.out.append(("dlq", "|".join(map(str, reject.origin.values())), reject.record()))

    def mark(self, source: str, max_ts: int, idle: bool) -> None:
        """Progress of a source partition: its largest event ts, and whether it is idle."""
        if max_ts > self.max_ts.get(source, MIN_TS):
            self.max_ts[source] = max_ts
        if idle:
            self.idle.add(source)
        else:
            self.idle.discard(source)
        self._advance(self._combined())

    def finish(self) -> None:
        """End of a finite input: W becomes the largest accepted ts (contract §2)."""
        self._advance(max(self.max_ts.values(), default=MIN_TS))

    def _others_min(self, source: str) -> int:
        active = [ts for src, ts in self.max_ts.items() if src != source and src not in self.idle]
        return min(active, default=MAX_TS)

    def _combined(self) -> int:
        """min over partitions that are not idle; when all are idle, the input is drained."""
        active = [ts for src, ts in self.max_ts.items() if src not in self.idle]
        if active:
            return min(active) - self.config.lateness
        return max(self.max_ts.values(), default=MIN_TS)

    # --- event time advancing

    def _advance(self, watermark: int) -> None:
        """W moved (W never goes back): fire timers, close windows, forget old ids."""
        self.watermark = max(self.watermark, watermark)
        watermark = self.watermark
        self._fire_due()
        if watermark > MIN_TS:
            self._close_windows(watermark)
            self._expire_seen(watermark)
            self.series["cockpit_watermark_timestamp_seconds"][()] = watermark / US_PER_SECOND
        entries = self.series["cockpit_state_entries"]
        entries["orders"] = len(self.orders)
        entries["receipts"] = len(self.receipts)
        entries["orphans"] = len(self.order_orphans)
        entries["dedup_ids"] = len(self.seen)
        entries["timers"] = len(self.timers)

    def _fire_due(self) -> None:
        timers, fire, watermark = self.timers, self._fire, self.watermark
        while timers and timers[0][0] <= watermark:
            _at, kind, ident = heapq.heappop(timers)
            fire[kind](ident)

    def _remembered(self, hour: int) -> bool:
        """An id seen with a ts in `hour` still counts for duplicates (contract: >= 24 h)."""
        return hour >= (self.watermark - self.config.dedup_horizon) // HOUR

    def _at(self, when: int, kind: int, ident: str) -> None:
        heapq.heappush(self.timers, (when, kind, ident))

    def _expire_seen(self, watermark: int) -> None:
        horizon_hour = (watermark - self.config.dedup_horizon) // HOUR
        expired = [hour for hour in self.seen_hours if hour < horizon_hour]
        for hour in expired:
            _forget(self.seen, self.seen_hours.pop(hour), hour)

    def _close_windows(self, watermark: int) -> None:
        size = self.config.window
        end = watermark - watermark % size
        if end <= self.closed_through:
            return
        parts = self.window_parts
        closed = sorted(key for key in parts if key[0] + size <= end)
        rows = [(start, fc, *parts.pop((start, fc))) for start, fc in closed]
        self.closed_through = end
        self.out.append(("window", self.shard, (end, rows)))

    # --- labels

    def _label(self, name: str, value: str) -> str:
        known = self._known[name].get(value)
        if known is not None:
            return known
        admitted = self.labels.admit(name, value)
        if admitted is None:
            add(self.series["cockpit_label_overflow_total"], name)
            return OTHER
        return admitted

    def _window_part(self, ts: int, fc: str) -> list[int]:
        key = (ts - ts % self.config.window, fc)
        part = self.window_parts.get(key)
        if part is None:
            part = self.window_parts[key] = [0, 0, 0]
        return part

    # --- orders

    def _order_placed(self, event: Event) -> None:
        order_id = event.order_id
        if order_id in self.orders:
            return  # the first order.placed of an order defines it
        fc = self._label("fc", event.fc)
        units = sum(line.qty for line in event.lines)
        add(self.series["cockpit_units_ordered_total"], fc, units)
        self._window_part(event.ts, fc)[0] += units
        ship_by, deliver_by = event.promised_ship_by, event.promised_delivery_by
        order = [
            fc,
            self._label("region", event.region),
            ship_by,
            deliver_by,
            event.ts,
            None,
            None,
            None,
            None,
            0,
        ]
        self.orders[order_id] = order
        add(self.series["cockpit_orders_awaiting_shipment"], fc)
        add(self.series["cockpit_orders_in_stage"], (fc, "placed"))
        self._at(ship_by + 1, T_SHIP, order_id)
        self._at(deliver_by + 1, T_DELIVERY, order_id)
        for _ts, held in self.order_orphans.pop(order_id, ()):
            self._apply[held.kind](order_id, order, held)

    def _order_event(self, event: Event) -> None:
        order_id = event.order_id
        order = self.orders.get(order_id)
        if order is not None:
            self._apply[event.kind](order_id, order, event)
            return
        held = self.order_orphans.get(order_id)
        if held is None:
            self.order_orphans[order_id] = [(event.ts, event)]
            self._at(self._orphan_expiry(event.ts), T_ORDER_ORPHANS, order_id)
        else:
            held.append((event.ts, event))

    def _restage(self, order: list[Any], before: str | None) -> None:
        after = _stage(order)
        if after != before:
            stages = self.series["cockpit_orders_in_stage"]
            if before is not None:
                add(stages, (order[O_FC], before), -1)
            if after is not None:
                add(stages, (order[O_FC], after))

    def _leave_awaiting(self, order: list[Any]) -> None:
        """The order got its first shipment or cancellation."""
        fc = order[O_FC]
        add(self.series["cockpit_orders_awaiting_shipment"], fc, -1)
        if order[O_FLAGS] & PAST_SHIP:
            order[O_FLAGS] &= ~PAST_SHIP
            add(self.series["cockpit_orders_past_ship_promise"], fc, -1)

    def _leave_past_delivery(self, order: list[Any]) -> None:
        if order[O_FLAGS] & PAST_DELIVERY:
            order[O_FLAGS] &= ~PAST_DELIVERY
            add(self.series["cockpit_orders_past_delivery_promise"], order[O_REGION], -1)

    def _count_shipment(self, order: list[Any], on_time: bool) -> None:
        order[O_FLAGS] |= SHIP_COUNTED
        add(
            self.series["cockpit_orders_shipped_total"],
            (order[O_SHIP_FC], "true" if on_time else "false"),
        )
        observe(
            self.series[ORDER_CYCLE.name],
            ORDER_CYCLE,
            order[O_FC],
            (order[O_SHIPPED] - order[O_PLACED]) / US_PER_SECOND,
        )

    def _count_delivery(self, order: list[Any], on_time: bool) -> None:
        order[O_FLAGS] |= DELIVERY_COUNTED
        add(
            self.series["cockpit_deliveries_total"],
            (order[O_REGION], "true" if on_time else "false"),
        )

    def _apply_shipped(self, order_id: str, order: list[Any], event: Event) -> None:
        ts = event.ts
        shipped = order[O_SHIPPED]
        if shipped is not None and shipped <= ts:
            return  # the earliest shipment decides
        before = _stage(order)
        order[O_SHIPPED] = ts
        order[O_SHIP_FC] = self._label("fc", event.fc)
        if shipped is None and order[O_CANCELLED] is None:
            self._leave_awaiting(order)
        self._restage(order, before)
        if not order[O_FLAGS] & SHIP_COUNTED:
            # Final once W reaches it: no earlier shipment can arrive after that.
            self._at(ts, T_SHIPMENT, order_id)

    def _shipment_final(self, order_id: str) -> None:
        order = self.orders.get(order_id)
        if order is None or order[O_FLAGS] & SHIP_COUNTED or order[O_SHIPPED] is None:
            return
        if order[O_SHIPPED] <= self.watermark:
            self._count_shipment(order, order[O_SHIPPED] <= order[O_SHIP_BY])
            self._forget_if_done(order_id, order)

    def _apply_cancelled(self, order_id: str, order: list[Any], event: Event) -> None:
        ts = event.ts
        cancelled = order[O_CANCELLED]
        if cancelled is not None and cancelled <= ts:
            return
        before = _stage(order)
        order[O_CANCELLED] = ts
        if cancelled is None:
            add(self.series["cockpit_orders_cancelled_total"], order[O_FC])
            if order[O_SHIPPED] is None:
                self._leave_awaiting(order)
            self._leave_past_delivery(order)
        self._restage(order, before)
        self._forget_if_done(order_id, order)

    def _apply_delivered(self, order_id: str, order: list[Any], event: Event) -> None:
        ts = event.ts
        delivered = order[O_DELIVERED]
        if delivered is not None and delivered <= ts:
            return
        order[O_DELIVERED] = ts
        self._leave_past_delivery(order)
        flags = order[O_FLAGS]
        if not flags & DELIVERY_COUNTED:
            if ts <= order[O_DELIVER_BY]:
                self._count_delivery(order, True)
            elif flags & DELIVERY_DECIDED:
                self._count_delivery(order, False)
        self._forget_if_done(order_id, order)

    def _apply_picked(self, order_id: str, order: list[Any], event: Event) -> None:
        before = _stage(order)
        order[O_FLAGS] |= PICKED
        self._restage(order, before)

    def _apply_packed(self, order_id: str, order: list[Any], event: Event) -> None:
        before = _stage(order)
        order[O_FLAGS] |= PACKED
        self._restage(order, before)

    def _ship_deadline(self, order_id: str) -> None:
        """W passed the ship promise: events with ts <= promise can no longer arrive."""
        order = self.orders.get(order_id)
        if order is None:
            return
        order[O_FLAGS] |= SHIP_DECIDED
        ship_by, shipped, cancelled = order[O_SHIP_BY], order[O_SHIPPED], order[O_CANCELLED]
        on_time = (shipped is not None and shipped <= ship_by) or (
            cancelled is not None and cancelled <= ship_by
        )
        if not on_time:
            add(self.series["cockpit_ship_sla_breaches_total"], order[O_FC])
            self._alert("ship_sla_breach", order_id, order, ship_by, shipped, "shipped_ts")
        if shipped is None and cancelled is None:
            order[O_FLAGS] |= PAST_SHIP
            add(self.series["cockpit_orders_past_ship_promise"], order[O_FC])
        self._forget_if_done(order_id, order)

    def _delivery_deadline(self, order_id: str) -> None:
        order = self.orders.get(order_id)
        if order is None:
            return
        order[O_FLAGS] |= DELIVERY_DECIDED
        deliver_by, delivered = order[O_DELIVER_BY], order[O_DELIVERED]
        cancelled = order[O_CANCELLED]
        on_time = (delivered is not None and delivered <= deliver_by) or (
            cancelled is not None and cancelled <= deliver_by
        )
        if not on_time:
            add(self.series["cockpit_late_deliveries_total"], order[O_REGION])
            self._alert("late_delivery", order_id, order, deliver_by, delivered, "delivered_ts")
        if delivered is not None and not order[O_FLAGS] & DELIVERY_COUNTED:
            self._count_delivery(order, False)
        if delivered is None and cancelled is None:
            order[O_FLAGS] |= PAST_DELIVERY
            add(self.series["cockpit_orders_past_delivery_promise"], order[O_REGION])
        self._forget_if_done(order_id, order)

    def _alert(
        self,
        alert: str,
        order_id: str,
        order: list[Any],
        deadline: int,
        happened: int | None,
        happened_field: str,
    ) -> None:
        self.out.append(
            (
                "alert",
                f"{alert}|{order_id}",
                {
                    "alert": alert,
                    "order_id": order_id,
                    "fc": order[O_FC],
                    "region": order[O_REGION],
                    "deadline": format_time(deadline),
                    happened_field: None if happened is None else format_time(happened),
                    "decided_ts": format_time(self.watermark),
                },
            )
        )

    def _forget_if_done(self, order_id: str, order: list[Any]) -> None:
        """Drop an order once no accepted event can change any of its outcomes."""
        flags = order[O_FLAGS]
        if not (flags & SHIP_DECIDED and flags & DELIVERY_DECIDED):
            return
        shipped, cancelled = order[O_SHIPPED], order[O_CANCELLED]
        if cancelled is not None or (
            shipped is not None and order[O_DELIVERED] is not None and flags & SHIP_COUNTED
        ):
            del self.orders[order_id]
        elif self.config.retention and not flags & RETAINED:
            order[O_FLAGS] |= RETAINED  # the retention timer is scheduled once
            last = max(order[O_SHIP_BY], order[O_DELIVER_BY])
            self._at(last + self.config.retention, T_ORDER_RETENTION, order_id)

    def _order_retention(self, order_id: str) -> None:
        """An open order past the retention horizon leaves state and the gauges."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return
        add(self.series["cockpit_state_expired_total"], "order")
        before = _stage(order)
        if before is not None:
            add(self.series["cockpit_orders_in_stage"], (order[O_FC], before), -1)
            self._leave_awaiting(order)
        self._leave_past_delivery(order)

    def _orphan_expiry(self, ts: int) -> int:
        """When W passes ts + the orphan horizon."""
        return ts + self.config.orphan_horizon + 1

    def _expire_held(
        self, held: list[tuple[int, Any]], kind: int, ident: str, kind_of: Any
    ) -> list[tuple[int, Any]]:
        """Drop held items whose horizon W has passed (counting them); reschedule the rest."""
        keep = []
        for ts, item in held:
            if self._orphan_expiry(ts) <= self.watermark:
                add(self.series["cockpit_orphan_events_total"], kind_of(item))
            else:
                keep.append((ts, item))
        if keep:
            self._at(self._orphan_expiry(min(ts for ts, _ in keep)), kind, ident)
        return keep

    def _order_orphans_expire(self, order_id: str) -> None:
        held = self.order_orphans.get(order_id)
        if held is None:
            return
        keep = self._expire_held(held, T_ORDER_ORPHANS, order_id, lambda event: event.kind)
        if keep:
            self.order_orphans[order_id] = keep
        else:
            del self.order_orphans[order_id]

    def _delivery_updated(self, event: Event) -> None:
        status = event.status
        add(self.series["cockpit_delivery_updates_total"], status)
        if status == "delivered":
            self._order_event(event)

    # --- inventory and receipts

    def _inventory_received(self, event: Event) -> None:
        fc = self._label("fc", event.fc)
        qty = event.qty
        add(self.series["cockpit_units_received_total"], fc, qty)
        receipt_id = event.receipt_id
        receipt = self.receipts.get(receipt_id)
        if receipt is None:
            receipt = self.receipts[receipt_id] = [fc, None, 0, 0, [], False]
        elif receipt[R_RECEIVED] is not None:
            return  # the first dock scan of a receipt defines it
        receipt[R_FC], receipt[R_RECEIVED], receipt[R_QTY] = fc, event.ts, qty
        if self.config.retention:
            self._at(event.ts + self.config.retention, T_RECEIPT_RETENTION, receipt_id)
        if receipt[R_STOWED] < qty:
            receipt[R_AWAITING] = True
            add(self.series["cockpit_receipts_awaiting_stow"], fc)
        else:
            self._schedule_completion(receipt_id, receipt)

    def _inventory_stowed(self, event: Event) -> None:
        fc = self._label("fc", event.fc)
        qty, ts = event.qty, event.ts
        add(self.series["cockpit_units_stowed_total"], fc, qty)
        add(self.series["cockpit_units_on_hand"], fc, qty)
        part = self._window_part(ts, fc)
        part[1] += qty
        part[2] += qty
        receipt_id = event.receipt_id
        receipt = self.receipts.get(receipt_id)
        if receipt is None:
            receipt = self.receipts[receipt_id] = [fc, None, 0, 0, [], False]
            self._at(self._orphan_expiry(ts), T_RECEIPT_ORPHAN, receipt_id)
        receipt[R_STOWS].append((ts, qty))
        receipt[R_STOWED] += qty
        if receipt[R_RECEIVED] is not None and receipt[R_STOWED] >= receipt[R_QTY]:
            if receipt[R_AWAITING]:
                receipt[R_AWAITING] = False
                add(self.series["cockpit_receipts_awaiting_stow"], receipt[R_FC], -1)
            self._schedule_completion(receipt_id, receipt)

    @staticmethod
    def _completed_at(receipt: list[Any]) -> int:
        """ts of the stow that brings the stowed quantity to the received quantity."""
        total = 0
        for ts, qty in sorted(receipt[R_STOWS]):
            total += qty
            if total >= receipt[R_QTY]:
                return int(ts)
        raise AssertionError("receipt is not complete")

    def _schedule_completion(self, receipt_id: str, receipt: list[Any]) -> None:
        # Final once W >= completion: no stow with an earlier ts can arrive.
        self._at(self._completed_at(receipt), T_RECEIPT, receipt_id)

    def _receipt_complete(self, receipt_id: str) -> None:
        receipt = self.receipts.get(receipt_id)
        if receipt is None or receipt[R_RECEIVED] is None or receipt[R_STOWED] < receipt[R_QTY]:
            return
        completed = self._completed_at(receipt)
        if completed > self.watermark:
            return  # a later timer decides
        del self.receipts[receipt_id]
        observe(
            self.series[DOCK_TO_STOCK.name],
            DOCK_TO_STOCK,
            receipt[R_FC],
            (completed - receipt[R_RECEIVED]) / US_PER_SECOND,
        )

    def _receipt_orphan_expire(self, receipt_id: str) -> None:
        receipt = self.receipts.get(receipt_id)
        if receipt is None or receipt[R_RECEIVED] is not None:
            return
        stows = self._expire_held(
            receipt[R_STOWS], T_RECEIPT_ORPHAN, receipt_id, lambda _qty: "inventory.stowed"
        )
        if stows:
            receipt[R_STOWS] = stows
            receipt[R_STOWED] = sum(qty for _ts, qty in stows)
        else:
            del self.receipts[receipt_id]

    def _receipt_retention(self, receipt_id: str) -> None:
        receipt = self.receipts.get(receipt_id)
        if receipt is None or not receipt[R_AWAITING]:
            return
        del self.receipts[receipt_id]
        add(self.series["cockpit_receipts_awaiting_stow"], receipt[R_FC], -1)
        add(self.series["cockpit_state_expired_total"], "receipt")

    def _inventory_picked(self, event: Event) -> None:
        fc = self._label("fc", event.fc)
        qty = event.qty
        add(self.series["cockpit_units_picked_total"], fc, qty)
        add(self.series["cockpit_units_on_hand"], fc, -qty)
        self._window_part(event.ts, fc)[2] -= qty
        order = self.orders.get(event.order_id)
        if order is None or not order[O_FLAGS] & PICKED:
            self._order_event(event)

    def _inventory_adjusted(self, event: Event) -> None:
        fc = self._label("fc", event.fc)
        delta = event.delta
        add(self.series["cockpit_units_on_hand"], fc, delta)
        self._window_part(event.ts, fc)[2] += delta
        if delta:
            add(
                self.series["cockpit_units_adjusted_total"],
                (fc, "up" if delta > 0 else "down"),
                abs(delta),
            )

    def _return_received(self, event: Event) -> None:
        add(
            self.series["cockpit_units_returned_total"],
            self._label("fc", event.fc),
            event.qty,
        )

    # --- storefront

    def _page_viewed(self, event: Event) -> None:
        page = self._pages.get(event.page) or self._label("page", event.page)
        observe(self._page_load, PAGE_LOAD, page, event.load_ms / 1000)

    def _search_performed(self, event: Event) -> None:
        observe(self._search_latency, SEARCH_LATENCY, (), event.latency_ms / 1000)
        if event.results == 0:
            add(self._zero_results, ())

    def _cart_added(self, event: Event) -> None:
        add(self._cart_units, (), event.qty)

    def _recommendation_shown(self, event: Event) -> None:
        widget = self._widgets.get(event.widget) or self._label("widget", event.widget)
        shown = self._shown
        shown[widget] = shown.get(widget, 0) + 1

    def _recommendation_clicked(self, event: Event) -> None:
        add(
            self.series["cockpit_recommendations_clicked_total"],
            self._label("widget", event.widget),
        )
