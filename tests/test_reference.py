"""Tests of the batch reference itself, on tiny scenarios computed by hand (which
the engine must give too).

Times are 2026-11-21 (day 21) unless a day is given; lateness is 60 s unless
the case says otherwise, so W = max ts - 60 s while reading and max ts at the end.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.metrics import DOCK_TO_STOCK_BUCKETS
from flows.replay import replay
from flows.settings import Settings
from flows.timeutil import US_PER_SECOND
from tests.reference import (
    PRESENCE_MATTERS,
    compare,
    expected_alerts,
    expected_dead_letters,
    expected_metrics,
    parse_exposition,
)

_ids = itertools.count()


def t(clock: str, day: int = 21) -> str:
    """RFC 3339 time on 2026-11-`day`, from "HH:MM" or "HH:MM:SS[.f]"."""
    return f"2026-11-{day}T{clock}{':00' if len(clock) == 5 else ''}Z"


def ev(type_: str, ts: str | float, **fields: Any) -> dict[str, Any]:
    """An event with a fresh event_id unless one is given."""
    return {"event_id": fields.pop("event_id", f"e{next(_ids)}"), "type": type_, "ts": ts, **fields}


def placed(
    oid: str,
    ts: str,
    ship_by: str,
    deliver_by: str,
    *,
    fc: str = "FC1",
    region: str = "R1",
    qty: int = 1,
) -> dict[str, Any]:
    lines = [{"sku": "sku1", "qty": qty}]
    return ev(
        "order.placed",
        ts,
        order_id=oid,
        fc=fc,
        region=region,
        lines=lines,
        promised_ship_by=ship_by,
        promised_delivery_by=deliver_by,
    )


def shipped(oid: str, ts: str, fc: str = "FC1") -> dict[str, Any]:
    return ev("order.shipped", ts, order_id=oid, fc=fc)


def cancelled(oid: str, ts: str) -> dict[str, Any]:
    return ev("order.cancelled", ts, order_id=oid)


def delivery(oid: str, ts: str, status: str = "delivered") -> dict[str, Any]:
    return ev("delivery.updated", ts, order_id=oid, status=status)


def picked(oid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.picked", ts, order_id=oid, fc=fc, sku="sku1", qty=qty)


def packed(oid: str, ts: str, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.packed", ts, order_id=oid, fc=fc)


def returned(oid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("return.received", ts, order_id=oid, fc=fc, sku="sku1", qty=qty)


def received(rid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.received", ts, receipt_id=rid, fc=fc, sku="sku1", qty=qty)


def stowed(rid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.stowed", ts, receipt_id=rid, fc=fc, sku="sku1", qty=qty)


def adjusted(ts: str, delta: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.adjusted", ts, fc=fc, sku="sku1", delta=delta)


def page(ts: str | int, name: str, load_ms: float, **fields: Any) -> dict[str, Any]:
    return ev("page.viewed", ts, session_id="s1", page=name, load_ms=load_ms, **fields)


def search(ts: str, results: int, latency_ms: float) -> dict[str, Any]:
    return ev(
        "search.performed", ts, session_id="s1", query="q", results=results, latency_ms=latency_ms
    )


def cart(ts: str | float, qty: float = 1, **fields: Any) -> dict[str, Any]:
    return ev("cart.added", ts, session_id="s1", sku="sku1", qty=qty, **fields)


def rec(kind: str, ts: str, widget: str) -> dict[str, Any]:
    return ev(f"recommendation.{kind}", ts, session_id="s1", widget=widget, sku="sku1")


tick = cart  # an event that only moves the watermark (and counts cart units)


def jsonl(*events: dict[str, Any] | bytes) -> list[bytes]:
    """One line per event; bytes are taken as they are."""
    return [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]


def series(spec: dict[str, float]) -> dict[tuple[tuple[str, str], ...], float]:
    """{"fc=FC1,on_time=true": 1} -> {(("fc", "FC1"), ("on_time", "true")): 1.0}."""
    out = {}
    for key, value in spec.items():
        pairs = [kv.split("=", 1) for kv in key.split(",") if kv]
        out[tuple(sorted((k, v) for k, v in pairs))] = float(value)
    return out


@dataclass
class Case:
    """Events, the options they run with, and some of the samples they must give.

    Every sample name in `expect` must have exactly the listed series ({} = none).
    """

    events: list[dict[str, Any] | bytes]
    expect: dict[str, dict[str, Any]]
    alerts: set[tuple[str, str]] | None = None
    options: dict[str, Any] = field(default_factory=dict)


FAR = t("12:00", day=28)  # a promise no case reaches
NEXT = t("12:00", day=23)

CASES = {
    # --- ship SLA
    "shipped exactly at the deadline is on time": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            {**shipped("o1", t("12:00")), "status": "lost"},  # extra fields are ignored
            tick(t("13:00")),
        ],
        {
            "cockpit_orders_shipped_total": {"fc=FC1,on_time=true": 1},
            "cockpit_ship_sla_breaches_total": {},
            "cockpit_order_cycle_seconds_count": {"fc=FC1": 1},
            "cockpit_order_cycle_seconds_sum": {"fc=FC1": 7200},
            "cockpit_orders_awaiting_shipment": {},
        },
        alerts=set(),
    ),
    "shipped a microsecond late breaches": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            shipped("o1", t("12:00:00.000001")),
            tick(t("13:00")),
        ],
        {
            "cockpit_orders_shipped_total": {"fc=FC1,on_time=false": 1},
            "cockpit_ship_sla_breaches_total": {"fc=FC1": 1},
            "cockpit_order_cycle_seconds_sum": {"fc=FC1": 7200.000001},
        },
        alerts={("ship_sla_breach", "o1")},
    ),
    "cancelled at the deadline does not breach": Case(
        [placed("o1", t("10:00"), t("12:00"), NEXT), cancelled("o1", t("12:00")), tick(t("13:00"))],
        {
            "cockpit_ship_sla_breaches_total": {},
            "cockpit_orders_awaiting_shipment": {},
            "cockpit_orders_past_ship_promise": {},
        },
        alerts=set(),
    ),
    "cancelled just after the deadline breaches": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            cancelled("o1", t("12:00:01")),
            tick(t("13:00")),
        ],
        {
            "cockpit_ship_sla_breaches_total": {"fc=FC1": 1},
            "cockpit_orders_awaiting_shipment": {},
        },
        alerts={("ship_sla_breach", "o1")},
    ),
    "cancelled in time then shipped late: no breach, a late shipment": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            cancelled("o1", t("11:00")),
            shipped("o1", t("13:00")),
        ],
        {
            "cockpit_ship_sla_breaches_total": {},
            "cockpit_orders_shipped_total": {"fc=FC1,on_time=false": 1},
        },
        alerts=set(),
    ),
    "deadline equal to the final watermark has not passed": Case(
        [placed("o1", t("10:00"), t("12:00"), NEXT), tick(t("12:00"))],
        {
            "cockpit_ship_sla_breaches_total": {},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1},
            "cockpit_orders_past_ship_promise": {},
            "cockpit_orders_in_stage": {"fc=FC1,stage=placed": 1},
        },
        alerts=set(),
    ),
    "deadline passing with no event of the order breaches": Case(
        [placed("o1", t("10:00"), t("12:00"), NEXT), tick(t("12:00:00.001"))],
        {
            "cockpit_ship_sla_breaches_total": {"fc=FC1": 1},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1},
            "cockpit_orders_past_ship_promise": {"fc=FC1": 1},
        },
        alerts={("ship_sla_breach", "o1")},
    ),
    "orders by stage": Case(
        [
            placed("o1", t("10:00"), FAR, FAR, qty=4),
            placed("o2", t("10:01"), FAR, FAR),
            picked("o2", t("10:02"), 2),
            placed("o3", t("10:03"), FAR, FAR),
            picked("o3", t("10:04"), 3),
            packed("o3", t("10:05")),
            placed("o4", t("10:06"), FAR, FAR, fc="FC2"),
            packed("o4", t("10:07"), fc="FC2"),
            placed("o5", t("10:08"), FAR, FAR),
            shipped("o5", t("10:09")),
        ],
        {
            "cockpit_orders_in_stage": {
                "fc=FC1,stage=placed": 1,
                "fc=FC1,stage=picked": 1,
                "fc=FC1,stage=packed": 1,
                "fc=FC2,stage=packed": 1,
            },
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 3, "fc=FC2": 1},
            "cockpit_units_ordered_total": {"fc=FC1": 7, "fc=FC2": 1},
            "cockpit_units_picked_total": {"fc=FC1": 5},
            "cockpit_units_on_hand": {"fc=FC1": -5},
        },
    ),
    # --- deliveries
    "second delivered is ignored": Case(
        [
            placed("o1", t("10:00"), FAR, t("12:00", day=22)),
            delivery("o1", t("09:00", day=22), "out_for_delivery"),
            delivery("o1", t("11:00", day=22)),
            delivery("o1", t("13:00", day=22)),
        ],
        {
            "cockpit_deliveries_total": {"on_time=true,region=R1": 1},
            "cockpit_late_deliveries_total": {},
            "cockpit_delivery_updates_total": {"status=out_for_delivery": 1, "status=delivered": 2},
            "cockpit_orders_past_delivery_promise": {},
        },
        alerts=set(),
    ),
    "no delivery by the promise is late at once": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            shipped("o1", t("11:00")),
            tick(t("12:00:01", day=22)),
        ],
        {
            "cockpit_late_deliveries_total": {"region=R1": 1},
            "cockpit_orders_past_delivery_promise": {"region=R1": 1},
            "cockpit_deliveries_total": {},
        },
        alerts={("late_delivery", "o1")},
    ),
    "delivered after the promise": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            shipped("o1", t("11:00")),
            delivery("o1", t("12:30", day=22)),
        ],
        {
            "cockpit_late_deliveries_total": {"region=R1": 1},
            "cockpit_deliveries_total": {"on_time=false,region=R1": 1},
            "cockpit_orders_past_delivery_promise": {},
        },
        alerts={("late_delivery", "o1")},
    ),
    "cancelled order is never late for delivery": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            cancelled("o1", t("11:00")),
            tick(t("13:00", day=22)),
        ],
        {"cockpit_late_deliveries_total": {}, "cockpit_orders_past_delivery_promise": {}},
        alerts=set(),
    ),
    # --- arrival order, orphans, leaving state
    "shipment before its order.placed is held and applied": Case(
        [
            shipped("o1", t("10:00:30")),
            placed("o1", t("10:00"), t("12:00"), NEXT),
            tick(t("13:00")),
        ],
        {
            "cockpit_orders_shipped_total": {"fc=FC1,on_time=true": 1},
            "cockpit_order_cycle_seconds_sum": {"fc=FC1": 30},
            "cockpit_events_late_total": {},
            "cockpit_orphan_events_total": {},
        },
        alerts=set(),
    ),
    "events of an order never placed are orphans after 24 h": Case(
        [shipped("o9", t("10:00")), picked("o8", t("10:00"), 3), tick(t("10:00:00.001", day=22))],
        {
            "cockpit_orphan_events_total": {"type=order.shipped": 1, "type=inventory.picked": 1},
            "cockpit_orders_shipped_total": {},
            "cockpit_units_picked_total": {"fc=FC1": 3},  # units count at once
            "cockpit_units_on_hand": {"fc=FC1": -3},
            "cockpit_events_total": {
                "type=order.shipped": 1,
                "type=inventory.picked": 1,
                "type=cart.added": 1,
            },
        },
    ),
    "returns and non-delivered updates are never held": Case(
        [
            returned("o9", t("10:00"), 2),
            delivery("o9", t("10:00"), "out_for_delivery"),
            delivery("o9", t("10:00"), "failed_attempt"),
            delivery("o9", t("10:00")),
            tick(t("10:01", day=22)),
        ],
        {
            "cockpit_delivery_updates_total": {
                "status=out_for_delivery": 1,
                "status=failed_attempt": 1,
                "status=delivered": 1,
            },
            "cockpit_orphan_events_total": {"type=delivery.updated": 1},
        },
    ),
    "events of an order never placed are held for 24 h": Case(
        [shipped("o9", t("10:00")), tick(t("10:00", day=22))],
        {"cockpit_orphan_events_total": {}, "cockpit_orders_shipped_total": {}},
    ),
    "order.placed after the orphan horizon misses the held shipment": Case(
        [
            shipped("o1", t("10:00")),
            tick(t("10:01:01", day=22)),
            placed("o1", t("10:00:30", day=22), t("12:00", day=22), NEXT),
        ],
        {
            "cockpit_orphan_events_total": {"type=order.shipped": 1},
            "cockpit_orders_shipped_total": {},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1},
        },
    ),
    "a second order.placed is ignored": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT, qty=2),
            placed("o1", t("10:01"), t("12:00"), NEXT, fc="FC2", qty=5),
        ],
        {
            "cockpit_units_ordered_total": {"fc=FC1": 2},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1},
            "cockpit_events_total": {"type=order.placed": 2},
        },
    ),
    "an update after the order left state is an orphan": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            shipped("o1", t("11:00")),
            delivery("o1", t("10:00", day=22)),
            delivery("o1", t("12:01", day=22)),  # W = 12:00 has not passed: attached
            tick(t("12:01:00.001", day=22)),  # W passes both promises: the order leaves
            delivery("o1", t("13:00", day=22)),
            tick(t("13:00:01", day=23)),
        ],
        {
            "cockpit_delivery_updates_total": {"status=delivered": 3},
            "cockpit_orphan_events_total": {"type=delivery.updated": 1},
            "cockpit_deliveries_total": {"on_time=true,region=R1": 1},
        },
    ),
    "an event whose own arrival makes its order leave finds it gone": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            cancelled("o1", t("11:00")),
            delivery("o1", t("12:02", day=22)),  # W = 12:01 > both promises
        ],
        {"cockpit_deliveries_total": {}, "cockpit_orders_awaiting_shipment": {}},
    ),
    "an order.placed whose own arrival passes a held event's horizon misses it": Case(
        [shipped("o1", t("10:00")), placed("o1", t("10:01:01", day=22), FAR, FAR)],
        {
            "cockpit_orphan_events_total": {"type=order.shipped": 1},
            "cockpit_orders_shipped_total": {},
        },
    ),
    "order.placed again after the order left state starts a new order": Case(
        [
            placed("o1", t("10:00"), t("12:00"), t("12:00", day=22)),
            cancelled("o1", t("11:00")),
            tick(t("12:01:01", day=22)),
            placed("o1", t("13:00", day=22), FAR, FAR, qty=5),
        ],
        {
            "cockpit_units_ordered_total": {"fc=FC1": 6},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1},
        },
    ),
    "cycle time by the order's fc, shipments by the earliest shipment's fc": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            shipped("o1", t("11:00:30"), fc="FC2"),
            shipped("o1", t("11:00"), fc="FC3"),
        ],
        {
            "cockpit_orders_shipped_total": {"fc=FC3,on_time=true": 1},
            "cockpit_order_cycle_seconds_sum": {"fc=FC1": 3600},
        },
    ),
    # --- receipts
    "partial stows reach the received quantity out of order": Case(
        [
            received("r1", t("08:00"), 10),
            stowed("r1", t("09:30"), 4),
            stowed("r1", t("09:00"), 6),
            stowed("r1", t("10:00"), 5),
            received("r2", t("08:00"), 5),
            stowed("r2", t("08:10"), 2),
        ],
        {
            "cockpit_dock_to_stock_seconds_count": {"fc=FC1": 1},
            "cockpit_dock_to_stock_seconds_sum": {"fc=FC1": 5400},
            "cockpit_dock_to_stock_seconds_bucket": {
                f"fc=FC1,le={float(le)}": int(le >= 7200) for le in DOCK_TO_STOCK_BUCKETS
            }
            | {"fc=FC1,le=+Inf": 1},
            "cockpit_units_stowed_total": {"fc=FC1": 17},
            "cockpit_units_received_total": {"fc=FC1": 15},
            "cockpit_receipts_awaiting_stow": {"fc=FC1": 1},
            "cockpit_units_on_hand": {"fc=FC1": 17},
        },
        options={"lateness_s": 7200},
    ),
    "stow before its receipt is held and applied": Case(
        [stowed("r1", t("08:00:30"), 10), received("r1", t("08:00"), 10)],
        {
            "cockpit_dock_to_stock_seconds_sum": {"fc=FC1": 30},
            "cockpit_receipts_awaiting_stow": {},
            "cockpit_units_stowed_total": {"fc=FC1": 10},
        },
    ),
    "a second inventory.received counts units only": Case(
        [received("r1", t("10:00"), 5), received("r1", t("10:01"), 7), stowed("r1", t("10:30"), 5)],
        {
            "cockpit_units_received_total": {"fc=FC1": 12},
            "cockpit_dock_to_stock_seconds_sum": {"fc=FC1": 1800},
            "cockpit_receipts_awaiting_stow": {},
        },
    ),
    "a receipt leaves state once W reaches its completing stow": Case(
        [
            received("r1", t("10:00"), 5),
            stowed("r1", t("10:30"), 5),
            stowed("r1", t("10:30:30"), 1),  # W = 10:29:30: still attached
            tick(t("10:31:30")),  # W = 10:30:30 reaches 10:30: the receipt leaves
            stowed("r1", t("10:31:30"), 2),
            tick(t("10:31:31", day=22)),
        ],
        {
            "cockpit_units_stowed_total": {"fc=FC1": 8},
            "cockpit_orphan_events_total": {"type=inventory.stowed": 1},
            "cockpit_dock_to_stock_seconds_count": {"fc=FC1": 1},
        },
    ),
    # --- windows: FC1 has 100 adjusted at 08:30, 20 stowed at 09:30, 5 ordered at
    # 09:20, 2 picked at 09:40; FC2 orders 3 at 10:30.
    "sell-through of a quiet window": Case(
        [
            adjusted(t("08:30"), 100),
            received("r1", t("09:05"), 20),
            placed("o1", t("09:20"), FAR, FAR, qty=5),
            stowed("r1", t("09:30"), 20),
            picked("o1", t("09:40"), 2),
            placed("o2", t("10:30"), FAR, FAR, fc="FC2", qty=3),
            tick(t("11:00")),  # latest closed window: [10:00, 11:00)
        ],
        {
            "cockpit_sell_through_ratio": {"fc=FC1": 0.0},  # FC2: divisor 0, not set
            "cockpit_stock_cover_seconds": {"fc=FC2": 0.0},  # FC1: nothing ordered, not set
            "cockpit_units_on_hand": {"fc=FC1": 118},
        },
    ),
    "sell-through of the window before": Case(
        [
            adjusted(t("08:30"), 100),
            received("r1", t("09:05"), 20),
            placed("o1", t("09:20"), FAR, FAR, qty=5),
            stowed("r1", t("09:30"), 20),
            picked("o1", t("09:40"), 2),
            placed("o2", t("10:30"), FAR, FAR, fc="FC2", qty=3),
            tick(t("10:59:59.999")),  # latest closed window: [09:00, 10:00)
        ],
        {
            "cockpit_sell_through_ratio": {"fc=FC1": 5 / (100 + 20)},
            "cockpit_stock_cover_seconds": {"fc=FC1": 118 / (5 * 24) * 86400},
        },
    ),
    "sell-through with two-hour windows": Case(
        [
            adjusted(t("08:30"), 100),
            received("r1", t("09:05"), 20),
            placed("o1", t("09:20"), FAR, FAR, qty=5),
            stowed("r1", t("09:30"), 20),
            picked("o1", t("09:40"), 2),
            placed("o2", t("10:30"), FAR, FAR, fc="FC2", qty=3),
            tick(t("11:00")),  # latest closed window: [08:00, 10:00)
        ],
        {
            "cockpit_sell_through_ratio": {"fc=FC1": 5 / (0 + 20)},
            "cockpit_stock_cover_seconds": {"fc=FC1": 118 / (5 * 12) * 86400},
        },
        options={"window_s": 7200},
    ),
    "adjustments up and down": Case(
        [adjusted(t("10:00"), 5), adjusted(t("10:01"), -3), adjusted(t("10:02"), 0)],
        {
            "cockpit_units_adjusted_total": {"direction=up,fc=FC1": 5, "direction=down,fc=FC1": 3},
            "cockpit_units_on_hand": {"fc=FC1": 2},
            "cockpit_events_total": {"type=inventory.adjusted": 3},
        },
    ),
    # --- duplicates and lateness
    "duplicates are counted by their own type": Case(
        [
            page(t("10:00"), "home", 1, event_id="a"),
            page(t("10:00"), "home", 1, event_id="a"),
            cart(t("10:01"), event_id="a"),
        ],
        {
            "cockpit_events_total": {"type=page.viewed": 1},
            "cockpit_events_duplicate_total": {"type=page.viewed": 1, "type=cart.added": 1},
            "cockpit_page_load_seconds_count": {"page=home": 1},
        },
    ),
    "an id is remembered until W reaches its hour's end + 24 h": Case(
        [
            cart(t("10:30"), event_id="x"),
            tick(t("11:00:59", day=22)),
            cart(t("11:01", day=22), event_id="x"),
        ],
        {"cockpit_events_duplicate_total": {"type=cart.added": 1}},
    ),
    "an id is forgotten once W reaches its hour's end + 24 h": Case(
        [
            cart(t("10:30"), event_id="x"),
            tick(t("11:01", day=22)),
            cart(t("11:01", day=22), event_id="x"),
        ],
        {"cockpit_events_duplicate_total": {}, "cockpit_events_total": {"type=cart.added": 3}},
    ),
    "a duplicate does not renew its id's memory": Case(
        [
            cart(t("10:30"), event_id="x"),
            cart(t("10:30", day=22), event_id="x"),
            tick(t("11:01", day=22)),
            cart(t("11:01", day=22), event_id="x"),
        ],
        {
            "cockpit_events_duplicate_total": {"type=cart.added": 1},
            "cockpit_events_total": {"type=cart.added": 3},
        },
    ),
    "a late event's id is remembered; its repeat is a duplicate": Case(
        [
            tick(t("12:00")),
            page(t("11:00"), "home", 1, event_id="y"),
            page(t("11:00"), "home", 1, event_id="y"),
        ],
        {
            "cockpit_events_late_total": {"type=page.viewed": 1},
            "cockpit_events_duplicate_total": {"type=page.viewed": 1},
        },
    ),
    "an event at W is on time, a microsecond earlier is late": Case(
        [tick(t("12:00")), page(t("11:59"), "home", 1), page(t("11:58:59.999999"), "home", 1)],
        {
            "cockpit_events_total": {"type=cart.added": 1, "type=page.viewed": 1},
            "cockpit_events_late_total": {"type=page.viewed": 1},
        },
    ),
    "a late shipment is ignored": Case(
        [
            placed("o1", t("10:00"), t("12:00"), NEXT),
            tick(t("13:00")),
            shipped("o1", t("11:00")),
        ],
        {
            "cockpit_events_late_total": {"type=order.shipped": 1},
            "cockpit_orders_shipped_total": {},
            "cockpit_ship_sla_breaches_total": {"fc=FC1": 1},
        },
        alerts={("ship_sla_breach", "o1")},
    ),
    # --- time formats, watermark
    "time formats and the watermark": Case(
        [
            page(1795255200000, "home", 1),  # 10:00Z in epoch ms
            page("2026-11-21T11:00:30.1234569+01:00", "home", 1),  # 10:00:30.123456Z
            page(t("10:00:00"), "home", 1),
        ],
        {
            "cockpit_watermark_timestamp_seconds": {"": 1795255230.123456},
            "cockpit_events_total": {"type=page.viewed": 3},
        },
    ),
    # --- storefront
    "web metrics": Case(
        [
            page(t("10:00"), "home", 120),
            page(t("10:00"), "home", 250),
            search(t("10:01"), 0, 50),
            search(t("10:02"), 3, 1000),
            cart(t("10:03"), 2),
            cart(t("10:04"), 3.0),
            rec("shown", t("10:05"), "w1"),
            rec("shown", t("10:05"), "w1"),
            rec("clicked", t("10:06"), "w1"),
        ],
        {
            "cockpit_page_load_seconds_count": {"page=home": 2},
            "cockpit_page_load_seconds_sum": {"page=home": 0.37},
            "cockpit_search_latency_seconds_count": {"": 2},
            "cockpit_search_latency_seconds_sum": {"": 1.05},
            "cockpit_searches_zero_results_total": {"": 1},
            "cockpit_cart_units_added_total": {"": 5},
            "cockpit_recommendations_shown_total": {"widget=w1": 2},
            "cockpit_recommendations_clicked_total": {"widget=w1": 1},
        },
    ),
    # --- labels
    "label overflow folds into other": Case(
        [
            placed("o1", t("10:00"), FAR, FAR, fc="FC1", region="R1"),
            placed("o2", t("10:01"), FAR, FAR, fc="FC2", region="R2"),
            placed("o3", t("10:02"), FAR, FAR, fc="FC3", region="R3"),
            shipped("o3", t("10:03"), fc="FC3"),
            page(t("10:04"), "p1", 1),
            page(t("10:04"), "p2", 1),
            page(t("10:04"), "p3", 1),
            page(t("10:04"), "p3", 1),
        ],
        {
            "cockpit_label_overflow_total": {"label=fc": 2, "label=region": 1, "label=page": 2},
            "cockpit_units_ordered_total": {"fc=FC1": 1, "fc=FC2": 1, "fc=other": 1},
            "cockpit_orders_shipped_total": {"fc=other,on_time=true": 1},
            "cockpit_orders_awaiting_shipment": {"fc=FC1": 1, "fc=FC2": 1},
            "cockpit_page_load_seconds_count": {"page=p1": 1, "page=p2": 1, "page=other": 2},
        },
        options={"max_label_values": 2},
    ),
    "label slots go to values as they are applied": Case(
        [
            placed("o1", t("10:00"), FAR, FAR, fc="FC1", region="R1"),
            placed("o1", t("10:00:01"), FAR, FAR, fc="FC4", region="R4"),  # ignored: no slot
            packed("o1", t("10:00:02"), fc="FC5"),  # the fc of a pack is not used: no slot
            shipped("o2", t("10:00:10"), fc="FC2"),  # held: folds when claimed
            placed("o3", t("10:00:20"), FAR, FAR, fc="FC3", region="R1"),
            placed("o2", t("10:00:05"), FAR, FAR, fc="FC1", region="R1"),
        ],
        {
            "cockpit_label_overflow_total": {"label=fc": 1},
            "cockpit_units_ordered_total": {"fc=FC1": 2, "fc=FC3": 1},
            "cockpit_orders_shipped_total": {"fc=other,on_time=true": 1},
        },
        options={"max_label_values": 2},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_scenario(case: Case) -> None:
    lines = jsonl(*case.events)
    got = expected_metrics(lines, **case.options)
    for name, spec in case.expect.items():
        assert got.get(name, {}) == pytest.approx(series(spec), rel=1e-12), name
    if case.alerts is not None:
        assert expected_alerts(lines, **case.options) == case.alerts


ENGINE_OPTIONS = {"lateness_s": "lateness", "window_s": "window"}  # in seconds there


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_engine_gives_each_case_its_hand_computed_samples(case: Case, tmp_path: Path) -> None:
    """The same cases replayed by the engine: the hand-computed values hold for it
    too, not only for the reference."""
    events, metrics, alerts = tmp_path / "in.jsonl", tmp_path / "m.prom", tmp_path / "a.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in jsonl(*case.events)))
    settings = Settings(
        **{
            ENGINE_OPTIONS.get(name, name): value * US_PER_SECOND
            if name in ENGINE_OPTIONS
            else value
            for name, value in case.options.items()
        }
    )
    replay(settings, str(events), metrics_file=metrics, alerts=alerts)
    got = parse_exposition(metrics.read_text())
    for name, spec in case.expect.items():
        # A series at 0 may be absent (as `compare` takes it), save where presence matters.
        want, have = series(spec), got.get(name, {})
        for key in want.keys() | have.keys():
            if name in PRESENCE_MATTERS:
                assert (key in want) == (key in have), (name, key)
            assert have.get(key, 0.0) == pytest.approx(want.get(key, 0.0), rel=1e-12), (name, key)
    if case.alerts is not None:
        records = [json.loads(line) for line in alerts.read_text().splitlines()]
        orders = {(r["alert"], r["order_id"]) for r in records if "order_id" in r}
        assert orders == case.alerts


def test_dead_letters() -> None:
    ok = cart(t("10:00"))
    lines = jsonl(
        ok,
        b"x" * 401,  # 2: longer than max_event_bytes
        b"[1]",  # 3: not an object
        b"\xff",  # 4: not UTF-8
        b"",  # 5: empty
        json.dumps(cart(t("10:00"))).replace('"qty": 1', '"qty": 1e400').encode(),  # 6
        {"type": "nope"},  # 7
        {"event_id": "q", "ts": 0},  # 8: no type
        {"event_id": "q", "type": None, "ts": 0},  # 9
        cart(t("10:00"), qty=0),  # 10
        cart(t("10:00"), qty=True),  # 11
        cart("2026-02-30T10:00:00Z"),  # 12
        cart("2026-11-21t10:00:00Z"),  # 13
        {**shipped("o1", t("10:00")), "carrier": 5},  # 14: optional field not a string
        b'{"event_id": "n", "type": "search.performed", "ts": 0, "session_id": "s", '
        b'"query": "q", "results": 0, "latency_ms": NaN}',  # 15
        cart(t("10:00"), qty=2.0),  # 16: an integer to JSON Schema
        cart(1795255200000.0),  # 17: ditto
    )
    assert expected_dead_letters(lines, max_event_bytes=400) == [
        (2, "too_large"),
        (3, "invalid_json"),
        (4, "invalid_json"),
        (5, "invalid_json"),
        (6, "invalid_json"),
        (7, "unknown_type"),
        (8, "invalid_event"),
        (9, "invalid_event"),
        (10, "invalid_event"),
        (11, "invalid_event"),
        (12, "invalid_event"),
        (13, "invalid_event"),
        (14, "invalid_event"),
        (15, "invalid_json"),
    ]
    got = expected_metrics(lines, max_event_bytes=400)
    assert got["cockpit_events_total"] == series({"type=cart.added": 3})
    assert got["cockpit_events_rejected_total"] == series(
        {
            "reason=too_large": 1,
            "reason=invalid_json": 5,
            "reason=unknown_type": 1,
            "reason=invalid_event": 7,
        }
    )


@pytest.mark.parametrize(("depth", "reason"), [(1024, None), (1025, "invalid_json")])
def test_nesting_limit(depth: int, reason: str | None) -> None:
    nested = "[" * (depth - 1) + "]" * (depth - 1)
    line = json.dumps(cart(t("10:00"))).removesuffix("}") + f', "x": {nested}}}'
    assert expected_dead_letters([line.encode()]) == ([(1, reason)] if reason else [])


EXPOSITION = """\
# HELP cockpit_events_total Accepted events.
# TYPE cockpit_events_total counter
cockpit_events_total{type="cart.added"} 2.0
cockpit_events_created{type="cart.added"} 1.7e+09
# HELP cockpit_sell_through_ratio x
# TYPE cockpit_sell_through_ratio gauge
cockpit_sell_through_ratio{fc="FC1"} 0.0
# HELP cockpit_units_on_hand x
# TYPE cockpit_units_on_hand gauge
cockpit_units_on_hand{fc="FC1"} 0.0
# HELP cockpit_search_latency_seconds x
# TYPE cockpit_search_latency_seconds histogram
cockpit_search_latency_seconds_bucket{le="0.05"} 0.0
cockpit_search_latency_seconds_bucket{le="+Inf"} 1.0
cockpit_search_latency_seconds_count 1.0
cockpit_search_latency_seconds_sum 0.5
"""


def test_parse_exposition() -> None:
    assert parse_exposition(EXPOSITION) == {
        "cockpit_events_total": series({"type=cart.added": 2}),
        "cockpit_sell_through_ratio": series({"fc=FC1": 0}),
        "cockpit_units_on_hand": series({"fc=FC1": 0}),
        "cockpit_search_latency_seconds_bucket": series({"le=0.05": 0, "le=+Inf": 1}),
        "cockpit_search_latency_seconds_count": series({"": 1}),
        "cockpit_search_latency_seconds_sum": series({"": 0.5}),
    }


def test_compare() -> None:
    actual = parse_exposition(EXPOSITION)
    same = {
        "cockpit_events_total": series({"type=cart.added": 2, "type=page.viewed": 0}),
        "cockpit_sell_through_ratio": series({"fc=FC1": 0}),
        "cockpit_search_latency_seconds_bucket": series({"le=+Inf": 1, "le=0.1": 0}),
        "cockpit_search_latency_seconds_count": series({"": 1}),
        "cockpit_search_latency_seconds_sum": series({"": 0.5 + 1e-12}),
    }
    assert compare(same, actual) == []
    differs = {
        "cockpit_events_total": series({"type=cart.added": 3}),
        "cockpit_units_on_hand": series({"fc=FC2": 1}),
    }
    assert compare(differs, actual) == [
        'cockpit_events_total{type="cart.added"}: expected 3.0, actual 2.0',
        'cockpit_units_on_hand{fc="FC2"}: expected 1.0, actual 0.0',
        'cockpit_search_latency_seconds_bucket{le="+Inf"}: expected 0.0, actual 1.0',
        "cockpit_search_latency_seconds_count{}: expected 0.0, actual 1.0",
        "cockpit_search_latency_seconds_sum{}: expected 0.0, actual 0.5",
        'cockpit_sell_through_ratio{fc="FC1"}: only in actual (value 0.0)',
    ]
    assert compare(differs, actual, metrics=["cockpit_units_on_hand"]) == [
        'cockpit_units_on_hand{fc="FC2"}: expected 1.0, actual 0.0'
    ]


def test_reference_is_independent_of_the_engine() -> None:
    source = (Path(__file__).parent / "reference.py").read_text()
    assert set(re.findall(r"^from (flows\S*) import", source, re.M)) == {"flows.metrics"}
    assert "import flows" not in source
