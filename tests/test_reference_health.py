"""Tests of the §3.2-3.5 batch reference itself, on small scenarios computed by hand.

Day 0 is Monday 2026-06-01 (UTC) unless a case gives its own times. Settings are
the defaults unless a case says otherwise: lateness 60 s, 1 h windows,
demand_days 7, lead_time_days 7, excess_days 90, safety_days 28, service_level
0.95, spike_days 7, spike_min_units 10, spike_factor 3, bottleneck_windows 3,
bottleneck_min 25, conversion_minutes 30, shifts UTC early 06:00, late 14:00,
night 22:00. Events are fed in ts order unless a case needs arrival disorder.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from tests.reference import to_us
from tests.reference_health import (
    AGE_BANDS,
    Result,
    compare,
    compare_records,
    compute,
    local_to_utc,
)

_ids = itertools.count()
DAY0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
FAR = "2027-12-31T00:00:00Z"  # promises no case reaches
Z95 = NormalDist().inv_cdf(0.95)  # 1.6448536269514715
Z99 = NormalDist().inv_cdf(0.99)  # 2.3263478740408408


def at(day: int, clock: str = "00:00") -> str:
    """RFC 3339 of day `day` (0 = 2026-06-01) at "HH:MM" or "HH:MM:SS[.fff]" UTC."""
    h, m, *s = clock.split(":")
    t = DAY0 + dt.timedelta(days=day, hours=int(h), minutes=int(m), seconds=float(s[0] if s else 0))
    return t.isoformat().replace("+00:00", "Z")


def ev(type_: str, ts: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{next(_ids):06d}", "type": type_, "ts": ts, **fields}


def stow(ts: str, qty: int, sku: str = "a", fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.stowed", ts, receipt_id="r-none", fc=fc, sku=sku, qty=qty)


def pick(ts: str, qty: int, sku: str = "a", fc: str = "FC1", oid: str = "o-none") -> dict[str, Any]:
    return ev("inventory.picked", ts, order_id=oid, fc=fc, sku=sku, qty=qty)


def adjust(ts: str, delta: int, sku: str = "a", fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.adjusted", ts, fc=fc, sku=sku, delta=delta)


def order(
    oid: str, ts: str, lines: dict[str, int] | None = None, fc: str = "FC1"
) -> dict[str, Any]:
    return ev(
        "order.placed",
        ts,
        order_id=oid,
        fc=fc,
        region="R1",
        lines=[{"sku": sku, "qty": qty} for sku, qty in (lines or {"a": 1}).items()],
        promised_ship_by=FAR,
        promised_delivery_by=FAR,
    )


def packed(oid: str, ts: str, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.packed", ts, order_id=oid, fc=fc)


def shipped(oid: str, ts: str, fc: str = "FC1") -> dict[str, Any]:
    return ev("order.shipped", ts, order_id=oid, fc=fc)


def cancelled(oid: str, ts: str, **reason: Any) -> dict[str, Any]:
    return ev("order.cancelled", ts, order_id=oid, **reason)


def received(rid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.received", ts, receipt_id=rid, fc=fc, sku="a", qty=qty)


def stowed(rid: str, ts: str, qty: int, fc: str = "FC1") -> dict[str, Any]:
    return ev("inventory.stowed", ts, receipt_id=rid, fc=fc, sku="a", qty=qty)


def returned(oid: str, ts: str, qty: int, fc: str = "FC1", **reason: Any) -> dict[str, Any]:
    return ev("return.received", ts, order_id=oid, fc=fc, sku="a", qty=qty, **reason)


def shown(ts: str, widget: str = "w1") -> dict[str, Any]:
    return ev("recommendation.shown", ts, session_id="s1", widget=widget, sku="a")


def clicked(ts: str, widget: str = "w1", sku: str = "a") -> dict[str, Any]:
    return ev("recommendation.clicked", ts, session_id="s1", widget=widget, sku=sku)


def cart(ts: str, sku: str = "a", session: str = "s1") -> dict[str, Any]:
    return ev("cart.added", ts, session_id=session, sku=sku, qty=1)


def tick(ts: str) -> dict[str, Any]:
    """An event that only moves the watermark."""
    return ev("page.viewed", ts, session_id="s0", page="home", load_ms=1)


def run(*events: dict[str, Any], as_given: bool = False, **settings: Any) -> Result:
    """The reference on `events` (in ts order unless `as_given`)."""
    if not as_given:
        events = tuple(sorted(events, key=lambda e: to_us(e["ts"])))
    return compute([json.dumps(e).encode() for e in events], settings)


def flat(result: Result, name: str, *, zeros: bool = False) -> dict[str, float]:
    """{"fc=FC1,stage=pick": 3.0} for the samples of `name` (without zeros unless asked)."""
    return {
        ",".join(f"{k}={v}" for k, v in key): value
        for key, value in result.samples.get(name, {}).items()
        if zeros or value != 0
    }


def records(result: Result, kind: str, **match: Any) -> list[dict[str, Any]]:
    every = result.records + result.alerts
    return [
        r
        for r in every
        if (r.get("kpi") or r.get("alert")) == kind and all(r[k] == v for k, v in match.items())
    ]


def one(result: Result, kind: str, **match: Any) -> dict[str, Any]:
    (found,) = records(result, kind, **match)
    return found


def ages(**bands: int) -> dict[str, int]:
    """units_by_age with every band, e.g. ages(b0=3) -> {"0-90": 3, ...: 0}."""
    names = [band for band, _ in AGE_BANDS]
    keys = dict(zip(["b0", "b91", "b181", "b271", "b366"], names, strict=True))
    return {band: bands.get(short, 0) for short, band in keys.items()}


# --- §3.2 inventory health -----------------------------------------------------------


def test_cover_exactly_at_the_lead_time_is_not_at_risk() -> None:
    result = run(
        stow(at(0, "09:00"), 7, sku="a"),
        stow(at(0, "09:00"), 6, sku="b"),
        stow(at(0, "09:00"), 6, sku="b", fc="FC2"),
        order("o1", at(0, "10:00"), {"a": 7, "b": 7}),
        order("o2", at(0, "10:00"), {"b": 7}, fc="FC2"),
        tick(at(1)),
        fc={"FC2": {"lead_time_days": 6}},
    )
    # d = 7 units / 7 days = 1 a day. sigma over day -27 .. day 0 (27 zeros and 7):
    # variance = 49/28 - (7/28)^2 = 27/16; safety stock = z * sqrt(27/16) * sqrt(lead time).
    safety = Z95 * math.sqrt(27 / 16) * math.sqrt(7)  # 5.65: below none of them
    assert one(result, "sku_health", fc="FC1", sku="a") == {
        "kpi": "sku_health",
        "fc": "FC1",
        "sku": "a",
        "window_start": at(0),
        "window_end": at(1),
        "on_hand": 7,
        "demand_per_day": 1.0,
        "cover_days": 7.0,  # = lead time: not at risk (cover < lead time is false)
        "safety_stock": pytest.approx(safety, rel=1e-12),
        "states": [],
        "units_by_age": ages(b0=7),
    }
    b = one(result, "sku_health", fc="FC1", sku="b")
    assert (b["cover_days"], b["states"]) == (6.0, ["at_risk"])  # 6 < 7
    fc2 = one(result, "sku_health", fc="FC2", sku="b")  # FC2's own lead time is 6 days
    assert (fc2["cover_days"], fc2["states"]) == (6.0, [])
    assert fc2["safety_stock"] == pytest.approx(Z95 * math.sqrt(27 / 16) * math.sqrt(6))
    assert safety == pytest.approx(5.6532, abs=1e-4)
    assert flat(result, "cockpit_skus_tracked") == {"fc=FC1": 2, "fc=FC2": 1}
    assert flat(result, "cockpit_skus_at_risk") == {"fc=FC1": 1}
    assert flat(result, "cockpit_units_on_hand_by_age") == {
        "age=0-90,fc=FC1": 13,
        "age=0-90,fc=FC2": 6,
    }
    for name in ("out_of_stock", "excess", "below_safety_stock"):
        assert flat(result, f"cockpit_skus_{name}") == {}


def test_excess_at_and_beyond_excess_days_and_without_demand() -> None:
    result = run(
        stow(at(0, "09:00"), 90, sku="a"),
        stow(at(0, "09:00"), 91, sku="b"),
        stow(at(0, "09:00"), 5, sku="c"),
        order("o1", at(0, "10:00"), {"a": 7, "b": 7}),
        tick(at(1)),
    )
    a, b, c = (one(result, "sku_health", sku=sku) for sku in "abc")
    assert (a["cover_days"], a["states"]) == (90.0, [])  # cover > 90 is false at 90
    assert (b["cover_days"], b["states"]) == (91.0, ["excess"])
    assert c["demand_per_day"] == 0.0
    assert c["cover_days"] is None  # no cover without demand
    assert c["safety_stock"] == 0.0  # no orders in 28 days: sigma = 0
    assert c["states"] == ["excess"]  # on hand > 0 and d = 0
    assert flat(result, "cockpit_skus_excess") == {"fc=FC1": 2}


def test_out_of_stock_with_and_without_demand() -> None:
    result = run(
        adjust(at(0, "09:00"), -3, sku="b"),  # negative on hand, no demand
        adjust(at(0, "09:00"), 0, sku="c"),  # exists, on hand 0, no demand: no record
        pick(at(0, "09:30"), 4, sku="d", oid="never-placed"),  # on hand counts it anyway
        order("o1", at(0, "10:00"), {"a": 2}),  # first seen through an order line, no stock
        tick(at(1)),
    )
    # a: on hand 0, d = 2/7. sigma^2 = 4/28 - (2/28)^2 = 27/196; safety 1.61 > 0.
    assert one(result, "sku_health", sku="a") == {
        "kpi": "sku_health",
        "fc": "FC1",
        "sku": "a",
        "window_start": at(0),
        "window_end": at(1),
        "on_hand": 0,
        "demand_per_day": pytest.approx(2 / 7),
        "cover_days": 0.0,
        "safety_stock": pytest.approx(Z95 * math.sqrt(27 / 196) * math.sqrt(7)),
        "states": ["below_safety_stock", "out_of_stock"],
        "units_by_age": ages(),
    }
    b = one(result, "sku_health", sku="b")
    assert (b["on_hand"], b["demand_per_day"], b["cover_days"], b["states"]) == (-3, 0, None, [])
    assert one(result, "sku_health", sku="d")["on_hand"] == -4
    assert records(result, "sku_health", sku="c") == []  # on hand 0 and d = 0
    # an item first seen through an order line at an fc with no stock alerts at once
    assert result.alerts == [
        {
            "alert": "stockout",
            "fc": "FC1",
            "sku": "a",
            "window_end": at(0, "11:00"),
            "on_hand": 0,
            "demand_per_day": pytest.approx(2 / 7),
        }
    ]
    assert flat(result, "cockpit_stockouts_total") == {"fc=FC1": 1}
    assert flat(result, "cockpit_skus_out_of_stock") == {"fc=FC1": 1}
    assert flat(result, "cockpit_skus_below_safety_stock") == {"fc=FC1": 1}
    assert flat(result, "cockpit_skus_tracked") == {"fc=FC1": 4}


def test_stockout_alerts_once_per_edge() -> None:
    result = run(
        order("o1", at(0, "10:00"), {"a": 1}),  # out of stock from the 11:00 close on
        stow(at(0, "13:30"), 5),  # in stock at 14:00 and 15:00
        pick(at(0, "15:30"), 5, oid="o1"),  # out again at 16:00
        tick(at(0, "17:00")),
    )
    assert [(r["window_end"], r["on_hand"]) for r in records(result, "stockout")] == [
        (at(0, "11:00"), 0),
        (at(0, "16:00"), 0),
    ]
    assert flat(result, "cockpit_stockouts_total") == {"fc=FC1": 2}


def test_sigma_over_days_without_orders_and_the_day_containing_b() -> None:
    events = [
        stow(at(-1), 30),
        order("o1", at(0, "10:00"), {"a": 28}),
        order("o2", at(1, "00:30"), {"a": 28}),
        tick(at(2)),
    ]
    result = run(*events)
    day1, day2 = (one(result, "sku_health", window_end=at(n)) for n in (1, 2))
    # At day 1 00:00 the 28 days are day -27 .. day 0: 27 zeros and 28 (o2 is on day 1).
    # mean 1, mean of squares 784/28 = 28: variance 27.
    assert day1["safety_stock"] == pytest.approx(Z95 * math.sqrt(27) * math.sqrt(7))  # 22.61
    assert (day1["cover_days"], day1["states"]) == (7.5, [])  # 30 / (28/7)
    # At day 2 00:00: day -26 .. day 1, two days of 28: mean 2, squares 56, variance 52.
    assert day2["safety_stock"] == pytest.approx(Z95 * math.sqrt(52) * math.sqrt(7))  # 31.38
    assert day2["states"] == ["at_risk", "below_safety_stock"]  # cover 3.75; 30 < 31.38
    assert day2["safety_stock"] == pytest.approx(31.381, abs=1e-3)

    # z for a non-default service level: z(0.99) = 2.326, so day 1 is already below.
    strict = run(*events, service_level=0.99)
    day1 = one(strict, "sku_health", window_end=at(1))
    assert day1["safety_stock"] == pytest.approx(Z99 * math.sqrt(27) * math.sqrt(7))  # 31.98
    assert day1["states"] == ["below_safety_stock"]
    # z(0.5) = 0: no safety stock at all
    assert one(run(*events, service_level=0.5), "sku_health", window_end=at(2))["states"] == [
        "at_risk"
    ]


def test_fifo_ages_across_band_boundaries() -> None:
    d = 400  # evaluated at the close of day 400 00:00
    result = run(
        stow(at(d - 366), 4),  # 366 days: 365+
        stow(at(d - 365), 5),  # 365 days: 271-365
        stow(at(d - 91), 6),  # 91 days: 91-180
        stow(at(d - 91, "01:00"), 7),  # 90 days and 23 h: 90 whole days, 0-90
        stow(at(d - 90), 8),  # 90 days: 0-90
        pick(at(d - 80), 3),  # takes 3 of the oldest lot's 4
        tick(at(d)),
    )
    health = one(result, "sku_health", window_end=at(d))
    assert health["on_hand"] == 27
    assert health["units_by_age"] == ages(b0=15, b91=6, b271=5, b366=1)
    assert flat(result, "cockpit_units_on_hand_by_age") == {
        "age=0-90,fc=FC1": 15,
        "age=91-180,fc=FC1": 6,
        "age=271-365,fc=FC1": 5,
        "age=365+,fc=FC1": 1,
    }


def test_fifo_picks_beyond_the_lots_leave_a_shortfall() -> None:
    result = run(
        stow(at(0), 5),
        pick(at(1), 8),  # takes the 5, shortfall 3: on hand -3, no lots
        stow(at(100), 4),  # fills the shortfall; 1 unit left, dated day 100
        stow(at(199), 2),  # a lot of 2 dated day 199
        tick(at(300)),
    )
    day2 = one(result, "sku_health", window_end=at(2))
    assert (day2["on_hand"], day2["units_by_age"]) == (-3, ages())
    day300 = one(result, "sku_health", window_end=at(300))
    assert (day300["on_hand"], day300["units_by_age"]) == (3, ages(b181=1, b91=2))


def test_items_leave_after_90_idle_days_at_zero_and_come_back_new() -> None:
    events = [
        order("o1", at(0, "10:15"), {"a": 1}),  # a: on hand 0, never stocked
        stow(at(0, "10:15"), 5, sku="b"),  # b: on hand 5, never leaves
    ]
    # At the close of day 90 10:00, o1 (day 0 10:15) is within [b - 90 days, b).
    assert flat(run(*events, tick(at(90, "10:30"))), "cockpit_skus_tracked") == {"fc=FC1": 2}
    # At 11:00 it is not: a leaves.
    assert flat(run(*events, tick(at(90, "11:00"))), "cockpit_skus_tracked") == {"fc=FC1": 1}
    # A later order line makes it exist anew: tracked, and out of stock at its first close.
    again = run(*events, order("o2", at(100, "10:15"), {"a": 1}), tick(at(100, "11:00")))
    assert flat(again, "cockpit_skus_tracked") == {"fc=FC1": 2}
    assert [r["window_end"] for r in records(again, "stockout")] == [
        at(0, "11:00"),
        at(100, "11:00"),
    ]


def test_items_are_tracked_from_the_close_after_their_first_event() -> None:
    result = run(stow(at(0, "10:10"), 1, sku="a"), stow(at(0, "11:10"), 1, sku="b"))
    # W = 11:10: the latest close is 11:00, where only a exists
    assert flat(result, "cockpit_skus_tracked") == {"fc=FC1": 1}


# --- §3.5 demand spikes ----------------------------------------------------------------


def test_spike_exactly_at_the_factor_and_just_below() -> None:
    events = [stow(at(0), 1000, sku="a"), stow(at(0), 1000, sku="b")]
    # 4 units of each in the 10:00-11:00 window of days 1..7
    events += [order(f"o{day}", at(day, "10:30"), {"a": 4, "b": 4}) for day in range(1, 8)]
    events += [order("o8", at(8, "10:30"), {"a": 12, "b": 11}), tick(at(8, "11:00"))]
    result = run(*events)
    # baseline 4, factor 3: 12 is a spike, 11 is not
    assert records(result, "demand_spike") == [
        {
            "alert": "demand_spike",
            "fc": "FC1",
            "sku": "a",
            "window_start": at(8, "10:00"),
            "window_end": at(8, "11:00"),
            "units": 12,
            "baseline": 4.0,
        }
    ]
    assert flat(result, "cockpit_demand_spikes_total") == {"fc=FC1": 1}


def test_spike_factor_is_compared_exactly() -> None:
    events = [stow(at(-1), 1000)]
    events += [order(f"o{day}", at(day, "10:30"), {"a": 10}) for day in range(1, 8)]
    events += [order("o8", at(8, "10:30"), {"a": 11}), tick(at(8, "11:00"))]
    # 11 >= 1.1 x 10 exactly (in floating point 1.1 * 10 = 11.000000000000002)
    result = run(*events, spike_factor=1.1, spike_min_units=11)
    assert [(r["units"], r["baseline"]) for r in records(result, "demand_spike")] == [(11, 10.0)]


def test_a_new_item_does_not_spike() -> None:
    result = run(
        order("o0", at(0, "10:00"), {"x": 1}),  # x exists from exactly a - 7 days
        stow(at(0, "09:59:59.999"), 100, sku="y"),  # y from just before
        order("o1", at(7, "10:30"), {"x": 20, "y": 20, "z": 20}),  # z is brand new
        tick(at(7, "11:00")),
    )
    assert [(r["sku"], r["units"], r["baseline"]) for r in records(result, "demand_spike")] == [
        ("y", 20, 0.0)
    ]


def test_spike_alerts_once_while_it_holds() -> None:
    result = run(
        stow(at(-1), 1000),
        order("o1", at(8, "10:10"), {"a": 12}),  # spike at 11:00 (baseline 0)
        order("o2", at(8, "11:10"), {"a": 15}),  # still a spike at 12:00: no alert
        order("o3", at(8, "13:10"), {"a": 10}),  # none at 13:00, one again at 14:00
        tick(at(8, "15:00")),
    )
    assert [r["window_end"] for r in records(result, "demand_spike")] == [
        at(8, "11:00"),
        at(8, "14:00"),
    ]
    assert flat(result, "cockpit_demand_spikes_total") == {"fc=FC1": 2}


# --- §3.3 fulfilment flow ----------------------------------------------------------------


def test_stage_times_with_events_out_of_order_and_missing_stages() -> None:
    result = run(
        order("o1", at(0, "10:00")),
        pick(at(0, "10:30"), 1, oid="o1"),
        pick(at(0, "10:20"), 1, oid="o1"),  # arrives later, earlier: k1 = 10:20
        packed("o1", at(0, "10:40")),
        packed("o1", at(0, "10:35")),  # k2 = 10:35
        shipped("o1", at(0, "11:00")),
        shipped("o1", at(0, "10:50")),  # s = 10:50
        order("o2", at(0, "10:00")),
        pick(at(0, "10:01"), 1, oid="o2"),  # pick wait 60 s; no pack: nothing else
        order("o3", at(0, "10:00")),
        packed("o3", at(0, "10:05")),  # packed before picked: pick to pack -300 s
        pick(at(0, "10:10"), 1, oid="o3"),
        pick(at(0, "09:58"), 1, oid="o4"),  # held until o4 is placed; pick wait -120 s
        order("o4", at(0, "10:00")),
        pick(at(0, "10:00"), 1, oid="ghost"),  # an order never placed: no stage time
        shipped("o2", at(0, "12:00")),
        as_given=True,
        lateness=7200,  # W = max ts - 2 h: none of these is late
    )
    assert flat(result, "cockpit_pick_wait_seconds_count") == {"fc=FC1": 4}
    assert flat(result, "cockpit_pick_wait_seconds_sum") == {"fc=FC1": 1200 + 60 + 600 - 120}
    assert flat(result, "cockpit_pick_wait_seconds_bucket", zeros=True) == {
        "fc=FC1,le=60.0": 2,  # 60 and -120
        "fc=FC1,le=300.0": 2,
        "fc=FC1,le=900.0": 3,  # 600
        "fc=FC1,le=1800.0": 4,  # 1200
        "fc=FC1,le=3600.0": 4,
        "fc=FC1,le=7200.0": 4,
        "fc=FC1,le=14400.0": 4,
        "fc=FC1,le=28800.0": 4,
        "fc=FC1,le=86400.0": 4,
        "fc=FC1,le=+Inf": 4,
    }
    assert flat(result, "cockpit_pick_to_pack_seconds_count") == {"fc=FC1": 2}
    assert flat(result, "cockpit_pick_to_pack_seconds_sum") == {"fc=FC1": 900 - 300}
    assert flat(result, "cockpit_pick_to_pack_seconds_bucket")["fc=FC1,le=60.0"] == 1
    assert flat(result, "cockpit_pack_to_ship_seconds_count") == {"fc=FC1": 1}
    assert flat(result, "cockpit_pack_to_ship_seconds_sum") == {"fc=FC1": 900}


def test_stage_backlog_across_a_window_boundary() -> None:
    events = [
        order("o2", at(0, "10:10")),
        packed("o2", at(0, "10:20")),  # packed without a pick: stage ship
        order("o3", at(0, "10:15")),
        received("r1", at(0, "10:30"), 5),
        stowed("r1", at(0, "10:45"), 2),
        order("o1", at(0, "10:59:59")),
        pick(at(0, "11:00"), 1, oid="o1"),  # at the close: not picked as of 11:00
        stowed("r1", at(0, "11:00"), 3),  # completes r1, but not as of 11:00
        order("o4", at(0, "11:00")),  # placed at the close: not before it
        cancelled("o3", at(0, "11:30")),
        received("r2", at(0, "11:59:59.999"), 1, fc="FC2"),
        shipped("o2", at(0, "12:00")),  # shipped as of 13:00, not as of 12:00
    ]

    def backlog_at(clock: str) -> dict[str, float]:
        end = to_us(at(0, clock))
        result = run(*(e for e in events if to_us(e["ts"]) <= end), tick(at(0, clock)))
        return flat(result, "cockpit_stage_backlog")

    assert backlog_at("11:00") == {
        "fc=FC1,stage=pick": 2,
        "fc=FC1,stage=ship": 1,
        "fc=FC1,stage=stow": 1,
    }
    assert backlog_at("12:00") == {
        "fc=FC1,stage=pick": 1,  # o4
        "fc=FC1,stage=pack": 1,  # o1
        "fc=FC1,stage=ship": 1,  # o2
        "fc=FC2,stage=stow": 1,  # r2
    }
    assert backlog_at("13:00") == {
        "fc=FC1,stage=pick": 1,
        "fc=FC1,stage=pack": 1,
        "fc=FC2,stage=stow": 1,
    }


def _orders_per_window(fc: str, per_window: dict[str, int]) -> list[dict[str, Any]]:
    """`n` orders placed (never picked) in the window starting at each "HH:MM"."""
    return [
        order(f"{fc}-{start}-{i}", at(0, start), fc=fc)
        for start, n in per_window.items()
        for i in range(n)
    ]


def test_bottleneck_exactly_at_the_minimum() -> None:
    result = run(
        *_orders_per_window("FC1", {"10:00": 5, "11:00": 10, "12:00": 10}),  # 5, 15, 25
        *_orders_per_window("FC2", {"10:00": 5, "11:00": 10, "12:00": 9}),  # 5, 15, 24
        tick(at(0, "13:30")),
    )
    assert records(result, "bottleneck") == [
        {
            "alert": "bottleneck",
            "fc": "FC1",
            "stage": "pick",
            "window_end": at(0, "13:00"),
            "backlog": 25,
            "samples": [5, 15, 25],  # rose from 0 at 10:00
        }
    ]
    assert flat(result, "cockpit_bottleneck") == {"fc=FC1,stage=pick": 1}
    assert flat(result, "cockpit_bottlenecks_total") == {"fc=FC1,stage=pick": 1}
    assert flat(result, "cockpit_stage_backlog") == {
        "fc=FC1,stage=pick": 25,
        "fc=FC2,stage=pick": 24,
    }


def test_bottleneck_whose_rise_pauses_for_a_window() -> None:
    events = _orders_per_window(
        "FC1", {"10:00": 10, "11:00": 10, "13:00": 10, "14:00": 10, "15:00": 10, "16:00": 10}
    )  # backlog 10, 20, 20 (pause), 30, 40, 50, 60 at the closes 11:00 .. 17:00
    shipped_ = [shipped(e["order_id"], at(0, "17:30")) for e in events[:30]]  # 30 at 18:00
    more = _orders_per_window("FC1", {"18:00": 10, "19:00": 10, "20:00": 10})  # 40, 50, 60
    result = run(*events, *shipped_, *more, tick(at(0, "21:00")))
    # 16:00: 20 < 30 < 40 < 50; 17:00 holds still (no alert); 21:00: 30 < 40 < 50 < 60
    assert [(r["window_end"], r["samples"]) for r in records(result, "bottleneck")] == [
        (at(0, "16:00"), [30, 40, 50]),
        (at(0, "21:00"), [40, 50, 60]),
    ]
    assert flat(result, "cockpit_bottlenecks_total") == {"fc=FC1,stage=pick": 2}
    assert flat(result, "cockpit_bottleneck") == {"fc=FC1,stage=pick": 1}
    # one window less to rise: 13:00 -> 14:00 -> 15:00 with 2 windows already at 15:00
    two = run(*events[:50], tick(at(0, "15:00")), bottleneck_windows=2)
    assert [(r["window_end"], r["samples"]) for r in records(two, "bottleneck")] == [
        (at(0, "15:00"), [30, 40])
    ]


# --- §3.3 shifts ---------------------------------------------------------------------------


def utc(text: str) -> str:
    return text + ":00Z"


def second_before(text: str) -> str:
    t = dt.datetime.fromisoformat(text) - dt.timedelta(seconds=1)
    return t.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("zone", "first_pick", "start", "end", "hours"),
    [
        # Europe/Berlin, 29 March 2026: 02:00 CET -> 03:00 CEST at 01:00 UTC
        ("Europe/Berlin", "2026-03-28T21:30", "2026-03-28T21:00", "2026-03-29T04:00", 7),
        # Europe/Berlin, 25 October 2026: 03:00 CEST -> 02:00 CET at 01:00 UTC
        ("Europe/Berlin", "2026-10-24T20:00", "2026-10-24T20:00", "2026-10-25T05:00", 9),
        # America/New_York, 8 March 2026: 02:00 EST -> 03:00 EDT at 07:00 UTC
        ("America/New_York", "2026-03-08T03:00", "2026-03-08T03:00", "2026-03-08T10:00", 7),
        # America/New_York, 1 November 2026: 02:00 EDT -> 01:00 EST at 06:00 UTC
        ("America/New_York", "2026-11-01T05:59", "2026-11-01T02:00", "2026-11-01T11:00", 9),
    ],
)
def test_night_shift_across_a_daylight_saving_change(
    zone: str, first_pick: str, start: str, end: str, hours: int
) -> None:
    """The night shift (22:00 -> 06:00 local) lasts 7 h or 9 h in UTC."""
    result = run(
        pick(utc(first_pick), 3, fc="X"),
        order("o1", utc(first_pick), fc="X"),
        shipped("o1", utc(first_pick), fc="X"),
        pick(second_before(utc(end)), hours * 2 - 3, fc="X"),
        tick(utc(end)),
        fc={"X": {"time_zone": zone}},
    )
    assert records(result, "shift") == [
        {
            "kpi": "shift",
            "fc": "X",
            "shift": "night",
            "window_start": utc(start),
            "window_end": utc(end),
            "hours": hours,
            "units_picked": hours * 2,
            "orders_shipped": 1,
            "value": 2.0,
        }
    ]
    assert flat(result, "cockpit_shift_units_picked_per_hour") == {"fc=X,shift=night": 2.0}


def test_shift_starts_that_do_not_exist_or_occur_twice() -> None:
    berlin = {"time_zone": "Europe/Berlin", "shifts": {"a": "02:00", "b": "02:30", "c": "12:00"}}
    spring = run(
        pick("2026-03-28T12:00:00Z", 1, fc="B"),
        tick("2026-03-30T00:00:00Z"),
        fc={"B": berlin},
    )
    # 29 March: 02:00 and 02:30 do not exist and both move to 03:00 CEST (01:00 UTC):
    # `a` has no length and does not exist that day.
    assert [
        (r["shift"], r["window_start"], r["window_end"], r["hours"])
        for r in records(spring, "shift")
    ] == [
        ("c", "2026-03-28T11:00:00Z", "2026-03-29T01:00:00Z", 14),
        ("b", "2026-03-29T01:00:00Z", "2026-03-29T10:00:00Z", 9),
        ("c", "2026-03-29T10:00:00Z", "2026-03-30T00:00:00Z", 14),
    ]
    autumn = run(
        pick("2026-10-25T00:45:00Z", 1, fc="B"),
        tick("2026-10-25T11:00:00Z"),
        fc={"B": {"time_zone": "Europe/Berlin", "shifts": {"x": "02:30", "y": "12:00"}}},
    )
    # 25 October: 02:30 occurs twice; the first is 02:30 CEST = 00:30 UTC
    assert [
        (r["shift"], r["window_start"], r["window_end"], r["hours"])
        for r in records(autumn, "shift")
    ] == [("x", "2026-10-25T00:30:00Z", "2026-10-25T11:00:00Z", 10.5)]


def test_local_to_utc_moves_a_missing_time_to_the_jump() -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    assert local_to_utc(dt.datetime(2026, 3, 8, 2, 30), ny) == to_us("2026-03-08T07:00:00Z")
    assert local_to_utc(dt.datetime(2026, 11, 1, 1, 30), ny) == to_us("2026-11-01T05:30:00Z")
    assert local_to_utc(dt.datetime(2026, 11, 1, 2, 30), ny) == to_us("2026-11-01T07:30:00Z")


def test_shift_records_start_with_the_first_pick_or_shipment_and_include_idle_ones() -> None:
    result = run(
        order("o1", at(0, "05:00")),
        shipped("o1", at(0, "07:00")),  # the fc's first shipment: early shift of day 0
        order("o2", at(0, "14:30"), {"a": 2}),
        shipped("o2", at(0, "13:00")),  # placed by the later of its ts and 14:30: late
        shipped("ghost", at(0, "15:00")),  # an order never placed: not counted
        pick(at(0, "23:00"), 4, oid="ghost"),  # picks count whether or not the order exists
        tick(at(1, "14:00")),
    )
    assert [
        (r["shift"], r["window_start"], r["hours"], r["units_picked"], r["orders_shipped"])
        for r in records(result, "shift")
    ] == [
        ("early", at(0, "06:00"), 8, 0, 1),
        ("late", at(0, "14:00"), 8, 0, 1),
        ("night", at(0, "22:00"), 8, 4, 0),
        ("early", at(1, "06:00"), 8, 0, 0),  # idle: zeros
    ]
    # the gauges show the latest closed instance of each shift
    assert flat(result, "cockpit_shift_orders_shipped", zeros=True) == {
        "fc=FC1,shift=early": 0,
        "fc=FC1,shift=late": 1,
        "fc=FC1,shift=night": 0,
    }
    assert flat(result, "cockpit_shift_units_picked_per_hour") == {"fc=FC1,shift=night": 0.5}


# --- §3.4 customer experience ----------------------------------------------------------------


def test_recommendation_conversion_window_is_closed_and_decided_when_w_passes_it() -> None:
    result = run(
        cart(at(0, "09:59"), sku="c"),  # before the click: converts nothing
        shown(at(0, "10:00")),
        shown(at(0, "10:00")),
        *(shown(at(0, "10:00"), widget="w2") for _ in range(4)),
        clicked(at(0, "10:00"), sku="a"),  # cart at exactly 30 min: converts
        clicked(at(0, "10:00"), sku="b"),  # cart 30 min and 1 ms later: does not
        clicked(at(0, "10:00"), widget="w2", sku="c"),  # cart of another session only
        cart(at(0, "10:10"), sku="c", session="s2"),
        clicked(at(0, "10:20"), widget="w2", sku="a"),  # the same cart converts it too
        cart(at(0, "10:30"), sku="a"),
        clicked(at(0, "10:30"), widget="w3", sku="a"),  # W - c = 30 min: not decided yet
        cart(at(0, "10:30:00.001"), sku="b"),
        clicked(at(0, "10:31"), widget="w2", sku="a"),  # undecided: W - c = 29 min
        cart(at(0, "10:50"), sku="a"),
        tick(at(0, "11:00")),
    )
    assert flat(result, "cockpit_recommendations_conversions_total") == {
        "widget=w1": 1,
        "widget=w2": 1,
    }
    # click-through of [10:00, 11:00): w1 2/2, w2 3/4, w3 clicked without impressions: not set
    assert flat(result, "cockpit_recommendation_click_through_ratio", zeros=True) == {
        "widget=w1": 1.0,
        "widget=w2": 0.75,
    }
    assert records(result, "click_through_ratio", widget="w2") == [
        {
            "kpi": "click_through_ratio",
            "widget": "w2",
            "window_start": at(0, "10:00"),
            "window_end": at(0, "11:00"),
            "value": 0.75,
            "numerator": 3,
            "divisor": 4,
        }
    ]
    assert records(result, "click_through_ratio", widget="w3") == []


def test_conversion_minutes_setting() -> None:
    events = [clicked(at(0, "10:00")), cart(at(0, "10:10")), tick(at(0, "10:10:00.001"))]
    assert flat(run(*events), "cockpit_recommendations_conversions_total") == {}  # undecided
    converted = run(*events, conversion_minutes=10)
    assert flat(converted, "cockpit_recommendations_conversions_total") == {"widget=w1": 1}


def test_cancellation_ratio() -> None:
    result = run(
        order("o1", at(0, "10:00")),
        cancelled("o1", at(0, "10:30"), reason="customer"),
        order("o2", at(0, "10:10")),
        cancelled("o2", at(0, "11:10"), reason=None),  # into [11, 12): no order placed there
        order("o3", at(0, "10:20")),
        shipped("o3", at(0, "10:40")),
        cancelled("o3", at(0, "10:50")),  # after shipping: not pre-fulfilment
        cancelled("o4", at(0, "12:00"), reason="fraud"),  # before its order.placed ts
        order("o4", at(0, "12:30")),  # ... so placed into [12, 13) by 12:30
        order("o5", at(0, "10:05"), fc="FC2"),
        shipped("o5", at(0, "10:06"), fc="FC2"),
        cancelled("o5", at(0, "10:06")),  # at the shipment's ts: not before it
        cancelled("ghost", at(0, "10:45")),  # an order never placed
        tick(at(0, "13:00")),
    )
    assert [
        (r["fc"], r["window_start"], r["numerator"], r["divisor"], r["value"])
        for r in records(result, "cancellation_ratio")
    ] == [
        ("FC1", at(0, "10:00"), 1, 3, pytest.approx(1 / 3)),
        ("FC1", at(0, "12:00"), 1, 1, 1.0),
        ("FC2", at(0, "10:00"), 0, 1, 0.0),
    ]
    assert flat(result, "cockpit_cancellation_ratio", zeros=True) == {"fc=FC1": 1.0}  # FC2 not set
    assert flat(result, "cockpit_orders_cancelled_total") == {
        "fc=FC1,reason=customer": 1,
        "fc=FC1,reason=unknown": 2,  # null and absent
        "fc=FC1,reason=fraud": 1,
        "fc=FC2,reason=unknown": 1,
    }
    assert flat(result, "cockpit_orders_placed_total") == {"fc=FC1": 4, "fc=FC2": 1}


def test_return_ratio() -> None:
    result = run(
        order("o1", at(0, "10:00"), {"a": 4}),
        shipped("o1", at(0, "10:40")),
        order("o2", at(0, "10:05"), {"a": 2}, fc="FC2"),
        shipped("o2", at(0, "10:06"), fc="FC2"),
        shipped("o2", at(0, "10:20"), fc="FC3"),  # not the earliest shipment
        shipped("ghost", at(0, "10:30")),  # an order never placed
        returned("o1", at(0, "10:50"), 1),
        returned("ghost", at(0, "10:55"), 1, reason="size"),  # returns never wait
        returned("o1", at(0, "11:30"), 2, reason="size"),  # nothing shipped in [11, 12)
        shipped("o3", at(0, "12:10")),
        order("o3", at(0, "12:20"), {"a": 3}),  # shipped into [12, 13) by 12:20
        returned("o3", at(0, "12:40"), 3, reason=None),
        order("o4", at(0, "12:30"), {"a": 1, "b": 1}),
        shipped("o4", at(0, "12:45"), fc="FC2"),  # the shipment's fc
        returned("o2", at(0, "12:10"), 1, fc="FC2", reason="damaged"),
        tick(at(0, "13:00")),
    )
    assert [
        (r["fc"], r["window_start"], r["numerator"], r["divisor"], r["value"])
        for r in records(result, "return_ratio")
    ] == [
        ("FC1", at(0, "10:00"), 2, 4, 0.5),
        ("FC1", at(0, "12:00"), 3, 3, 1.0),
        ("FC2", at(0, "10:00"), 0, 2, 0.0),
        ("FC2", at(0, "12:00"), 1, 2, 0.5),
    ]
    assert flat(result, "cockpit_return_ratio") == {"fc=FC1": 1.0, "fc=FC2": 0.5}
    assert flat(result, "cockpit_units_shipped_total") == {"fc=FC1": 7, "fc=FC2": 4}
    assert flat(result, "cockpit_units_returned_total") == {
        "fc=FC1,reason=unknown": 4,
        "fc=FC1,reason=size": 3,
        "fc=FC2,reason=damaged": 1,
    }


def test_ratios_with_a_zero_divisor_are_not_set() -> None:
    result = run(
        cancelled("ghost", at(0, "10:00")),
        returned("o1", at(0, "10:10"), 1),  # nothing shipped
        clicked(at(0, "10:20")),  # no impressions
        tick(at(0, "11:00")),
    )
    for kpi in ("cancellation_ratio", "return_ratio", "click_through_ratio"):
        assert records(result, kpi) == []
    for name in (
        "cockpit_cancellation_ratio",
        "cockpit_return_ratio",
        "cockpit_recommendation_click_through_ratio",
    ):
        assert result.samples[name] == {}
    # compare tells "not set" from 0 for these gauges
    zero = {"cockpit_return_ratio": {(("fc", "FC1"),): 0.0}}
    assert compare(result.samples, {**result.samples, **zero}) == [
        'cockpit_return_ratio{fc="FC1"}: only in actual (value 0.0)'
    ]


def test_ratio_gauges_show_the_latest_closed_window_only() -> None:
    result = run(
        order("o1", at(0, "10:00")),
        cancelled("o1", at(0, "10:30")),
        tick(at(0, "12:00")),  # latest closed window [11:00, 12:00): nothing placed
    )
    assert len(records(result, "cancellation_ratio")) == 1
    assert result.samples["cockpit_cancellation_ratio"] == {}


# --- event time ----------------------------------------------------------------------------


def _mixed_scenario() -> list[dict[str, Any]]:
    return [
        stow(at(0, "09:00"), 3),
        order("o1", at(0, "09:10"), {"a": 2}),
        pick(at(0, "09:20"), 2, oid="o1"),
        packed("o1", at(0, "09:30")),
        shipped("o1", at(0, "10:10")),
        order("o2", at(0, "09:40"), {"a": 5}),
        cancelled("o2", at(0, "10:20"), reason="customer"),
        received("r1", at(0, "09:50"), 4),
        stowed("r1", at(0, "10:30"), 4),
        returned("o1", at(0, "10:40"), 1),
        shown(at(0, "09:55")),
        clicked(at(0, "09:56")),
        cart(at(0, "10:00")),
        tick(at(1, "01:00")),
    ]


def test_results_do_not_depend_on_the_arrival_order_of_events_that_are_not_late() -> None:
    events = _mixed_scenario()
    forward = run(*events, lateness=2 * 86400)
    backward = run(*reversed(events), as_given=True, lateness=2 * 86400)
    assert forward.samples == backward.samples
    assert forward.records == backward.records
    assert forward.alerts == backward.alerts
    assert len(forward.records) > 5


def test_late_and_duplicate_events_count_in_nothing() -> None:
    events = sorted(_mixed_scenario(), key=lambda e: to_us(e["ts"]))
    late = pick(at(0, "09:00"), 100)  # arrives after W = 1 day 00:59: late
    duplicate = {**order("o9", at(1, "00:30"), {"a": 50}), "event_id": events[1]["event_id"]}
    with_both = run(*events, late, duplicate, as_given=True)
    assert with_both.samples == run(*events).samples
    assert with_both.records == run(*events).records


def test_no_accepted_event_gives_nothing() -> None:
    assert compute([b"not json", b"{}"]) == Result({}, [], [])


# --- the helpers ---------------------------------------------------------------------------


def test_compare_counts_missing_series_as_zero_except_ratios() -> None:
    expected = {
        "cockpit_stockouts_total": {(("fc", "FC1"),): 1.0},
        "cockpit_skus_tracked": {(("fc", "FC1"),): 0.0},
        "cockpit_cancellation_ratio": {(("fc", "FC1"),): 0.5},
    }
    actual = {"cockpit_stockouts_total": {(("fc", "FC1"),): 1.0 + 1e-12}}
    assert compare(expected, actual) == [
        'cockpit_cancellation_ratio{fc="FC1"}: only in expected (value 0.5)'
    ]
    histogram = {"cockpit_pick_wait_seconds_count": {(("fc", "FC1"),): 1.0}}
    assert compare(histogram, {}) == [
        'cockpit_pick_wait_seconds_count{fc="FC1"}: expected 1.0, actual 0.0'
    ]


def test_compare_records_by_key_as_instants_without_decided_ts() -> None:
    expected = [
        {"alert": "stockout", "fc": "F", "sku": "a", "window_end": at(0, "11:00"), "on_hand": 0,
         "demand_per_day": 1 / 7},
        {"kpi": "sell_through", "fc": "F", "window_start": at(0, "10:00")},  # not ours: ignored
    ]  # fmt: skip
    same = [
        {**expected[0], "window_end": "2026-06-01T13:00:00.000+02:00",
         "demand_per_day": 1 / 7 + 1e-15, "decided_ts": at(0, "11:01")},
    ]  # fmt: skip
    assert compare_records(expected, same) == []
    late = [{**same[0], "window_end": at(0, "12:00")}]
    key_11, key_12 = (f"stockout|F|a|{to_us(at(0, t)):020d}" for t in ("11:00", "12:00"))
    diffs = compare_records(expected, late)
    assert [d.split(":")[0] for d in diffs] == [key_11, key_12]
    assert diffs[0].startswith(f"{key_11}: only in expected")
    wrong = [{**same[0], "on_hand": -1}]
    assert compare_records(expected, wrong)[0].startswith(f"{key_11}: expected")


def test_reference_is_independent_of_the_engine() -> None:
    source = (Path(__file__).parent / "reference_health.py").read_text()
    assert not re.findall(r"^(?:from|import) flows", source, re.M)
