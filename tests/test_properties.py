"""Properties: event-time results do not depend on arrival order or batching."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from itertools import islice
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.decode import Reject, decode
from flows.settings import EngineConfig
from flows.simulator import Profile, stream
from flows.timeutil import parse_time
from tests.scenario import Run

START = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
LATENESS = EngineConfig().lateness
# A small network over days (so deliveries come due), little web traffic and no
# transport faults: every reordering below stays within the lateness.
PROFILE = replace(
    Profile(),
    orders_per_hour=60,
    receipts_per_hour=8,
    sessions_per_hour=20,
    duplicate_share=0.0,
    disorder_share=0.0,
    late_share=0.0,
    malformed_share=0.0,
    skus=200,
)


def simulated(seed: int, hours: float) -> list[bytes]:
    end = START + int(hours * 3600e6)
    lines = []
    for arrival, _key, payload in islice(stream(seed, START, PROFILE), 200_000):
        if arrival >= end:
            break
        lines.append(payload)
    return with_customer_events(lines, random.Random(seed))


HORIZON_MS = 30 * 60_000  # conversion_minutes


def with_customer_events(lines: list[bytes], rng: random.Random) -> list[bytes]:
    """The lines, in ts order, with what the simulator makes rarely or only after
    days: after most clicks a cart add of the clicked sku in the click's session
    (just before it, at it, within the conversion horizon, exactly at it or just
    beyond), and returns, with or without a reason, hours after some shipments;
    none after the last line."""
    timed = [(decode(line).ts, line) for line in lines]
    last = max(ts for ts, _line in timed)
    for ts, line in list(timed):
        event = orjson.loads(line)
        if event["type"] == "recommendation.clicked":
            offset = rng.choice([-1, 0, 60_000, HORIZON_MS, HORIZON_MS + 1, None])
            if offset is None:
                continue
            added = {
                "type": "cart.added",
                "session_id": event["session_id"],
                "sku": event["sku"],
                "qty": 1,
            }
        elif event["type"] == "order.shipped" and rng.random() < 0.2:
            offset = rng.randint(3_600_000, 36_000_000)
            added = {
                "type": "return.received",
                "order_id": event["order_id"],
                "fc": event["fc"],
                "sku": "returned",
                "qty": rng.randint(1, 3),
                "reason": rng.choice(["damaged", "did_not_fit", None]),
            }
        else:
            continue
        if ts + offset * 1000 <= last:
            added |= {"event_id": f"added-{event['event_id']}", "ts": ts // 1000 + offset}
            timed.append((ts + offset * 1000, orjson.dumps(added)))
    timed.sort(key=lambda pair: pair[0])
    return [line for _ts, line in timed]


def outcome(lines: list[bytes], batch_sizes: list[int]) -> dict[str, Any]:
    """Everything the engine reports, except state bookkeeping, for lines fed in batches."""
    run = Run()
    position, turn = 0, 0
    while position < len(lines):
        size = batch_sizes[turn % len(batch_sizes)]
        run.feed(*lines[position : position + size])
        position, turn = position + size, turn + 1
    run.finish()
    assert_steps_as_of_decision(run, lines)
    ledgers = {
        name: series
        for ledger in (run.shard.ledger, run.combine.ledger)
        for name, series in ledger.series.items()
        if series and name != "cockpit_state_entries"
    }
    return {
        "metrics": ledgers,
        "alerts": keyed(run, "alert"),
        "kpis": keyed(run, "kpi"),
    }


# Fields that depend on arrival: W when the record was made, and a step named as of it.
AS_DECIDED = ("shipped_ts", "delivered_ts")
ARRIVAL_DEPENDENT = ("decided_ts", *AS_DECIDED)


def keyed(run: Run, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """Records of a kind by their message key, without ARRIVAL_DEPENDENT fields."""
    return sorted(
        (key, {field: value for field, value in record.items() if field not in ARRIVAL_DEPENDENT})
        for k, key, record in run.outputs
        if k == kind
    )


def assert_steps_as_of_decision(run: Run, lines: list[bytes]) -> None:
    """A per-order alert names the order's earliest shipment (delivery) when it is at
    most the alert's decided_ts, and null otherwise (README, Semantics)."""
    earliest: dict[tuple[str, str], int] = {}
    for line in lines:
        event = decode(line)
        if isinstance(event, Reject):
            continue
        if event.kind == "order.shipped":
            field = "shipped_ts"
        elif event.kind == "delivery.updated" and event.status == "delivered":
            field = "delivered_ts"
        else:
            continue
        step = (event.order_id, field)
        earliest[step] = min(earliest.get(step, event.ts), event.ts)
    checked = 0
    for kind, _key, record in run.outputs:
        for field in AS_DECIDED:
            if kind == "alert" and field in record:
                step = earliest.get((record["order_id"], field))
                decided = parse_time(record["decided_ts"])
                happened = None if record[field] is None else parse_time(record[field])
                assert happened == (step if step is not None and step <= decided else None)
                checked += 1
    assert checked > 0  # breaches and late deliveries happen in every simulated run


def reorder(lines: list[bytes], rng: random.Random, max_delay: int) -> list[bytes]:
    """Arrival = ts + a delay in [0, max_delay]; with max_delay <= lateness none is late."""
    timed = []
    for index, line in enumerate(lines):
        event = decode(line)
        ts = event.ts if not isinstance(event, Reject) else 0
        timed.append((ts + rng.randint(0, max_delay), index, line))
    return [line for _arrival, _index, line in sorted(timed)]


BASELINES: dict[int, tuple[list[bytes], dict[str, Any]]] = {}


def baseline(seed: int) -> tuple[list[bytes], dict[str, Any]]:
    if seed not in BASELINES:
        lines = simulated(seed, hours=96)
        BASELINES[seed] = (lines, outcome(lines, [1000]))
    return BASELINES[seed]


@settings(max_examples=10, deadline=None)
@given(
    seed=st.sampled_from([1, 2]),
    shuffle_seed=st.integers(0, 2**32),
    max_delay=st.sampled_from([LATENESS // 10, LATENESS // 2, LATENESS]),
    batch_sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
)
def test_any_reordering_within_the_lateness_gives_identical_results(
    seed, shuffle_seed, max_delay, batch_sizes
):
    lines, expected = baseline(seed)
    shuffled = reorder(lines, random.Random(shuffle_seed), max_delay)
    assert shuffled != lines
    got = outcome(shuffled, batch_sizes)
    assert not any(got["metrics"]["cockpit_events_late_total"].values())
    assert same(got, expected)


def same(a: Any, b: Any) -> bool:
    """Equal, but floats only up to rounding: histogram sums add in arrival order."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_the_scenario_exercises_every_kpi():
    _lines, expected = baseline(1)
    metrics = expected["metrics"]
    for name in (
        "cockpit_ship_sla_breaches_total",
        "cockpit_late_deliveries_total",
        "cockpit_dock_to_stock_seconds",
        "cockpit_sell_through_ratio",
        "cockpit_orders_past_ship_promise",
        "cockpit_receipts_awaiting_stow",
        "cockpit_cancellation_ratio",
        "cockpit_return_ratio",
        "cockpit_recommendation_click_through_ratio",
        "cockpit_shift_units_picked",
        "cockpit_shift_orders_shipped",
        "cockpit_pick_wait_seconds",
        "cockpit_pick_to_pack_seconds",
        "cockpit_pack_to_ship_seconds",
        "cockpit_stage_backlog",
        "cockpit_bottleneck",
    ):
        assert name in metrics, name
    for name in (
        "cockpit_orders_cancelled_total",
        "cockpit_units_returned_total",
        "cockpit_recommendations_conversions_total",
        "cockpit_orders_placed_total",
        "cockpit_units_shipped_total",
        "cockpit_bottlenecks_total",
    ):
        assert sum(metrics[name].values()) > 0, name
    assert expected["alerts"] and expected["kpis"]
    assert {key.split("|")[2] for key, _ in expected["alerts"] if key.startswith("bottleneck|")}
