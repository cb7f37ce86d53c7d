"""Properties: event-time results do not depend on arrival order or batching."""

from __future__ import annotations

import random
import zlib
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from itertools import count, islice
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from flows.decode import Reject, decode
from flows.events import entity_key
from flows.kpisettings import FcSettings, KpiSettings
from flows.ledger import merge_into
from flows.settings import EngineConfig
from flows.simulator import Profile, stream
from flows.timeutil import format_time, parse_time
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
    """A per-order alert names the order's earliest shipment (delivery) when it is
    before the alert's decided_ts, and null otherwise (README, Semantics)."""
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
                assert happened == (step if step is not None and step < decided else None)
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
    assert got == expected  # floats too: histogram sums add whole µs


def nonzero(value: Any) -> bool:
    """A series that shows something: a value other than 0, or a histogram
    (bucket counts, then the sum) that observed something."""
    return any(value[:-1]) if isinstance(value, list) else value != 0


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
        assert any(map(nonzero, metrics[name].values())), name
    for name in (
        "cockpit_orders_cancelled_total",
        "cockpit_units_returned_total",
        "cockpit_recommendations_conversions_total",
        "cockpit_recommendations_decided_total",
        "cockpit_orders_placed_total",
        "cockpit_units_shipped_total",
        "cockpit_bottlenecks_total",
    ):
        assert sum(metrics[name].values()) > 0, name
    assert expected["alerts"] and expected["kpis"]
    assert {key.split("|")[2] for key, _ in expected["alerts"] if key.startswith("bottleneck|")}
    # Inventory health (§3.2, §3.5): alerts counted and written, items in every
    # state at some close, FIFO units in every age band, and the gauges of the
    # latest close holding more than one band and some item out of stock.
    for name in ("cockpit_stockouts_total", "cockpit_demand_spikes_total"):
        assert sum(metrics[name].values()) > 0, name
    alerted = {key.split("|")[0] for key, _ in expected["alerts"]}
    assert {"stockout", "demand_spike"} <= alerted
    health = [record for _key, record in expected["kpis"] if record["kpi"] == "sku_health"]
    assert health
    states = {state for record in health for state in record["states"]}
    assert states == {"out_of_stock", "at_risk", "excess", "below_safety_stock"}
    bands = ("0-90", "91-180", "181-270", "271-365", "365+")
    for band in bands:
        assert any(record["units_by_age"][band] > 0 for record in health), band
    by_age = metrics["cockpit_units_on_hand_by_age"]
    assert len({age for (_fc, age), units in by_age.items() if units > 0}) > 1
    assert sum(metrics["cockpit_skus_tracked"].values()) > 0
    assert sum(metrics["cockpit_skus_out_of_stock"].values()) > 0


# --- hostile scenarios: few ids and fcs, short promises, every order event kind
# (held ones before their order.placed among them), receipts with partial and
# over-stows and stows before them, events exactly at window edges, shift starts
# and deadlines; fed in ts order, in any order that makes nothing late and in
# any batches, split over two shards by entity key, and through snapshots.

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = START + 36 * HOUR  # 2026-11-21T12:00:00Z
SHARDS = ("0", "1")
HELD = (
    "order.shipped",
    "order.cancelled",
    "delivery.updated",
    "inventory.picked",
    "inventory.packed",
)
BERLIN = FcSettings(
    time_zone="Europe/Berlin", shifts=(("a", "07:00"), ("b", "13:30"), ("c", "21:15"))
)
# Shift starts in UTC: the default shifts', and BERLIN's in November (UTC+1).
SHIFT_STARTS = (6 * HOUR, 14 * HOUR, 22 * HOUR, 12 * HOUR + 30 * MINUTE, 20 * HOUR + 15 * MINUTE)
CONVERSION = 30 * MINUTE  # conversion_minutes
Timed = tuple[int, str, bytes]  # (ts, shard, line)


def shard_of(event: dict[str, Any]) -> str:
    """The shard of an event keyed by its entity id, as a producer keys it
    (tests/kafka_broker.keyed): one order, receipt or session stays in one."""
    return SHARDS[zlib.crc32(entity_key(event).encode()) % len(SHARDS)]


def tick(shard: str, ts: int) -> dict[str, Any]:
    """A page view at `ts` in a session of `shard`."""
    view = {"event_id": f"tick{shard}", "type": "page.viewed", "ts": format_time(ts)}
    sessions = (f"tick-{i}" for i in count())
    view["session_id"] = next(s for s in sessions if shard_of({**view, "session_id": s}) == shard)
    return {**view, "page": "tick", "load_ms": 1}


@dataclass(frozen=True)
class Hostile:
    """Engine settings and events in (ts, event_id) order, with the shard of each."""

    config: EngineConfig
    events: tuple[Timed, ...]

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # as hypothesis prints it
        printer.text(repr(self))

    def __repr__(self) -> str:
        config = self.config
        kpi = "default KPI settings" if config.kpi == KpiSettings() else repr(config.kpi)
        lines = "".join(f"\n  {shard} {line.decode()}" for _ts, shard, line in self.events)
        return (
            f"Hostile(lateness {config.lateness // SECOND} s, window "
            f"{config.window // MINUTE} min, {kpi}; shard and line in ts order:{lines})"
        )


class Drawn:
    """The events of a scenario, drawn with hypothesis."""

    def __init__(self, draw: st.DrawFn, lateness: int, window: int, span: int) -> None:
        self.draw, self.lateness, self.span = draw, lateness, span
        days = range(T0 - T0 % DAY, T0 + span, DAY)
        edges = [T0 + k * window for k in range(span // window + 1)] + [
            day + start for day in days for start in SHIFT_STARTS if T0 < day + start < T0 + span
        ]
        # A few of them, so that events of several entities meet at one.
        self.edges = draw(st.lists(st.sampled_from(edges), min_size=1, max_size=4, unique=True))
        self.events: list[tuple[int, dict[str, Any]]] = []

    def pick(self, values: list[Any] | tuple[Any, ...]) -> Any:
        return self.draw(st.sampled_from(tuple(values)))  # a tuple: hypothesis caches it

    def near(self, base: int) -> int:
        """`base`, or just before or after it: by 1 µs, 1 s, the lateness, or minutes."""
        offset = self.pick([0, -1, 1, -SECOND, SECOND, -self.lateness, self.lateness, None])
        return base + (
            self.draw(st.integers(-20 * MINUTE, 20 * MINUTE)) if offset is None else offset
        )

    def time(self, *own: int) -> int:
        """A time near one of an entity's own times (its placing, deadlines, earlier
        events) half the times, near a window edge or shift start a quarter, or
        anywhere in the span."""
        where = self.draw(st.integers(0, 3))
        if where == 0:
            return T0 + self.draw(st.integers(0, self.span))
        return self.near(self.pick(own if own and where > 1 else self.edges))

    def times(self, most: int, own: list[int], ties: bool = False) -> list[int]:
        """Up to `most` times of an entity's events, each near its own times so far
        (which it joins) or not, none twice unless `ties` (shipments and
        cancellations: of two at one ts, the smaller event id is the earlier):
        two deliveries or stows of one entity at one ts are a known deviation."""
        drawn = [self.time(*own) for _ in range(self.draw(st.integers(0, most)))]
        own += drawn
        return drawn if ties else list(dict.fromkeys(drawn))

    def add(self, kind: str, ts: int, **fields: Any) -> None:
        event_id = f"e{len(self.events):03d}"
        self.events.append(
            (ts, {"event_id": event_id, "type": kind, "ts": format_time(ts), **fields})
        )


@st.composite
def hostile_scenarios(draw: st.DrawFn) -> Hostile:
    lateness = draw(
        st.sampled_from([MINUTE, MINUTE, 5 * MINUTE, 40 * MINUTE, 2 * HOUR])
    )  # 1 min x2
    window = draw(st.sampled_from([HOUR, 15 * MINUTE, 30 * MINUTE]))
    span = draw(st.sampled_from([3 * HOUR, 6 * HOUR, 12 * HOUR, 30 * HOUR]))
    g = Drawn(draw, lateness, window, span)
    pick, upto = g.pick, lambda most: draw(st.integers(1, most))
    fcs = ("FC1", "FC2", "FC3")[: draw(st.integers(1, 3))]
    skus = ("S1", "S2", "S3")[: draw(st.integers(1, 3))]
    for number in range(draw(st.integers(0, 6))):  # one order.placed per order
        order = f"o{number}"
        placed = g.time()
        ship_by = placed + pick(
            [MINUTE, 1, 5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, window, -MINUTE]
        )
        deliver_by = ship_by + pick([0, 1, MINUTE, 30 * MINUTE, HOUR, 3 * HOUR])
        fc = pick(fcs)
        lines = [{"sku": pick(skus), "qty": upto(12)} for _ in range(upto(2))]
        g.add(
            "order.placed",
            placed,
            order_id=order,
            fc=fc,
            region=pick(["east", "west"]),
            lines=lines,
            promised_ship_by=format_time(ship_by),
            promised_delivery_by=format_time(deliver_by),
        )
        own = [placed, ship_by, deliver_by]
        for ts in g.times(2, own, ties=True):
            g.add("order.cancelled", ts, order_id=order, reason=pick(["oos", None]))
        for ts in g.times(2, own, ties=True):
            g.add("order.shipped", ts, order_id=order, fc=pick([fc, *fcs]))
        for ts in g.times(2, own):
            status = pick(["delivered", "out_for_delivery", "failed_attempt"])
            g.add("delivery.updated", ts, order_id=order, status=status)
        for ts in g.times(2, own):
            sku = pick(lines)["sku"]
            g.add("inventory.picked", ts, order_id=order, fc=pick([fc, *fcs]), sku=sku, qty=upto(5))
        for ts in g.times(2, own):
            g.add("inventory.packed", ts, order_id=order, fc=fc)
        for ts in g.times(1, own):
            sku, reason = lines[0]["sku"], pick(["damaged", None])
            g.add("return.received", ts, order_id=order, fc=fc, sku=sku, qty=upto(3), reason=reason)
    for number in range(draw(st.integers(0, 4))):
        receipt, received, received_qty = f"r{number}", g.time(), upto(10)
        fc, sku = pick(fcs), pick(skus)
        g.add("inventory.received", received, receipt_id=receipt, fc=fc, sku=sku, qty=received_qty)
        for ts in g.times(4, [received]):  # partial and over-stows, before or after it
            stowed = upto(received_qty + 2)
            g.add(
                "inventory.stowed", ts, receipt_id=receipt, fc=pick([fc, *fcs]), sku=sku, qty=stowed
            )
    for number in range(draw(st.integers(0, 2))):
        # Held events of an order or receipt never seen, each with its own orphan
        # horizon; the input may end, or move W, just before or after one of them.
        base = g.time()
        held = {"fc": pick(fcs), "sku": pick(skus), "qty": 1, "status": "delivered"}
        receipt = draw(st.booleans())
        for ts in dict.fromkeys(g.near(base) for _ in range(draw(st.integers(1, 3)))):
            if receipt:
                g.add("inventory.stowed", ts, receipt_id=f"ghost{number}", **held)
            else:
                g.add(pick(HELD), ts, order_id=f"ghost{number}", **held)
        if draw(st.booleans()):
            g.add("page.viewed", g.near(base + DAY), session_id="s1", page="home", load_ms=1)
    for _ in range(draw(st.integers(0, 4))):
        delta = draw(st.integers(-8, 8))
        g.add("inventory.adjusted", g.time(), fc=pick(fcs), sku=pick(skus), delta=delta)
    for _ in range(draw(st.integers(0, 4))):
        session, widget, sku = pick(["s1", "s2"]), pick(["w1", "w2"]), pick(skus)
        clicked = g.time()
        shown = clicked + pick([0, -1, -MINUTE])
        g.add("recommendation.shown", shown, session_id=session, widget=widget, sku=sku)
        if draw(st.booleans()):
            g.add("recommendation.clicked", clicked, session_id=session, widget=widget, sku=sku)
        if draw(st.booleans()):
            added = clicked + pick([0, -1, 1, CONVERSION, CONVERSION + 1, 10 * MINUTE])
            g.add("cart.added", added, session_id=session, sku=sku, qty=1)
    for _ in range(draw(st.integers(0, 2))):
        page, load = pick(["home", "pdp"]), draw(st.integers(0, 3000))
        g.add("page.viewed", g.time(), session_id=pick(["s1", "s2"]), page=page, load_ms=load)
        g.add(
            "search.performed",
            g.time(),
            session_id="s1",
            query="x",
            results=pick([0, 3]),
            latency_ms=50,
        )
    events = g.events
    for index in draw(st.lists(st.integers(0, 999), max_size=3)):  # exact duplicates
        if events:
            events.append(events[index % len(events)])
    events = without_known_deviations(events)
    last = max((ts for ts, _event in events), default=T0)
    events += [(last, tick(shard, last)) for shard in SHARDS]  # every shard ends at one W
    kpi = KpiSettings()
    if draw(st.booleans()):
        kpi = replace(
            kpi,
            fcs=(("FC2", BERLIN),),
            bottleneck_min=pick([0, 1, 25]),
            bottleneck_windows=pick([1, 2, 3]),
            spike_min_units=pick([1, 10]),
            spike_days=pick([1, 7]),
        )
    return Hostile(
        EngineConfig(lateness=lateness, window=window, kpi=kpi),
        tuple(
            (ts, shard_of(event), orjson.dumps(event))
            for ts, event in sorted(events, key=lambda pair: (pair[0], pair[1]["event_id"]))
        ),
    )


def without_known_deviations(
    events: list[tuple[int, dict[str, Any]]],
) -> list[tuple[int, dict[str, Any]]]:
    """The events less those of the README's known deviations (one at a time: each
    can change an order's earliest shipment or cancellation, or a receipt's
    completing stow)."""
    while True:
        drop = next(deviating(events), None)
        if drop is None:
            return events
        events = [(ts, event) for ts, event in events if event["event_id"] != drop]


def deviating(events: list[tuple[int, dict[str, Any]]]) -> Iterator[str]:
    """Ids of events that could arrive once their order or receipt left state, or that
    its order.placed or inventory.received would find beyond the orphan horizon."""
    unique = {event["event_id"]: (ts, event) for ts, event in events}.values()
    placed = {e["order_id"]: (ts, e) for ts, e in unique if e["type"] == "order.placed"}
    received = {e["receipt_id"]: (ts, e) for ts, e in unique if e["type"] == "inventory.received"}
    shipped: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    delivered = set()
    for ts, e in unique:
        if e["type"] == "order.shipped":
            shipped[e["order_id"]] = min(ts, shipped.get(e["order_id"], ts))
        elif e["type"] == "order.cancelled":
            cancelled[e["order_id"]] = min(ts, cancelled.get(e["order_id"], ts))
        elif e["type"] == "delivery.updated" and e["status"] == "delivered":
            delivered.add(e["order_id"])
    stows: dict[str, list[tuple[int, str, int]]] = {}
    for ts, e in unique:
        if e["type"] in HELD and e["order_id"] in placed:
            order = e["order_id"]
            placed_ts, order_placed = placed[order]
            if ts + DAY < placed_ts:
                yield e["event_id"]  # dropped as an orphan in ts order, not if it comes late
            deadlines = (order_placed["promised_ship_by"], order_placed["promised_delivery_by"])
            # The order can leave state once W passes both deadlines and its earliest
            # cancellation or shipment (then with a delivery in).
            passed_shipment = order in delivered and ts > shipped.get(order, ts)
            if ts > max(map(parse_time, deadlines)) and (
                ts > cancelled.get(order, ts) or passed_shipment
            ):
                yield e["event_id"]
        elif e["type"] == "inventory.stowed" and e["receipt_id"] in received:
            if ts + DAY < received[e["receipt_id"]][0]:
                yield e["event_id"]
            stows.setdefault(e["receipt_id"], []).append((ts, e["event_id"], e["qty"]))
    for receipt, in_order in stows.items():
        stowed, complete = 0, None
        for ts, event_id, qty in sorted(in_order):
            if complete is not None and ts > complete:
                yield event_id  # after the stow that completed the receipt, which then left
            stowed += qty
            if complete is None and stowed >= received[receipt][1]["qty"]:
                complete = ts


def arrival(events: tuple[Timed, ...], choose: Callable[[int], int], lateness: int) -> list[Timed]:
    """The events in the order `choose` makes: of the n events left whose ts is at
    most the smallest ts left + the lateness (in ts order), the one numbered
    choose(n) comes next. So W (largest ts so far - lateness) never passes the
    smallest ts left, and no event is late; and every order that makes none late
    is one of these."""
    left = list(events)
    arrived = []
    while left:
        choices = bisect_right(left, left[0][0] + lateness, key=lambda timed: timed[0])
        arrived.append(left.pop(choose(choices)))
    return arrived


def fed(
    lines: list[bytes], config: EngineConfig, batch_sizes: list[int], restores: Collection[int] = ()
) -> Run:
    """One shard fed the lines in batches, restored from a snapshot after each batch
    that brings the count of lines fed to one in `restores`, or past it."""
    run = Run(config)
    position, turn = 0, 0
    while position < len(lines):
        size = batch_sizes[turn % len(batch_sizes)]
        run.feed(*lines[position : position + size])
        if any(position < mark <= position + size for mark in restores):
            run = run.restored()
        position, turn = position + size, turn + 1
    return run.finish()


def fed_to_shards(
    arrived: list[Timed], config: EngineConfig, batch_sizes: list[int], turns: list[str]
) -> Run:
    """Two shards, each fed its events in the order they arrived, in batches: the
    shard of each turn from `turns`, so that one may run far ahead of the other."""
    run = Run(config, shards=SHARDS)
    queues = {shard: [line for _ts, s, line in arrived if s == shard] for shard in SHARDS}
    turn = 0
    while any(queues.values()):
        shard = turns[turn % len(turns)]
        if not queues[shard]:
            shard = next(other for other in SHARDS if queues[other])
        size = batch_sizes[turn % len(batch_sizes)]
        run.feed(*queues[shard][:size], shard=shard)
        del queues[shard][:size]
        turn += 1
    return run.finish()


def hostile_outcome(run: Run) -> dict[str, Any]:
    """What `outcome` compares, of every shard: series added up (W the smallest),
    without those at 0 (a series exists once a batch touched it, even if back at
    0: README, Updates), and the dead letters too."""
    totals: dict[str, dict[Any, Any]] = {}
    for ledger in [*(shard.ledger for shard in run.every.values()), run.combine.ledger]:
        merge_into(totals, ledger)  # as the exposition adds shards up
    metrics = {
        (name, key): value
        for name, series in totals.items()
        if name != "cockpit_state_entries"
        for key, value in series.items()
    }
    return {
        "metrics": {k: v for k, v in metrics.items() if (any(v) if isinstance(v, list) else v)},
        "alerts": keyed(run, "alert"),
        "kpis": keyed(run, "kpi"),
        "dead letters": keyed(run, "dlq"),
    }


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """What differs, series by series and record by record."""
    found = []
    for name in expected["metrics"].keys() | got["metrics"].keys():
        want, have = expected["metrics"].get(name), got["metrics"].get(name)
        if want is None or have is None or want != have:  # None: at 0
            found.append(f"{name}: {want} in ts order, {have} here")
    for kind in ("alerts", "kpis", "dead letters"):
        want, have = expected[kind], got[kind]
        found += [f"{kind} in ts order only: {r}" for r in want if r not in have]
        found += [f"{kind} here only: {r}" for r in have if r not in want]
        if not found and want != have:
            found.append(f"{kind}: {len(want)} in ts order, {len(have)} here")
    return sorted(found)


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: minutes here
)
@given(scenario=hostile_scenarios(), data=st.data())
def test_hostile_arrival_batches_shards_and_restores_give_identical_results(scenario, data):
    """Contract §2: no KPI depends on the arrival order of events that are not
    late, on batching or on partitioning, and a restore changes nothing."""
    config, events = scenario.config, scenario.events
    lines = [line for _ts, _shard, line in events]
    expected = hostile_outcome(fed(lines, config, [1]))
    sizes = st.lists(st.integers(1, 12), min_size=1, max_size=4)

    def arrived(variant: str, choose: Callable[[int], int] | None = None) -> list[Timed]:
        """The events in an order of their own for a variant: a random one unless
        `choose` is given. (A seed rather than a list of choices as long as the
        events: the draws that follow stay aligned while hypothesis shrinks.)"""
        if choose is None:
            choose = random.Random(
                data.draw(st.integers(0, 2**32), label=f"{variant}, seed")
            ).randrange
        order = arrival(events, choose, config.lateness)
        note(f"{variant}: " + " ".join(orjson.loads(line)["event_id"] for *_, line in order))
        return order

    def check(variant: str, run: Run) -> None:
        got = hostile_outcome(run)
        assert "cockpit_events_late_total" not in {name for name, _key in got["metrics"]}
        if got != expected:
            raise AssertionError(f"{variant}:\n" + "\n".join(differences(expected, got)))

    # Each next event the latest that may come: W as far ahead as it can be.
    latest = [line for *_, line in arrived("latest first", lambda choices: choices - 1)]
    check("latest first", fed(latest, config, data.draw(sizes, label="latest first, batch sizes")))
    reordered = [line for *_, line in arrived("reordered")]
    check("reordered", fed(reordered, config, data.draw(sizes, label="reordered, batch sizes")))
    split = arrived("two shards")
    turns = data.draw(st.lists(st.sampled_from(SHARDS), min_size=1, max_size=6), label="turns")
    batches = data.draw(sizes, label="two shards, batch sizes")
    check("two shards", fed_to_shards(split, config, batches, turns))
    restored = [line for *_, line in arrived("restored")]
    batches = data.draw(sizes, label="restored, batch sizes")
    after = data.draw(st.sets(st.integers(0, 255), min_size=1, max_size=3), label="restores")
    restores = {1 + mark % len(events) for mark in after}  # after as many lines
    check("restored", fed(restored, config, batches, restores))
