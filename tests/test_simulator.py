"""The simulator: deterministic, ordered, valid per the contract, with realistic shares."""

from __future__ import annotations

import io
import statistics
import tomllib
from argparse import Namespace
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain, islice, repeat, takewhile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import orjson
import pytest

from flows import sources
from flows.cluster import CLUSTER_STARTED
from flows.config import load_config
from flows.decode import INVALID_EVENT, INVALID_JSON, UNKNOWN_TYPE, Reject, decode
from flows.events import EVENT_TYPES, entity_key
from flows.live import embedded_wiring, placed, rate_scale
from flows.runtime.consts import MIN_TS
from flows.settings import Runtime, Settings
from flows.simulator import SITES, Profile, stream, write_lines
from flows.sources import (
    MARK_EVERY,
    Marks,
    SimulatorSource,
    latest_of,
    partition_of,
    simulator_parts,
)
from flows.timeutil import parse_time
from tests import reference_health
from tests.reference_health import AGE_BANDS

START = parse_time("2026-11-20T00:00:00Z")
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
LATENESS = 60 * SECOND
CONFIG = Path(__file__).parents[1] / "docker" / "opscockpit.toml"
MINUTE = 60 * SECOND
PROFILE = Profile().scaled(0.1)  # of the run tests' simulator
SHARDS = ("shard-0", "shard-1")


@dataclass
class Line:
    arrival: int
    key: str
    payload: bytes
    decoded: dict[str, Any] | Reject


def simulate(profile: Profile, hours: float, seed: int = 7) -> list[Line]:
    end = START + int(hours * HOUR)
    lines = []
    for arrival, key, payload in stream(seed, START, profile):
        if arrival >= end:
            break
        lines.append(Line(arrival, key, payload, decode(payload)))
    return lines


def events(lines: list[Line]) -> list[dict[str, Any]]:
    """Valid events as dicts (times in microseconds), first copies only."""
    seen: set[str] = set()
    valid = []
    for line in lines:
        event = line.decoded
        if not isinstance(event, Reject) and event.event_id not in seen:
            seen.add(event.event_id)
            valid.append(msgspec.to_builtins(event))
    return valid


@pytest.fixture(scope="module")
def day() -> list[Line]:
    """A simulated day of the default network at a quarter of its traffic."""
    return simulate(Profile().scaled(0.25), 24)


@pytest.fixture(scope="module")
def fulfilment() -> list[dict[str, Any]]:
    """Eight days of orders and receipts only, without transport faults (nor demand
    spikes: in a network this small, their orders would be a tenth of all)."""
    quiet = replace(
        Profile(sessions_per_hour=0, orders_per_hour=30, receipts_per_hour=8, skus=500),
        spikes_per_day=0,
        duplicate_share=0,
        disorder_share=0,
        late_share=0,
        malformed_share=0,
    )
    return events(simulate(quiet, 8 * 24))


def raw(payload: bytes) -> dict[str, Any]:
    """The event as sent, before decoding normalises its times."""
    parsed: dict[str, Any] = orjson.loads(payload)
    return parsed


def test_same_seed_gives_same_bytes() -> None:
    profile = Profile(skus=100)
    first = list(islice(stream(3, START, profile), 10_000))
    assert first == list(islice(stream(3, START, profile), 10_000))
    assert first != list(islice(stream(4, START, profile), 10_000))


def test_arrivals_never_decrease_and_nothing_precedes_the_start(day: list[Line]) -> None:
    arrivals = [line.arrival for line in day]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] >= START
    # Only the opening balances are dated before the start, and they come first,
    # in time order: none of them is late.
    valid = events(day)
    opening = list(takewhile(lambda event: event.get("reason") == "opening_balance", valid))
    assert [event["ts"] for event in opening] == sorted(event["ts"] for event in opening)
    assert opening[-1]["ts"] < START
    assert min(event["ts"] for event in valid[len(opening) :]) >= START


def test_start_between_milliseconds_is_respected() -> None:
    start = START + 1
    emissions = stream(1, start, Profile(skus=100))
    first = next(emissions)
    assert first[0] >= start
    after_opening = next(
        decoded
        for _arrival, _key, payload in emissions
        if not isinstance(decoded := decode(payload), Reject)
        and getattr(decoded, "reason", None) != "opening_balance"
    )
    assert after_opening.ts >= start


def test_valid_lines_decode_with_their_entity_key_and_malformed_ones_are_rejected(
    day: list[Line],
) -> None:
    reasons: Counter[str] = Counter()
    for line in day:
        if line.key == "":
            assert isinstance(line.decoded, Reject), line.payload
            reasons[line.decoded.reason] += 1
        else:
            assert not isinstance(line.decoded, Reject), (line.payload, line.decoded)
            assert line.key == entity_key(raw(line.payload))
    assert set(reasons) == {INVALID_JSON, UNKNOWN_TYPE, INVALID_EVENT}
    assert 0.001 < sum(reasons.values()) / len(day) < 0.003


def test_duplicates_are_exact_resends_shortly_after(day: list[Line]) -> None:
    first: dict[str, Line] = {}
    duplicates = 0
    for line in day:
        if isinstance(line.decoded, Reject):
            continue
        original = first.setdefault(line.decoded.event_id, line)
        if original is not line:
            duplicates += 1
            assert line.payload == original.payload
            assert 0 <= line.arrival - original.arrival <= 30 * SECOND
    assert 0.007 < duplicates / len(day) < 0.013


def test_disorder_stays_within_the_lateness_and_late_events_are_far_beyond(
    day: list[Line],
) -> None:
    """Replays the contract's watermark: only the intentionally late events are late."""
    max_ts = 0
    disordered = late = 0
    seen: set[str] = set()
    for line in day:
        event = line.decoded
        if isinstance(event, Reject) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        delay = line.arrival - event.ts
        is_late = event.ts < max_ts - LATENESS
        if event.ts < START:  # an opening balance: delivered at the start, in time order
            assert not is_late
            max_ts = event.ts
            continue
        assert delay >= 0
        assert is_late == (delay >= 2 * HOUR)
        assert delay < 45 * SECOND or delay >= 2 * HOUR
        disordered += 0 < delay < LATENESS
        late += is_late
        max_ts = max(max_ts, event.ts)
    assert 0.04 < disordered / len(seen) < 0.06
    assert 0.001 < late / len(seen) < 0.003


def test_a_network_of_many_places_and_products(day: list[Line]) -> None:
    valid = events(day)
    kinds = Counter(event["type"] for event in valid)
    assert set(kinds) == set(EVENT_TYPES)
    assert kinds["page.viewed"] > kinds["order.placed"] > kinds["inventory.received"] > 0
    assert {event["fc"] for event in valid if "fc" in event} == set(SITES)
    assert len({event["region"] for event in valid if "region" in event}) == 7
    assert len({event["sku"] for event in valid if "sku" in event}) > 1000
    opening = [event for event in valid if event.get("reason") == "opening_balance"]
    assert len({(event["fc"], event["sku"]) for event in opening}) >= 6 * 3000
    assert all(event["delta"] > 0 for event in opening)
    assert any(event.get("reason") in {"cycle_count", "damaged"} for event in valid)


def test_event_times_come_in_every_allowed_form(day: list[Line]) -> None:
    forms: Counter[str] = Counter()
    for line in day[:50_000]:
        if not isinstance(line.decoded, Reject):
            ts = raw(line.payload)["ts"]
            forms["int" if isinstance(ts, int) else "Z" if str(ts).endswith("Z") else "offset"] += 1
    total = sum(forms.values())
    assert 0.07 < forms["int"] / total < 0.13
    assert 0.005 < forms["offset"] / total < 0.04


def test_traffic_at_full_scale_is_a_few_hundred_thousand_events_a_day(day: list[Line]) -> None:
    opening = sum(line.arrival == START for line in day)
    full_day = 4 * (len(day) - opening) + opening
    assert 300_000 < full_day < 500_000


def test_customers_are_busier_by_day(day: list[Line]) -> None:
    by_hour = Counter(
        (event["ts"] - START) // HOUR for event in events(day) if event["type"] == "page.viewed"
    )
    assert max(by_hour.values()) > 2 * min(by_hour.values())


def test_storefront_behaviour(day: list[Line]) -> None:
    valid = events(day)
    searches = [event for event in valid if event["type"] == "search.performed"]
    assert 0.04 < sum(event["results"] == 0 for event in searches) / len(searches) < 0.1
    kinds = Counter(event["type"] for event in valid)
    assert 0.02 < kinds["recommendation.clicked"] / kinds["recommendation.shown"] < 0.06
    assert len({event["widget"] for event in valid if "widget" in event}) >= 3
    assert len({event["page"] for event in valid if "page" in event}) >= 6
    loads = [event["load_ms"] for event in valid if event["type"] == "page.viewed"]
    assert statistics.mean(loads) > statistics.median(loads) > 100  # skewed to the right


@dataclass
class Order:
    """An order's lifecycle as its events tell it."""

    fc: str = ""
    placed: int = 0
    ship_by: int = 0
    deliver_by: int = 0
    units: dict[str, int] = field(default_factory=dict)
    shipped: int | None = None
    cancelled: int | None = None
    reason: str | None = None
    packed: int | None = None
    picks: list[int] = field(default_factory=list)
    picked: list[tuple[str, int]] = field(default_factory=list)
    scans: list[tuple[int, str]] = field(default_factory=list)
    returns: list[tuple[int, str, int]] = field(default_factory=list)

    def deliveries(self) -> list[int]:
        return sorted(ts for ts, status in self.scans if status == "delivered")


def orders(valid: list[dict[str, Any]]) -> dict[str, Order]:
    found: dict[str, Order] = defaultdict(Order)
    for event in valid:
        if "order_id" not in event:
            continue
        order = found[event["order_id"]]
        kind, ts = event["type"], event["ts"]
        if kind == "order.placed":
            order.fc, order.placed, order.ship_by = event["fc"], ts, event["promised_ship_by"]
            order.deliver_by = event["promised_delivery_by"]
            order.units = {line["sku"]: line["qty"] for line in event["lines"]}
        elif kind == "order.shipped":
            order.shipped = ts
        elif kind == "order.cancelled":
            order.cancelled, order.reason = ts, event["reason"]
        elif kind == "inventory.picked":
            order.picks.append(ts)
            order.picked.append((event["sku"], event["qty"]))
        elif kind == "inventory.packed":
            order.packed = ts
        elif kind == "delivery.updated":
            order.scans.append((ts, event["status"]))
        elif kind == "return.received":
            order.returns.append((ts, event["sku"], event["qty"]))
    return found


def ship_fate(order: Order) -> str:
    if order.shipped is not None:  # some are cancelled after shipping (intercepted)
        return "shipped late" if order.shipped > order.ship_by else "on time"
    if order.reason == "out_of_stock":
        return "out of stock"
    if order.cancelled is not None:
        return "cancelled early" if order.cancelled <= order.ship_by else "cancelled late"
    return "never shipped"


def test_orders_end_in_realistic_shares(fulfilment: list[dict[str, Any]]) -> None:
    # Orders of the first three days are long past their ship promise.
    placed = [order for order in orders(fulfilment).values() if order.placed]
    cohort = [order for order in placed if order.placed < START + 3 * DAY]
    assert len(cohort) > 2000
    fates = Counter(ship_fate(order) for order in cohort)
    assert 0.03 < fates["shipped late"] / len(cohort) < 0.08
    assert 0 < fates["out of stock"] / len(cohort) < 0.02
    assert 0.004 < fates["never shipped"] / len(cohort) < 0.02
    assert 0.01 < fates["cancelled early"] / len(cohort) < 0.03
    assert 0.002 < fates["cancelled late"] / len(cohort) < 0.015
    assert all(4 * HOUR <= order.ship_by - order.placed <= 16 * HOUR for order in cohort)
    assert all(8 * HOUR <= order.deliver_by - order.ship_by <= 5 * DAY for order in cohort)


def test_shipped_orders_are_picked_packed_and_mostly_delivered(
    fulfilment: list[dict[str, Any]],
) -> None:
    shipped = [order for order in orders(fulfilment).values() if order.shipped is not None]
    intercepted = 0
    for order in shipped:
        shipped_at, packed_at = order.shipped, order.packed
        assert shipped_at is not None and packed_at is not None
        assert sorted(order.picked) == sorted(order.units.items())  # one pick per line
        assert all(order.placed <= pick <= packed_at <= shipped_at for pick in order.picks)
        assert all(ts >= shipped_at for ts, _status in order.scans)
        assert not order.scans or min(order.scans)[1] == "out_for_delivery"
        if order.cancelled is not None:  # after shipping: sent back, never delivered
            assert order.cancelled > shipped_at and not order.scans
            intercepted += 1
    assert 0 < intercepted / len(shipped) < 0.01
    # Deliveries come at most two days after the promise: these are all decided.
    decided = [
        order for order in shipped if order.deliver_by < START + 6 * DAY and order.cancelled is None
    ]
    lost = sum(not order.deliveries() for order in decided)
    late = sum(order.deliveries()[0] > order.deliver_by for order in decided if order.deliveries())
    assert 0.002 < lost / len(decided) < 0.015
    assert 0.04 < late / len(decided) < 0.1
    assert any(len(order.deliveries()) > 1 for order in decided)
    assert any(status == "failed_attempt" for order in decided for _ts, status in order.scans)


def test_some_deliveries_are_returned_days_later(fulfilment: list[dict[str, Any]]) -> None:
    returned = [order for order in orders(fulfilment).values() if order.returns and order.placed]
    assert returned
    for order in returned:
        [(ts, sku, qty)] = order.returns
        assert 0 < qty <= order.units[sku]
        assert ts >= order.deliveries()[0] + 2 * DAY


def test_receipts_are_stowed_partially_and_slowly(fulfilment: list[dict[str, Any]]) -> None:
    received: dict[str, tuple[int, int]] = {}
    stows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for event in fulfilment:
        if event["type"] == "inventory.received":
            received[event["receipt_id"]] = (event["ts"], event["qty"])
        elif event["type"] == "inventory.stowed":
            stows[event["receipt_id"]].append((event["ts"], event["qty"]))
    cohort = [rid for rid, (ts, _qty) in received.items() if ts < START + 5 * DAY]
    complete = []
    for receipt_id in cohort:
        ts, qty = received[receipt_id]
        assert all(stowed_at >= ts for stowed_at, _qty in stows[receipt_id])
        stowed = sum(stowed_qty for _ts, stowed_qty in stows[receipt_id])
        assert stowed <= qty
        if stowed == qty:
            complete.append(max(stowed_at for stowed_at, _qty in stows[receipt_id]) - ts)
    assert 0.005 < (len(cohort) - len(complete)) / len(cohort) < 0.05
    assert sum(len(stows[receipt_id]) > 1 for receipt_id in cohort) > len(cohort) / 2
    assert min(complete) < HOUR
    assert sum(took > DAY for took in complete) > 0
    assert statistics.median(complete) > HOUR


TRAFFIC_RATES = (
    "orders_per_hour",
    "receipts_per_hour",
    "sessions_per_hour",
    "adjustments_per_hour",
)


def test_scaled_multiplies_every_traffic_rate_and_nothing_else() -> None:
    """The whole profile compared: the four rates doubled, every other field as it was."""
    base = Profile()
    doubled = {name: 2 * getattr(base, name) for name in TRAFFIC_RATES}
    assert base.scaled(2) == replace(base, **doubled)


@pytest.mark.parametrize("start", ["2026-11-20T00:00:00Z", "2026-11-20T13:30:00.0005Z"])
def test_the_scale_of_a_live_rate_gives_that_rate_after_the_opening_stock(start: str) -> None:
    """`simulate --rate N`: about N events/s over the hours after the start. The opening
    stock, arriving at the start whatever the scale, comes on top and counts for nothing."""
    begin, rate, hours = parse_time(start), 5.0, 6
    profile = Profile().scaled(rate_scale(1, begin, rate))
    within = list(takewhile(lambda e: e[0] < begin + hours * HOUR, stream(1, begin, profile)))
    opening = [arrival for arrival, _key, payload in within if b'"opening_balance"' in payload]
    assert len(opening) > 10_000 and set(opening) == {within[0][0]}
    steady = (len(within) - len(opening)) / (hours * 3600)
    assert steady == pytest.approx(rate, rel=0.05)


def test_write_lines_stops_before_the_end() -> None:
    profile = Profile().scaled(0.1)
    out = io.BytesIO()
    written = write_lines(out, 1, START, START + HOUR, profile)
    lines = out.getvalue().splitlines()
    assert written == len(lines) > 15_000
    within = takewhile(lambda emission: emission[0] < START + HOUR, stream(1, START, profile))
    assert lines == [payload for _arrival, _key, payload in within]


def test_stage_times_vary_by_fc_and_hour_of_day(fulfilment: list[dict[str, Any]]) -> None:
    """Pick waits differ between fcs, are longer with a night crew, and Berlin's
    floor, closed at night, picks nothing between 23:00 and 06:00 local time."""
    waits: dict[tuple[str, bool], list[int]] = defaultdict(list)
    berlin_hours = set()
    for order in orders(fulfilment).values():
        if not order.picks or not order.placed:
            continue
        zone = ZoneInfo(SITES[order.fc].time_zone)
        local = datetime.fromtimestamp(order.placed / SECOND, zone).hour
        waits[order.fc, 6 <= local < 22].append(min(order.picks) - order.placed)
        if order.fc == "FC-BER1":
            berlin_hours |= {datetime.fromtimestamp(t / SECOND, zone).hour for t in order.picks}
    by_day = {fc: statistics.median(waits[fc, True]) for fc in SITES}
    assert max(by_day.values()) > 1.5 * min(by_day.values())
    assert statistics.median(waits["FC-ATL1", False]) > 1.5 * by_day["FC-ATL1"]
    assert berlin_hours and berlin_hours.isdisjoint({23, 0, 1, 2, 3, 4, 5})


def test_opening_stock_has_lots_of_every_age_and_dead_stock(day: list[Line]) -> None:
    opening = [event for event in events(day) if event.get("reason") == "opening_balance"]
    ages = Counter()
    for event in opening:
        days = (START - event["ts"]) // DAY
        ages[next(band for band, top in AGE_BANDS if top is None or days <= top)] += 1
    assert set(ages) == {band for band, _top in AGE_BANDS}
    assert ages["0-90"] > 0.95 * len(opening)  # old stock is the exception
    ordered = {line["sku"] for event in events(day) if "lines" in event for line in event["lines"]}
    assert {event["sku"] for event in opening} - ordered  # some items nobody orders


def test_the_compose_and_make_run_config_gives_every_fc_its_time_zone() -> None:
    config = load_config(CONFIG)
    zones = {fc: settings.time_zone for fc, settings in config.kpi.fcs}
    assert zones == {fc: site.time_zone for fc, site in SITES.items()}
    assert len(set(zones.values())) >= 4


@pytest.fixture(scope="module")
def backfill() -> list[bytes]:
    """What `make run` replays first: 48 h of the default network (seed 1), at a tenth
    of its traffic so that the slow reference stays quick."""
    start = parse_time("2026-11-18T09:37:00Z")  # make run starts on a whole minute
    out = io.BytesIO()
    write_lines(out, 1, start, start + 48 * HOUR, Profile().scaled(0.1))
    return out.getvalue().splitlines()


def test_the_backfill_of_make_run_shows_every_cockpit_kpi(backfill: list[bytes]) -> None:
    """The independent reference (tests/reference_health.py) on the backfill, with
    the fcs' time zones and shifts of docker/opscockpit.toml: every detector fires
    and every new panel has something to show within the cockpit's first minutes."""
    settings = tomllib.loads(CONFIG.read_text())
    result = reference_health.compute(backfill, settings)
    alerts = Counter((alert["alert"], alert.get("stage")) for alert in result.alerts)
    assert alerts["stockout", None] >= 1
    assert alerts["demand_spike", None] >= 1
    assert alerts["bottleneck", "pack"] >= 1

    def total(metric: str, label: str) -> Counter[str]:
        summed: Counter[str] = Counter()
        for labels, value in result.samples[metric].items():
            summed[dict(labels)[label]] += value
        return summed

    by_age = total("cockpit_units_on_hand_by_age", "age")
    assert all(by_age[band] > 0 for band, _top in AGE_BANDS), by_age
    zones = {
        settings["fc"][record["fc"]]["time_zone"]
        for record in result.records
        if record["kpi"] == "shift"
    }
    assert len(zones) >= 2
    for metric in ("cockpit_orders_cancelled_total", "cockpit_units_returned_total"):
        reasons = total(metric, "reason")
        assert reasons["unknown"] > 0 and len(reasons) >= 4, (metric, reasons)
    conversions = sum(result.samples["cockpit_recommendations_conversions_total"].values())
    clicks = sum(b'"recommendation.clicked"' in line for line in backfill)
    assert 0 < conversions < clicks


class Clock:
    """Wall-clock time a test moves."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def simulator_source(
    shards: int, clock: Clock, batch_size: int = 500, idle_timeout: int = 30 * SECOND
) -> SimulatorSource:
    """The embedded simulator of `run` with a partition per shard and 2 h of backfill."""
    runtime = Runtime(Settings(batch_size=batch_size, idle_timeout=idle_timeout), clock=clock)
    shard_of = {index: f"shard-{index}" for index in range(shards)}
    return SimulatorSource(
        "simulator", lambda start: stream(3, start, PROFILE), shard_of, 2 * HOUR, runtime
    )


def released(
    source: SimulatorSource, part: str, resume: tuple[int, int] | None = None, batches: int = -1
) -> tuple[list[Any], Any]:
    """The messages a partition sends until it has released what is due (or `batches`)."""
    partition = source.build_part("input", part, resume)
    messages: list[Any] = []
    while batches != 0 and (batch := partition.next_batch()):
        messages += batch
        batches -= 1
    return messages, partition


def identity(item: Any) -> Any:
    """An event by its id and time; a reject by its payload and origin."""
    if isinstance(item, Reject):
        return ("reject", item.payload, item.origin["sequence"])
    return (item.event_id, item.ts)


def test_partitions_of_the_simulator_hold_the_events_of_their_keys_once_each() -> None:
    """`run --workers/--processes N` splits the simulator into N partitions, each a
    shard's, as `simulate --kafka` into an N-partition topic keyed by entity would:
    together they release what the one partition does, each event once, every event
    of a key in the same partition, and each tells every shard its progress."""
    now = START + 2 * HOUR
    one = simulator_source(1, Clock(now))
    assert one.parts == ["simulator"]
    messages, _ = released(one, "simulator")
    assert {(shard, message[0]) for shard, message in messages} == {
        ("shard-0", "events"),
        ("shard-0", "mark"),
    }
    whole = Counter(identity(item) for message in events_of(messages) for item in message[3])
    assert len(whole) > 10_000

    start = (now - 2 * HOUR) // MINUTE * MINUTE
    due = list(takewhile(lambda emission: emission[0] <= now, stream(3, start, PROFILE)))
    together: Counter[Any] = Counter()
    for index, part in enumerate(simulator_parts("simulator", 2)):
        clock = Clock(now)
        messages, partition = released(simulator_source(2, clock, idle_timeout=1), part)
        events = [(shard, message) for shard, message in messages if message[0] == "events"]
        assert {shard for shard, _message in events} == {f"shard-{index}"}
        sizes = [len(message[3]) for _shard, message in events]
        assert max(sizes) == 500 and sizes[0] > 375  # a batch of its own from the whole's
        items = [item for _shard, (_kind, _s, _p, items) in events for item in items]
        together.update(identity(item) for item in items)
        mine = [key for _arrival, key, _payload in due if partition_of(key, 2) == index]
        assert len(items) == len(mine) > 1_000  # the partition of each event's entity key
        # Its progress for every shard: after its first batch (then at most every
        # MARK_EVERY of the wall clock), and at once when it turns idle, caught up
        # with nothing new for the idle timeout.
        first = max(item.ts for item in events[0][1][3])
        marks = [message for _shard, message in messages if message[0] == "mark"]
        assert marks == [("mark", shard, part, first, False) for shard in SHARDS]
        arrival = partition.simulation.next_arrival(partition.index)
        assert arrival - 1 > now
        clock.now = arrival - 1
        latest = max(item.ts for item in items)
        assert partition.next_batch() == [
            (shard, ("mark", shard, part, latest, True)) for shard in SHARDS
        ]
    assert together == whole


def test_a_simulator_partition_resumes_after_what_it_had_passed() -> None:
    source = simulator_source(2, Clock(START + 2 * HOUR), batch_size=200)
    everything, _ = released(source, "simulator:1")
    first, partition = released(source, "simulator:1", batches=3)
    rest, _ = released(source, "simulator:1", partition.snapshot())
    assert events_of(first + rest) == events_of(everything)
    assert events_of(first) and events_of(rest)


PARTS = simulator_parts("simulator", 2)


def counted(source: SimulatorSource) -> list[int]:
    """How many emissions each run of the source's simulation generates."""
    runs: list[int] = []
    stream_from = source.stream_from

    def counting(start: int) -> Iterator[tuple[int, str, bytes]]:
        runs.append(0)
        run = len(runs) - 1
        for emission in stream_from(start):
            runs[run] += 1
            yield emission

    source.stream_from = counting
    return runs


def items_of(messages: list[Any]) -> list[Any]:
    return [identity(item) for message in events_of(messages) for item in message[3]]


def take_turns(partitions: list[Any]) -> list[list[Any]]:
    """What each partition releases, called in turn until none releases events."""
    taken: list[list[Any]] = [[] for _ in partitions]
    while True:
        batches = [partition.next_batch() for partition in partitions]
        if not any(events_of(batch) for batch in batches):
            return taken
        for index, batch in enumerate(batches):
            taken[index] += items_of(batch)


def test_the_partitions_of_a_process_share_one_run_of_the_simulation() -> None:
    """Workers of one process run the simulation once between them (N runs under one
    GIL took N times as long), each still releasing exactly its own events."""
    now = START + 2 * HOUR
    alone = [items_of(released(simulator_source(2, Clock(now)), part)[0]) for part in PARTS]
    source = simulator_source(2, Clock(now))
    runs = counted(source)
    partitions = [source.build_part("input", part, None) for part in PARTS]
    assert partitions[0].simulation is partitions[1].simulation
    assert take_turns(partitions) == alone
    start = (now - 2 * HOUR) // MINUTE * MINUTE
    due = sum(1 for _ in takewhile(lambda emission: emission[0] <= now, stream(3, start, PROFILE)))
    assert runs == [due + 1]  # one run, to the first emission not due yet


@pytest.mark.parametrize(
    ("order", "running"),
    [((0, 1), False), ((1, 0), False), ((1, 0), True)],
    ids=["further first", "nearer first", "nearer first and running"],
)
def test_partitions_resuming_at_different_points_share_a_run(
    order: tuple[int, int], running: bool
) -> None:
    """Each partition resumes after what it had taken (its own position in the run);
    they share a run whichever is built first, as long as the run has not generated
    past the other's position."""
    clock = Clock(START + 2 * HOUR)
    everything = [items_of(released(simulator_source(2, clock), part)[0]) for part in PARTS]
    before = simulator_source(2, clock, batch_size=200)
    partitions = [before.build_part("input", part, None) for part in PARTS]
    first = [items_of(partitions[0].next_batch() + partitions[0].next_batch())]
    first.append(items_of(partitions[1].next_batch()))
    resumes = [partition.snapshot() for partition in partitions]
    assert resumes[0][1] > resumes[1][1] > 0
    after = simulator_source(2, clock, batch_size=200)
    built, ahead = {}, []  # what the nearer one took before the other was built
    for index in order:
        built[index] = after.build_part("input", PARTS[index], resumes[index])
        if running and index == 1:
            ahead = items_of(built[1].next_batch())
    resumed = [built[0], built[1]]
    assert resumed[0].simulation is resumed[1].simulation
    rest = take_turns(resumed)
    rest[1] = ahead + rest[1]
    assert [first[index] + rest[index] for index in (0, 1)] == everything
    assert all(first) and all(rest)


def test_a_partition_built_after_its_queue_overflowed_runs_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition of the process not built yet has its events kept only up to
    UNCLAIMED_MAX (placement said it is this process's, and it may never come):
    built later, it runs the simulation on its own, and misses nothing."""
    monkeypatch.setattr(sources, "UNCLAIMED_MAX", 100)
    clock = Clock(START + 2 * HOUR)
    alone = items_of(released(simulator_source(2, clock), PARTS[1])[0])
    source = simulator_source(2, clock)
    runs = counted(source)
    first = source.build_part("input", PARTS[0], None)
    take_turns([first])
    late = source.build_part("input", PARTS[1], None)
    assert late.simulation is not first.simulation and len(runs) == 2
    assert take_turns([late]) == [alone]


def test_a_new_run_starts_the_backfill_before_the_clusters_start() -> None:
    """Every process of a local cluster starts the same history (their own clocks, a
    second apart, could straddle a minute), from the start their parent gives."""
    runtime = Runtime(Settings(), clock=Clock(START + 2 * HOUR))
    source = SimulatorSource(
        "simulator",
        lambda start: stream(3, start, PROFILE),
        {0: "shard-0"},
        HOUR,
        runtime,
        started=START + 90 * SECOND,
    )
    assert source.build_part("input", "simulator", None).snapshot() == (START - HOUR + MINUTE, 0)


def events_of(messages: list[Any]) -> list[Any]:
    return [message for _shard, message in messages if message[0] == "events"]


def test_marks_say_what_changed_at_most_every_mark_every_and_idleness_at_once() -> None:
    marks = Marks("p", ["a", "b"], 0, idle_timeout=SECOND)
    assert marks.due(0) == [
        ("a", ("mark", "a", "p", MIN_TS, False)),
        ("b", ("mark", "b", "p", MIN_TS, False)),
    ]
    marks.saw(latest_of([view(5)]), 1)
    assert marks.due(2) == []  # too soon
    assert marks.due(MARK_EVERY + 1) != []
    assert marks.due(MARK_EVERY + 2) == []  # nothing new
    seen = MARK_EVERY + 3
    marks.saw(latest_of([view(7), view(6)]), seen)  # the largest ts, not the latest
    marks.saw(latest_of([Reject(INVALID_JSON, "", b"{")]), seen + 1)  # no event time
    assert marks.max_ts == START + 7 * SECOND
    marks.settle(True, seen + SECOND - 1)
    assert not marks.idle  # an event less than the idle timeout ago
    marks.settle(True, seen + SECOND)
    assert marks.due(seen + SECOND) == [
        (shard, ("mark", shard, "p", START + 7 * SECOND, True)) for shard in ("a", "b")
    ]
    marks.saw(latest_of([view(2)]), seen + 2 * SECOND)  # an event, however old: no longer idle
    assert (marks.max_ts, marks.idle) == (START + 7 * SECOND, False)
    marks.settle(False, seen + 10 * SECOND)
    assert not marks.idle  # not caught up


def view(second: int) -> Any:
    return decode(page_view(second, START + second * SECOND, "S-1"))


def page_view(number: int, ts: int, key: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"ev-{number}",
            "type": "page.viewed",
            "ts": ts // 1000,
            "session_id": key,
            "page": "home",
            "load_ms": 120,
        }
    )


def test_a_simulator_partition_keeps_its_largest_ts_and_idles_on_rejects_alone() -> None:
    """Its progress is the largest ts so far, not the latest batch's (events come out
    of order), and a malformed line, which carries no event time, keeps no partition
    from idling."""
    keys = [key for key in (f"S-{n}" for n in range(40)) if partition_of(key, 2) == 0][:4]
    clock = Clock(START)
    at = START + SECOND
    emissions = [
        (at, keys[0], page_view(1, START + 10 * SECOND, keys[0])),
        (at, keys[1], page_view(2, START + 10 * SECOND, keys[1])),
        (at, keys[2], page_view(3, START + 5 * SECOND, keys[2])),
        (at, keys[3], page_view(4, START + 5 * SECOND, keys[3])),
        (at + 300_000, "", b"{not json"),  # malformed lines have no key: partition 0's
    ]
    runtime = Runtime(Settings(batch_size=2, idle_timeout=SECOND), clock=clock)
    source = SimulatorSource(
        "simulator",
        lambda _start: chain(emissions, repeat((START + DAY, "", b""))),
        {0: "shard-0", 1: "shard-1"},
        0,
        runtime,
    )
    partition = source.build_part("input", "simulator:0", None)
    clock.now = at
    newest = START + 10 * SECOND
    first = partition.next_batch()
    assert [message for _shard, message in first if message[0] == "mark"] == [
        ("mark", shard, "simulator:0", newest, False) for shard in SHARDS
    ]
    older = partition.next_batch()
    assert [message[0] for _shard, message in older] == ["events"]  # marks wait MARK_EVERY
    clock.now = at + MARK_EVERY
    assert partition.next_batch() == []  # nothing new: the older batch moved nothing
    clock.now = at + 300_000
    rejected = partition.next_batch()
    assert [type(item) for item in rejected[0][1][3]] == [Reject]
    clock.now = at + SECOND  # a second after the last event, not after the reject
    assert partition.next_batch() == [
        (shard, ("mark", shard, "simulator:0", newest, True)) for shard in SHARDS
    ]


def test_the_processes_of_a_cluster_each_share_a_run_among_the_partitions_they_read() -> None:
    """Placement tells each process which partitions its workers read: between them
    every partition once, so no process keeps events for a partition it never reads."""
    reader_of = {str(index): part for index, part in enumerate(simulator_parts("simulator", 4))}
    cluster = {"workers": 2, "processes": 2, "addresses": None, "recovery_dir": None}
    local = [placed(Namespace(**cluster, process_id=p), reader_of)[2] for p in (0, 1)]
    assert sorted(local[0] + local[1]) == [0, 1, 2, 3]
    assert local[0] and local[1]


@pytest.mark.parametrize(("value", "started"), [("1796601600000000", 1796601600000000), ("", None)])
def test_the_simulator_of_a_local_clusters_process_starts_where_its_parent_said(
    monkeypatch: pytest.MonkeyPatch, value: str, started: int | None
) -> None:
    monkeypatch.setenv(CLUSTER_STARTED, value)
    args = Namespace(
        workers=1,
        processes=0,
        addresses=None,
        recovery_dir=None,
        process_id=None,
        scale=0.1,
        seed=3,
        backfill=HOUR,
    )
    source = embedded_wiring(Runtime(Settings()), args).source
    assert isinstance(source, SimulatorSource)
    assert source.started == started
