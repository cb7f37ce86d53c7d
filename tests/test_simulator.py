"""The simulator: deterministic, ordered, valid per the contract, with realistic shares."""

from __future__ import annotations

import io
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from itertools import islice, takewhile
from typing import Any

import orjson
import pytest

from flows.decode import INVALID_EVENT, INVALID_JSON, UNKNOWN_TYPE, Reject, decode
from flows.events import EVENT_TYPES, entity_key
from flows.simulator import Profile, stream, write_lines
from flows.timeutil import parse_time

START = parse_time("2026-11-20T00:00:00Z")
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
LATENESS = 60 * SECOND


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
    """Valid events, first copies only."""
    seen: set[str] = set()
    valid = []
    for line in lines:
        event = line.decoded
        if isinstance(event, dict) and event["event_id"] not in seen:
            seen.add(event["event_id"])
            valid.append(event)
    return valid


@pytest.fixture(scope="module")
def day() -> list[Line]:
    """A simulated day of the default network at a quarter of its traffic."""
    return simulate(Profile().scaled(0.25), 24)


@pytest.fixture(scope="module")
def fulfilment() -> list[dict[str, Any]]:
    """Eight days of orders and receipts only, without transport faults."""
    quiet = replace(
        Profile(sessions_per_hour=0, orders_per_hour=30, receipts_per_hour=8, skus=500),
        duplicate_share=0,
        disorder_share=0,
        late_share=0,
        malformed_share=0,
    )
    return events(simulate(quiet, 8 * 24))


def share(part: int, whole: int) -> float:
    return part / whole


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
    assert min(event["ts"] for event in events(day)) >= START


def test_start_between_milliseconds_is_respected() -> None:
    start = START + 1
    first = next(stream(1, start))
    assert first[0] >= start
    event = decode(first[2])
    assert isinstance(event, dict)
    assert event["ts"] >= start


def test_valid_lines_decode_with_their_entity_key_and_malformed_ones_are_rejected(
    day: list[Line],
) -> None:
    reasons: Counter[str] = Counter()
    for line in day:
        if line.key == "":
            assert isinstance(line.decoded, Reject), line.payload
            reasons[line.decoded.reason] += 1
        else:
            assert isinstance(line.decoded, dict), (line.payload, line.decoded)
            assert line.key == entity_key(raw(line.payload))
    assert set(reasons) == {INVALID_JSON, UNKNOWN_TYPE, INVALID_EVENT}
    assert 0.001 < share(sum(reasons.values()), len(day)) < 0.003


def test_duplicates_are_exact_resends_shortly_after(day: list[Line]) -> None:
    first: dict[str, Line] = {}
    duplicates = 0
    for line in day:
        if not isinstance(line.decoded, dict):
            continue
        original = first.setdefault(line.decoded["event_id"], line)
        if original is not line:
            duplicates += 1
            assert line.payload == original.payload
            assert 0 <= line.arrival - original.arrival <= 75 * SECOND
    assert 0.007 < share(duplicates, len(day)) < 0.013


def test_disorder_stays_within_the_lateness_and_late_events_are_far_beyond(
    day: list[Line],
) -> None:
    """Replays the contract's watermark: only the intentionally late events are late."""
    max_ts = 0
    disordered = late = 0
    seen: set[str] = set()
    for line in day:
        event = line.decoded
        if not isinstance(event, dict) or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        delay = line.arrival - event["ts"]
        is_late = event["ts"] < max_ts - LATENESS
        assert delay >= 0
        assert is_late == (delay >= 2 * HOUR)
        assert delay < 45 * SECOND or delay >= 2 * HOUR
        disordered += 0 < delay < LATENESS
        late += is_late
        max_ts = max(max_ts, event["ts"])
    assert 0.04 < share(disordered, len(seen)) < 0.06
    assert 0.001 < share(late, len(seen)) < 0.003


def test_a_network_of_many_places_and_products(day: list[Line]) -> None:
    valid = events(day)
    kinds = Counter(event["type"] for event in valid)
    assert set(EVENT_TYPES) - set(kinds) == {"return.received"}  # returns take days
    assert kinds["page.viewed"] > kinds["order.placed"] > kinds["inventory.received"] > 0
    assert len({event["fc"] for event in valid if "fc" in event}) == 5
    assert len({event["region"] for event in valid if "region" in event}) == 6
    assert len({event["sku"] for event in valid if "sku" in event}) > 1000
    opening = [event for event in valid if event.get("reason") == "opening_balance"]
    assert {event["ts"] for event in opening} == {START}
    assert len(opening) == 5 * 3000
    assert all(event["delta"] > 0 for event in opening)
    assert any(event.get("reason") in {"cycle_count", "damaged"} for event in valid)


def test_event_times_come_in_every_allowed_form(day: list[Line]) -> None:
    forms: Counter[str] = Counter()
    for line in day[:50_000]:
        if isinstance(line.decoded, dict):
            ts = raw(line.payload)["ts"]
            forms["int" if isinstance(ts, int) else "Z" if str(ts).endswith("Z") else "offset"] += 1
    total = sum(forms.values())
    assert 0.07 < share(forms["int"], total) < 0.13
    assert 0.005 < share(forms["offset"], total) < 0.04


def test_traffic_at_full_scale_is_a_few_hundred_thousand_events_a_day(day: list[Line]) -> None:
    opening = 5 * 3000
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
    assert 0.04 < share(sum(event["results"] == 0 for event in searches), len(searches)) < 0.1
    kinds = Counter(event["type"] for event in valid)
    assert 0.02 < share(kinds["recommendation.clicked"], kinds["recommendation.shown"]) < 0.06
    assert len({event["widget"] for event in valid if "widget" in event}) >= 3
    assert len({event["page"] for event in valid if "page" in event}) >= 6
    loads = [event["load_ms"] for event in valid if event["type"] == "page.viewed"]
    assert statistics.mean(loads) > statistics.median(loads) > 100  # skewed to the right


@dataclass
class Order:
    placed: int = 0
    ship_by: int = 0
    deliver_by: int = 0
    units: dict[str, int] | None = None
    shipped: int | None = None
    cancelled: int | None = None
    delivered: list[int] | None = None
    statuses: list[tuple[int, str]] | None = None
    picked: list[int] | None = None
    packed: int | None = None
    returned: list[tuple[int, str, int]] | None = None


def orders(valid: list[dict[str, Any]]) -> dict[str, Order]:
    """Each order's lifecycle, from the events."""
    found: dict[str, Order] = defaultdict(Order)
    for event in valid:
        if "order_id" not in event:
            continue
        order = found[event["order_id"]]
        kind, ts = event["type"], event["ts"]
        if kind == "order.placed":
            order.placed, order.ship_by = ts, event["promised_ship_by"]
            order.deliver_by = event["promised_delivery_by"]
            order.units = {line["sku"]: line["qty"] for line in event["lines"]}
        elif kind == "order.shipped":
            order.shipped = ts
        elif kind == "order.cancelled":
            order.cancelled = ts
        elif kind == "inventory.picked":
            order.picked = [*(order.picked or []), ts]
        elif kind == "inventory.packed":
            order.packed = ts
        elif kind == "delivery.updated":
            order.statuses = [*(order.statuses or []), (ts, event["status"])]
        elif kind == "return.received":
            order.returned = [*(order.returned or []), (ts, event["sku"], event["qty"])]
    return found


def test_orders_follow_their_lifecycle_with_realistic_shares(
    fulfilment: list[dict[str, Any]],
) -> None:
    every = orders(fulfilment)
    horizon = START + 9 * DAY
    # Orders placed in the first three days have had time for everything but returns.
    cohort = [order for order in every.values() if order.placed < START + 3 * DAY]
    assert len(cohort) > 2000
    shipped = [order for order in cohort if order.shipped is not None]
    late_ships = [order for order in shipped if order.shipped > order.ship_by]  # type: ignore[operator]
    never = [order for order in cohort if order.shipped is None and order.cancelled is None]
    cancelled_early = [o for o in cohort if o.cancelled is not None and o.cancelled <= o.ship_by]
    cancelled_late = [o for o in cohort if o.cancelled is not None and o.cancelled > o.ship_by]
    assert 0.03 < share(len(late_ships), len(cohort)) < 0.08
    assert 0.004 < share(len(never), len(cohort)) < 0.02
    assert 0.01 < share(len(cancelled_early), len(cohort)) < 0.03
    assert 0.002 < share(len(cancelled_late), len(cohort)) < 0.015

    lost = late_deliveries = second_deliveries = failed_attempts = 0
    for order in shipped:
        assert order.shipped is not None and order.units is not None
        assert 4 * HOUR <= order.ship_by - order.placed <= 16 * HOUR
        assert DAY <= order.deliver_by - order.ship_by <= 5 * DAY
        assert order.cancelled is None
        assert len(order.picked or []) == len(order.units)
        assert order.packed is not None
        assert all(order.placed <= pick <= order.packed for pick in order.picked or [])
        assert order.packed <= order.shipped
        scans = sorted(order.statuses or [])
        assert all(ts >= order.shipped for ts, _status in scans)
        delivered = [ts for ts, status in scans if status == "delivered"]
        if not delivered:
            lost += 1
            continue
        assert scans[0][1] == "out_for_delivery"
        late_deliveries += delivered[0] > order.deliver_by
        second_deliveries += len(delivered) > 1
        failed_attempts += any(status == "failed_attempt" for _ts, status in scans)
    assert 0.002 < share(lost, len(shipped)) < 0.015
    assert 0.04 < share(late_deliveries, len(shipped)) < 0.1
    assert second_deliveries > 0
    assert failed_attempts > 0

    returns = [order for order in every.values() if order.returned]
    assert returns
    for order in returns:
        (ts, sku, qty), *_ = order.returned or []
        assert order.units is not None and 0 < qty <= order.units[sku]
        assert ts > min(ts for ts, status in order.statuses or [] if status == "delivered")
        assert ts < horizon


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
    assert 0.005 < share(len(cohort) - len(complete), len(cohort)) < 0.05
    assert sum(len(stows[receipt_id]) > 1 for receipt_id in cohort) > len(cohort) / 2
    assert min(complete) < HOUR
    assert sum(took > DAY for took in complete) > 0
    assert statistics.median(complete) > HOUR


def test_scaled_multiplies_every_traffic_rate_and_nothing_else() -> None:
    base = Profile()
    doubled = base.scaled(2)
    assert doubled.orders_per_hour == 2 * base.orders_per_hour
    assert doubled.receipts_per_hour == 2 * base.receipts_per_hour
    assert doubled.sessions_per_hour == 2 * base.sessions_per_hour
    assert doubled.late_ship_share == base.late_ship_share
    assert doubled.duplicate_share == base.duplicate_share


def test_write_lines_stops_before_the_end() -> None:
    profile = Profile().scaled(0.1)
    out = io.BytesIO()
    written = write_lines(out, 1, START, START + HOUR, profile)
    lines = out.getvalue().splitlines()
    assert written == len(lines) > 15_000
    within = takewhile(lambda emission: emission[0] < START + HOUR, stream(1, START, profile))
    assert lines == [payload for _arrival, _key, payload in within]
