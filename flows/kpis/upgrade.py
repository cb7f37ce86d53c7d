"""Snapshots of older releases upgraded into today's families.

Families at state version 1 (until 2026-12-05): the orders and customer
families each kept a timer at an order's earliest shipment; since, the order
entity keeps one and tells them once the shipment is final (`final_shipments`).
The order entity at version 2 (until 2026-12-06): a shipment was final once W
reached it; since, once W passes it (`shipments_after`), so that of two at one
ts the smaller event id counts. The customer family at version 2 (until the same
day) held a cancellation's reason as a label; since, as the event spells it,
folded only when it decides (`labelled_reasons`).
Inventory health's combine step at version 3 (until the same day): an item's
days held the current day's units so far; since, a day's close adds the whole
day (`whole_days`). The runtime at version 1 (until 2026-12-06): histogram sums
were floats, in seconds; since, whole µs (`micro_sums`), and a release before
refuses the state in one line.

The release before KPI families (one `ShardEngine` class, orders as lists
indexed by constants) is upgraded to version 1 first (`shard_state`).

That release pickled its `ShardEngine` and `WindowAggregator` objects. Their
classes are gone, so their pickles are read into stand-ins here and their state
is moved, fact by fact, into the families' records. Facts that release did
not keep are filled in: an order picked before the upgrade counts as picked at
an unknown time (`UNKNOWN_TIME`), and its units as 0 (they were counted when it
was placed); and the cancelled orders and returned units it counted have
reason `unknown`. Everything else converts exactly (a test replays the rest of a
stream after a real snapshot of that release and compares).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, cast

from flows.calendar import DAY_US
from flows.entities.orders import T_SHIPMENT, Order
from flows.kpis.receipts import Receipt
from flows.metrics import BY_NAME, HISTOGRAM
from flows.runtime import snapshot
from flows.runtime.consts import MIN_TS, NEVER, TAG_BITS
from flows.runtime.core import whole_us

Timer = tuple[int, int, Any, Any]  # a snapshot's timer: (when, slot, key, ref)
UNKNOWN_TIME = MIN_TS  # a step known to have happened, at a time not kept

# That release's order record and flags (flows/engine.py at 3862025).
O_FC, O_REGION, O_SHIP_BY, O_DELIVER_BY, O_PLACED = 0, 1, 2, 3, 4
O_SHIPPED, O_SHIP_FC, O_CANCELLED, O_DELIVERED, O_FLAGS = 5, 6, 7, 8, 9
SHIP_DECIDED, SHIP_COUNTED, DELIVERY_DECIDED, DELIVERY_COUNTED = 1, 2, 4, 8
PAST_SHIP, PAST_DELIVERY, PICKED, PACKED = 16, 32, 64, 128
# Its timer kinds, as (family, tag) today.
TIMERS = {
    0: ("orders", 0),  # ship deadline
    1: ("deliveries", 0),  # delivery deadline
    2: ("receipts", 0),  # receipt complete
    3: ("orders_entity", 0),  # order orphans expire
    4: ("receipts", 1),  # receipt orphan expires
    5: ("orders_entity", 1),  # order retention
    6: ("receipts", 2),  # receipt retention
    7: ("orders", 1),  # shipment final
}
V1_SHIPMENT_TAG = 1  # the orders and customer families' shipment timers at version 1
V2_CANCELLATION_TAG = 0  # the customer family's cancellation timers at version 2
V2 = {"orders_entity": 2, "orders": 2, "customer": 2}  # their versions since
# Where the families kept their order flags and need bits in the upgraded
# snapshot: (need bit, flag shift, flag bits), bits DECIDED 1, COUNTED 2, PAST 4.
LAYOUT = {"orders": (1, 0, 3), "deliveries": (2, 3, 3)}
FAMILY_ORDER = ["orders_entity", "orders", "deliveries", "receipts", "stock", "storefront"]
SERIES_OF = {
    "orders_entity": ("cockpit_orphan_events_total", "cockpit_state_expired_total"),
    "orders": (
        "cockpit_units_ordered_total",
        "cockpit_orders_shipped_total",
        "cockpit_ship_sla_breaches_total",
        "cockpit_orders_awaiting_shipment",
        "cockpit_orders_past_ship_promise",
        "cockpit_orders_cancelled_total",
        "cockpit_orders_in_stage",
        "cockpit_order_cycle_seconds",
    ),
    "deliveries": (
        "cockpit_deliveries_total",
        "cockpit_late_deliveries_total",
        "cockpit_orders_past_delivery_promise",
        "cockpit_delivery_updates_total",
    ),
    "receipts": (
        "cockpit_dock_to_stock_seconds",
        "cockpit_receipts_awaiting_stow",
        "cockpit_units_received_total",
    ),
    "stock": (
        "cockpit_units_stowed_total",
        "cockpit_units_picked_total",
        "cockpit_units_on_hand",
        "cockpit_units_returned_total",
        "cockpit_units_adjusted_total",
    ),
    "storefront": (
        "cockpit_page_load_seconds",
        "cockpit_search_latency_seconds",
        "cockpit_searches_zero_results_total",
        "cockpit_cart_units_added_total",
        "cockpit_recommendations_shown_total",
        "cockpit_recommendations_clicked_total",
    ),
}
# Series that have a `reason` label since: that release's counts are kept as
# reason `unknown` (it did not keep the reasons).
REASON_ADDED = ("cockpit_orders_cancelled_total", "cockpit_units_returned_total")
RUNTIME_SERIES = (
    "cockpit_events_total",
    "cockpit_events_rejected_total",
    "cockpit_events_duplicate_total",
    "cockpit_events_late_total",
    "cockpit_watermark_timestamp_seconds",
    "cockpit_label_overflow_total",
    "cockpit_state_entries",
)


class _Pickled:
    """A pickled object of a class that no longer exists: its state, as saved."""

    state: dict[str, Any]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


class LegacyShard(_Pickled):
    """flows.engine.ShardEngine"""


class LegacyWindows(_Pickled):
    """flows.windows.WindowAggregator"""


class LegacyLedger(_Pickled):
    """flows.ledger.Ledger"""


_LEGACY = {
    ("flows.engine", "ShardEngine"): LegacyShard,
    ("flows.windows", "WindowAggregator"): LegacyWindows,
    ("flows.ledger", "Ledger"): LegacyLedger,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _LEGACY.get((module, name)) or super().find_class(module, name)


def upgrade(data: bytes) -> Any:
    """A snapshot as today's plain data, upgraded if an older release wrote it."""
    saved = snapshot.loads(data, _Unpickler)  # refused in one line if it cannot be read
    if isinstance(saved, LegacyShard):
        saved = shard_state(saved.state)
    elif isinstance(saved, LegacyWindows):
        saved = combine_state(saved.state)
    if not isinstance(saved, dict):
        return cast(dict[str, Any], saved)  # refused as not a snapshot
    if saved.get("format") == snapshot.SHARD_FORMAT and saved["versions"].get("orders_entity") == 1:
        saved = final_shipments(saved)
    if saved.get("format") == snapshot.SHARD_FORMAT and saved["versions"].get("orders_entity") == 2:
        saved = shipments_after(saved)
    if saved.get("format") == snapshot.SHARD_FORMAT and saved["versions"].get("customer") == 2:
        saved = labelled_reasons(saved)
    if saved.get("format") == snapshot.COMBINE_FORMAT and saved["versions"].get("inventory") == 3:
        saved = whole_days(saved)
    if saved.get("version") == 1:
        saved = micro_sums(saved)
    return saved


def micro_sums(header: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of the runtime at version 1, as version 2: each histogram's sum,
    a float of seconds, as whole µs."""
    body = snapshot.body_of(header)
    parts = body.get("families") or body.get("combiners") or {}
    for part in parts.values():
        for name, series in part["series"].items():
            metric = BY_NAME.get(name)  # None: a metric since removed
            if metric is not None and metric.kind == HISTOGRAM:
                for value in series.values():
                    value[-1] = whole_us(value[-1])
    return {**header, "version": 2, "body": body}


def whole_days(header: dict[str, Any]) -> dict[str, Any]:
    """A combine snapshot of inventory health at state version 3, as version 4: an
    item's days no longer hold the units of the day W is in (its close adds the
    whole day from the item's demand entries, which hold them too)."""
    body = snapshot.body_of(header)
    state = body["combiners"]["inventory"]["state"]
    closed = state["closed"]
    today = closed - closed % DAY_US
    if closed != today:
        for item in state["items"].values():
            days = item.daily
            if days and item.first_day + (len(days) - 1) * DAY_US == today:
                days.pop()
    return {**header, "versions": {**header["versions"], "inventory": 4}, "body": body}


def final_shipments(header: dict[str, Any]) -> dict[str, Any]:
    """A shard snapshot of the order entity and the orders and customer families
    at state version 1, as version 2. Their timers at an order's earliest
    shipment become the entity's one (a timer of a shipment time replaced since
    is dropped); an order whose shipment W has reached is final. Timers fire as
    W moves, so those are exactly the shipments whose timers have fired."""
    body = snapshot.body_of(header)
    runtime, families = body["runtime"], body["family_order"]
    book: dict[str, Order] = body["families"]["orders_entity"]["state"]["orders"]
    theirs = {
        families.index(name) << TAG_BITS | V1_SHIPMENT_TAG
        for name in ("orders", "customer")
        if name in families
    }
    timers, pending = [], {}
    for timer in runtime["timers"]:
        when, slot, order_id, ref = timer
        if slot not in theirs:
            timers.append(timer)
            continue
        # orders' ref is the order (None from the release before families),
        # customer's is (order, shipment time).
        order = book.get(order_id) if ref is None else ref if isinstance(ref, Order) else ref[0]
        if order is not None and order.shipped == when:
            pending[order_id] = order  # it may have left the book: its facts are final
    for order in book.values():
        order.final = order.shipped <= runtime["watermark"]
    entity = families.index("orders_entity") << TAG_BITS | T_SHIPMENT
    timers += [(order.shipped, entity, order_id, order) for order_id, order in pending.items()]
    timers.sort(key=lambda timer: timer[:3])
    versions = {name: V2.get(name, version) for name, version in header["versions"].items()}
    body = {**body, "runtime": {**runtime, "timers": timers}}
    return {**header, "versions": versions, "body": body}


def shipments_after(header: dict[str, Any]) -> dict[str, Any]:
    """A shard snapshot of the order entity at state version 2, as version 3: its
    timers at an order's earliest shipment s, set for W = s, wait for W > s (a
    tie at s may still come). Those W has reached have fired: the rest are later."""
    return retimed(header, "orders_entity", T_SHIPMENT, 3, lambda t: (t[0] + 1, *t[1:]))


def labelled_reasons(header: dict[str, Any]) -> dict[str, Any]:
    """A shard snapshot of the customer family at state version 2, as version 3: its
    cancellation timers held the reason as a label (folded when heard), and the
    event id only since 2026-12-06; they now say the reason is a label already, so
    that it is not folded (or counted as folded) again."""
    return retimed(
        header,
        "customer",
        V2_CANCELLATION_TAG,
        3,
        lambda t: (*t[:3], (*t[3][:3], t[3][3] if len(t[3]) > 3 else None, True)),
    )


def retimed(
    header: dict[str, Any],
    family: str,
    tag: int,
    version: int,
    change: Callable[[Timer], Timer],
) -> dict[str, Any]:
    """A shard snapshot with `change` made to each timer (when, slot, key, ref) of
    (`family`, `tag`), and that family at state `version`."""
    body = snapshot.body_of(header)
    runtime = body["runtime"]
    slot_of = body["family_order"].index(family) << TAG_BITS | tag
    runtime["timers"] = [
        change(timer) if timer[1] == slot_of else timer for timer in runtime["timers"]
    ]
    return {**header, "versions": {**header["versions"], family: version}, "body": body}


def _series(ledger: Any) -> dict[str, Any]:
    series: dict[str, Any] = dict(ledger.state["series"])
    for name in REASON_ADDED:
        series[name] = {(fc, "unknown"): count for fc, count in series.get(name, {}).items()}
    return series


def shard_state(old: dict[str, Any]) -> dict[str, Any]:
    """A ShardEngine's state as a shard snapshot of today's families."""
    series = _series(old["ledger"])
    slots = {name: index for index, name in enumerate(FAMILY_ORDER)}
    timers = []
    for when, kind, key in old["timers"]:
        family, tag = TIMERS[kind]
        timers.append((when, slots[family] << TAG_BITS | tag, key, None))
    timers.sort()
    runtime = {
        "shard": old["shard"],
        "max_ts": old["max_ts"],
        "idle": old["idle"],
        "watermark": old["watermark"],
        "closed_through": old["closed_through"],
        "seen": old["seen"],
        "seen_hours": old["seen_hours"],
        "timers": timers,
        "series": {name: series.get(name, {}) for name in RUNTIME_SERIES},
    }
    states: dict[str, Any] = {
        "orders_entity": {
            "orders": {order_id: _order(fields) for order_id, fields in old["orders"].items()},
            "orphans": old["order_orphans"],
            "layout": LAYOUT,
            "retention_timers": False,  # that release set them only once both promises passed
        },
        "receipts": {rid: _receipt(fields) for rid, fields in old["receipts"].items()},
        "stock": old["window_parts"],
    }
    body = {
        "runtime": runtime,
        "family_order": FAMILY_ORDER,
        "labels": old.get("admitted_labels", {}),
        "families": {
            name: {
                "series": {metric: series.get(metric, {}) for metric in SERIES_OF[name]},
                "state": states.get(name),
            }
            for name in FAMILY_ORDER
        },
    }
    return _header(snapshot.SHARD_FORMAT, dict.fromkeys(FAMILY_ORDER, 1), body)


def _header(kind: str, versions: dict[str, int], body: dict[str, Any]) -> dict[str, Any]:
    """A snapshot header as `flows.runtime.snapshot.read` takes it, at version 1 of
    the runtime and of each part, which is what they were when families began."""
    return {"format": kind, "version": 1, "versions": versions, "body": body}


def _time(value: int | None) -> int:
    return NEVER if value is None else value


def _order(fields: list[Any]) -> Order:
    order = Order()
    order.fc, order.region, order.placed = fields[O_FC], fields[O_REGION], fields[O_PLACED]
    order.ship_by, order.deliver_by = fields[O_SHIP_BY], fields[O_DELIVER_BY]
    old = fields[O_FLAGS]
    order.shipped, order.ship_fc = _time(fields[O_SHIPPED]), fields[O_SHIP_FC]
    order.cancelled, order.delivered = _time(fields[O_CANCELLED]), _time(fields[O_DELIVERED])
    order.picked = UNKNOWN_TIME if old & PICKED else NEVER
    order.packed = UNKNOWN_TIME if old & PACKED else NEVER
    ship = (old & SHIP_DECIDED and 1) | (old & SHIP_COUNTED and 2) | (old & PAST_SHIP and 4)
    delivery = (
        (old & DELIVERY_DECIDED and 1)
        | (old & DELIVERY_COUNTED and 2)
        | (old & PAST_DELIVERY and 4)
    )
    order.flags = ship | delivery << 3
    # Held until each family has decided everything it will (as that release did).
    ship_done = ship & 1 and (order.cancelled != NEVER or (order.shipped != NEVER and ship & 2))
    delivery_done = delivery & 1 and (order.cancelled != NEVER or order.delivered != NEVER)
    order.pending = (0 if ship_done else 1) | (0 if delivery_done else 2)
    return order


def _receipt(fields: list[Any]) -> Receipt:
    fc, received, qty, stowed, stows, awaiting = fields
    receipt = Receipt()
    receipt.fc, receipt.received, receipt.qty = fc, _time(received), qty
    receipt.stowed, receipt.stows, receipt.awaiting = stowed, list(stows), awaiting
    return receipt


def combine_state(old: dict[str, Any]) -> dict[str, Any]:
    """A WindowAggregator's state as a combine-stage snapshot."""
    series = _series(old["ledger"])
    names = ("cockpit_sell_through_ratio", "cockpit_stock_cover_seconds")
    body = {
        "progress": old["progress"],
        "combined_through": old["combined_through"],
        "combiners": {
            "stock": {
                "series": {name: series.get(name, {}) for name in names},
                "state": {
                    "pending": old["pending"],
                    "on_hand": old["on_hand"],
                    "latest": old["latest"],
                },
            }
        },
    }
    return _header(snapshot.COMBINE_FORMAT, {"stock": 1}, body)
