"""A deterministic simulator of a fulfilment network, emitting contract events (§1) as JSON.

It is the embedded default of `opscockpit run` and the source of `opscockpit simulate`.
Orders, receipts, web sessions and stock adjustments start as Poisson processes
(customer traffic follows the day); each entity schedules its whole lifecycle at once
into a heap of future events. Time advances in one-minute steps: events whose time
has come are serialised, given transport faults (duplicates, disorder, late arrival,
malformed copies) and released in arrival order. Every draw comes from one
`random.Random(seed)`, so a seed, start and profile always give the same bytes.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import accumulate, count
from statistics import NormalDist
from typing import BinaryIO, Generic, TypeVar

import orjson

from flows.events import COMMON, EVENT_TYPES, entity_key
from flows.timeutil import US_PER_MS

# Simulated time is kept in integer milliseconds, the precision of the event times.
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
STEP = MINUTE

Fields = dict[str, object]
Emission = tuple[int, str, bytes]  # (arrival_us, key, payload)
T = TypeVar("T")


class Weighted(Generic[T]):
    """Values with weights, drawn by bisection (much faster than `Random.choices`)."""

    def __init__(self, values: Sequence[T], weights: Sequence[float]) -> None:
        self.values = tuple(values)
        self.weights = tuple(weights)
        self.cum_weights = list(accumulate(weights))

    def draw(self, random: Callable[[], float]) -> T:
        return self.values[bisect(self.cum_weights, random() * self.cum_weights[-1])]

    def shares(self) -> list[tuple[T, float]]:
        """Each value with its probability."""
        total = self.cum_weights[-1]
        return [
            (value, weight / total) for value, weight in zip(self.values, self.weights, strict=True)
        ]


class LogNormal:
    """A skewed positive quantity, by median and spread (sigma of its logarithm).

    Drawn by inverting the CDF: one uniform draw, several times faster than
    `Random.lognormvariate`.
    """

    def __init__(self, median: float, sigma: float) -> None:
        self.normal = NormalDist(math.log(median), sigma)

    def draw(self, random: Callable[[], float]) -> float:
        # random() may return 0.0, outside the domain of inv_cdf.
        return math.exp(self.normal.inv_cdf(random() or 0.5))


def _mean(choice: Weighted[int]) -> float:
    return sum(value * share for value, share in choice.shares())


def zipf(values: Sequence[T], exponent: float) -> Weighted[T]:
    """Values ranked by popularity, the first far more popular than the last."""
    return Weighted(values, [1 / rank**exponent for rank in range(1, len(values) + 1)])


FCS = ("FC-ATL1", "FC-DAL1", "FC-RNO1", "FC-EWR1", "FC-ORD1")
REGIONS = ("us-east", "us-west", "us-central", "us-south", "us-northwest", "ca-east")
CUSTOMER_PEAK = 20 * HOUR  # UTC; mid-afternoon in the US
SHIP_CUTOFF_HOURS = (11, 23)  # UTC; an order ships by the first cut-off >= 4 h after placing
MIN_HANDLING = 4 * HOUR
# Delivery promise after the ship promise, in hours: same day, next day, 2, 3, 5 days.
TRANSIT_HOURS = Weighted((8, 24, 48, 72, 120), (12, 20, 38, 20, 10))
LINE_COUNTS = Weighted((1, 2, 3, 4), (55, 25, 13, 7))
LINE_QTYS = Weighted((1, 2, 3, 4, 6), (70, 17, 7, 4, 2))
CASE_SIZES = (6, 12, 24, 36, 48, 72, 96)
DOCK_TO_STOCK = LogNormal(3 * HOUR, 1.1)  # from dock scan to the last stow
CARRIERS = ("UPS", "FedEx", "USPS", "OnTrac", "DHL")
CANCEL_REASONS = ("customer_request", "payment_failed", "duplicate_order", "address_invalid")
RETURN_REASONS = ("damaged", "wrong_item", "no_longer_needed", "did_not_fit")
SUPPLIERS = tuple(f"SUP-{n:03d}" for n in range(1, 41))
ADJUSTMENTS = (
    ("cycle_count", (-4, -2, -1, -1, 1, 1, 2, 3)),
    ("damaged", (-3, -2, -1, -1)),
    ("found", (1, 1, 2)),
)
PAGES = Weighted(
    ("home", "search", "category", "product", "cart", "checkout", "account", "deals"),
    (15, 15, 15, 35, 8, 4, 3, 5),
)
PAGE_WIDGETS = {"home": "home_carousel", "product": "similar_items", "cart": "bought_together"}
MEAN_PAGES = 5.0
PAGE_LOAD_MS = LogNormal(380, 0.55)
THINK_TIME = LogNormal(25 * SECOND, 0.8)  # between page views
SEARCH_RESULTS = LogNormal(50, 1.2)
SEARCH_LATENCY_MS = LogNormal(120, 0.5)
CART_ADD_SHARE = 0.12  # of product views
ZERO_RESULTS_SHARE = 0.07
QUERY_NOUNS = (
    "charger",
    "headphones",
    "backpack",
    "water bottle",
    "yoga mat",
    "phone case",
    "desk lamp",
    "coffee beans",
    "running shoes",
    "air fryer",
    "hdmi cable",
    "dog food",
)
QUERY_MODIFIERS = ("", "wireless ", "kids ", "large ", "cheap ", "organic ", "usb c ", "black ")
QUERIES = zipf(
    tuple(f"{modifier}{noun}" for noun in QUERY_NOUNS for modifier in QUERY_MODIFIERS), 0.8
)

EPOCH_MS_SHARE = 0.10  # event times written as integer epoch milliseconds
OFFSET_SHARE = 0.02  # event times written with a local offset instead of Z
OFFSETS = (("+02:00", 2 * HOUR), ("-05:00", -5 * HOUR), ("+05:30", 5 * HOUR + 30 * MINUTE))
UNKNOWN_TYPES = ("order.updated", "inventory.moved", "page.view", "Order.Placed")
BAD_TIMES = (
    "2026-11-20 10:15:00",
    "2026-11-20T10:15:00",
    "20/11/2026 10:15",
    "2026-02-30T10:00:00Z",
    "1763633700000",
    "yesterday",
    "",
)


@dataclass(frozen=True)
class Profile:
    """Size, traffic and behaviour of the simulated network; shares are probabilities."""

    fcs: tuple[str, ...] = FCS
    regions: tuple[str, ...] = REGIONS
    skus: int = 3000
    orders_per_hour: float = 250.0
    receipts_per_hour: float = 16.0
    sessions_per_hour: float = 1500.0
    adjustments_per_hour: float = 12.0
    diurnal_amplitude: float = 0.6  # customer traffic swings this much around its mean (< 1)
    opening_days_of_cover: float = 10.0
    # Orders: how each one ends.
    cancel_before_promise_share: float = 0.02
    cancel_after_promise_share: float = 0.007
    never_ship_share: float = 0.01
    late_ship_share: float = 0.05
    late_delivery_share: float = 0.07
    lost_share: float = 0.007
    failed_attempt_share: float = 0.04
    second_delivered_share: float = 0.005
    return_share: float = 0.04
    # Inbound and web.
    never_stowed_share: float = 0.02
    click_through: float = 0.04
    # Transport faults, per event.
    duplicate_share: float = 0.01
    disorder_share: float = 0.05
    late_share: float = 0.002
    malformed_share: float = 0.002

    def scaled(self, factor: float) -> Profile:
        """The same network with every traffic rate multiplied by `factor`."""
        return replace(
            self,
            orders_per_hour=self.orders_per_hour * factor,
            receipts_per_hour=self.receipts_per_hour * factor,
            sessions_per_hour=self.sessions_per_hour * factor,
            adjustments_per_hour=self.adjustments_per_hour * factor,
        )


DEFAULT_PROFILE = Profile()


def stream(seed: int, start_us: int, profile: Profile = DEFAULT_PROFILE) -> Iterator[Emission]:
    """Infinite, deterministic for (seed, start_us, profile): (arrival_us, key, payload).

    Arrival times never decrease. The key is the event's entity key, and "" exactly
    for the malformed lines (which the contract rejects).
    """
    return _Network(seed, start_us, profile).emissions()


def write_lines(handle: BinaryIO, seed: int, start_us: int, end_us: int, profile: Profile) -> int:
    """Write payload + b"\\n" for every emission with arrival_us < end_us; return the count."""
    written = 0
    write = handle.write
    for arrival, _key, payload in stream(seed, start_us, profile):
        if arrival >= end_us:
            break
        write(payload + b"\n")
        written += 1
    return written


@lru_cache(maxsize=4096)
def _minute_text(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_THREE_DIGITS = tuple(f"{n:03d}" for n in range(1000))


def rfc3339(ms: int, suffix: str = "Z", shift: int = 0) -> str:
    """Epoch milliseconds as RFC 3339 with milliseconds, in UTC or at a `shift` offset.

    This runs for nearly every event, so it avoids datetime and format specs.
    """
    minute, rest = divmod(ms + shift, MINUTE)
    seconds, millis = divmod(rest, SECOND)
    return f"{_minute_text(minute)}{_TWO_DIGITS[seconds]}.{_THREE_DIGITS[millis]}{suffix}"


def _ship_promise(placed: int) -> int:
    """The first daily cut-off at least MIN_HANDLING after placing (4-16 h later)."""
    earliest = placed + MIN_HANDLING
    day = earliest - earliest % DAY
    cutoffs = [day + hour * HOUR for hour in SHIP_CUTOFF_HOURS]
    cutoffs.append(day + DAY + SHIP_CUTOFF_HOURS[0] * HOUR)
    return next(cutoff for cutoff in cutoffs if cutoff >= earliest)


@dataclass(frozen=True, slots=True)
class _Order:
    """What the later events of an order need to know about it."""

    order_id: str
    fc: str
    lines: list[tuple[str, int]]
    placed: int
    ship_by: int
    deliver_by: int


@dataclass
class _Process:
    """Starts of one kind of entity: a Poisson process, optionally following the day."""

    per_hour: float
    diurnal_amplitude: float
    spawn: Callable[[int], None]
    next_at: int = 0


class _Network:
    """The simulated fulfilment network and its two heaps: future events and arrivals."""

    def __init__(self, seed: int, start_us: int, profile: Profile) -> None:
        self.seed, self.profile = seed, profile
        self.rng = random.Random(seed)
        self.random = self.rng.random
        self.event_prefix, self.event_numbers = f"ev-{seed}-", count()
        self.start = -(-start_us // US_PER_MS)  # round up: no event before start_us
        self.ids: defaultdict[str, Iterator[int]] = defaultdict(count)
        self.tiebreak = count()  # keeps both heaps stable
        self.pending: list[tuple[int, int, str, Fields]] = []
        self.arrivals: list[tuple[int, int, str, bytes]] = []

        self.skus = zipf([f"SKU-{n:05d}" for n in range(1, profile.skus + 1)], 1.0)
        self.fcs = zipf(profile.fcs, 0.5)
        self.regions = zipf(profile.regions, 0.5)

        p = profile
        shipped = 1 - p.cancel_before_promise_share - p.cancel_after_promise_share
        shipped -= p.never_ship_share + p.late_ship_share
        self.order_fates = Weighted(
            ("cancelled_early", "cancelled_late", "stuck", "shipped_late", "shipped"),
            (
                p.cancel_before_promise_share,
                p.cancel_after_promise_share,
                p.never_ship_share,
                p.late_ship_share,
                shipped,
            ),
        )
        delivered = 1 - p.lost_share - p.late_delivery_share
        self.delivery_fates = Weighted(
            ("lost", "late", "on_time"), (p.lost_share, p.late_delivery_share, delivered)
        )
        self.late_until = p.late_share
        self.disorder_until = self.late_until + p.disorder_share
        self.duplicate_until = self.disorder_until + p.duplicate_share
        self.malformed_until = self.duplicate_until + p.malformed_share

        candidates = (
            _Process(p.orders_per_hour, p.diurnal_amplitude, self._order),
            _Process(p.receipts_per_hour, 0.0, self._receipt),
            _Process(p.sessions_per_hour, p.diurnal_amplitude, self._session),
            _Process(p.adjustments_per_hour, 0.0, self._adjustment),
        )
        self.processes = [process for process in candidates if process.per_hour > 0]
        for process in self.processes:
            process.next_at = self.start + self._gap(process, self.start)

    def emissions(self) -> Iterator[Emission]:
        """Advance one step at a time; an arrival before the step's end is final.

        Infinite unless every traffic rate is zero.
        """
        self._opening_balances()
        pending, arrivals = self.pending, self.arrivals
        step_end = self.start
        while self.processes or pending or arrivals:
            step_end += STEP
            for process in self.processes:
                while process.next_at < step_end:
                    process.spawn(process.next_at)
                    process.next_at += self._gap(process, process.next_at)
            while pending and pending[0][0] < step_end:
                ts, _, kind, fields = heapq.heappop(pending)
                on_time = self._release(ts, kind, fields)
                if arrivals and arrivals[0][0] <= ts:
                    yield from self._arrived(ts + 1)
                if on_time is not None:
                    yield ts * US_PER_MS, *on_time
            yield from self._arrived(step_end)

    def _arrived(self, before: int) -> Iterator[Emission]:
        """Pop the held-back arrivals (delayed or extra copies) due before a time."""
        arrivals = self.arrivals
        while arrivals and arrivals[0][0] < before:
            arrival, _, key, payload = heapq.heappop(arrivals)
            yield arrival * US_PER_MS, key, payload

    # Plumbing: ids, draws, scheduling, release with faults.

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{self.seed}-{next(self.ids[prefix]):08d}"

    def _gap(self, process: _Process, at: int) -> int:
        phase = 2 * math.pi * ((at - CUSTOMER_PEAK) % DAY) / DAY
        per_ms = process.per_hour / HOUR * (1 + process.diurnal_amplitude * math.cos(phase))
        return 1 + int(self.rng.expovariate(per_ms))

    def _between(self, low: int, high: int) -> int:
        return low + int((high - low) * self.random())

    def _sku(self) -> str:
        return self.skus.draw(self.random)

    def _schedule(self, ts: int, kind: str, **fields: object) -> None:
        heapq.heappush(self.pending, (ts, next(self.tiebreak), kind, fields))

    def _hold(self, arrival: int, key: str, payload: bytes) -> None:
        heapq.heappush(self.arrivals, (arrival, next(self.tiebreak), key, payload))

    def _stamp(self, ts: int) -> str | int:
        """Mostly RFC 3339 with Z, sometimes epoch milliseconds or a local offset."""
        style = self.random()
        if style < EPOCH_MS_SHARE:
            return ts
        if style < EPOCH_MS_SHARE + OFFSET_SHARE:
            suffix, shift = self.rng.choice(OFFSETS)
            return rfc3339(ts, suffix, shift)
        return rfc3339(ts)

    def _release(self, ts: int, kind: str, fields: Fields) -> tuple[str, bytes] | None:
        """Serialise an event whose time has come and decide how it arrives.

        Returns (key, payload) when it arrives on time; anything delayed or extra is
        held back in the arrivals heap.
        """
        event: Fields = {
            "event_id": self.event_prefix + str(next(self.event_numbers)),
            "type": kind,
            "ts": self._stamp(ts),
        }
        event.update(fields)
        payload = orjson.dumps(event)
        key = entity_key(event)
        fault = self.random()
        if fault >= self.malformed_until:
            return key, payload
        if fault < self.late_until:
            self._hold(ts + self._between(2 * HOUR, 4 * HOUR), key, payload)
            return None
        if fault < self.disorder_until:
            self._hold(ts + self._between(SECOND, 45 * SECOND), key, payload)
            return None
        if fault < self.duplicate_until:
            self._hold(ts + self._between(0, 30 * SECOND), key, payload)
        else:
            corrupt = self.rng.choice(_CORRUPTIONS)
            self._hold(ts, "", corrupt(self.rng, event, payload))
        return key, payload

    # The network: what happens to stock, orders and shoppers.

    def _opening_balances(self) -> None:
        """Stock on hand at the start: days of cover of the expected demand, by popularity."""
        p = self.profile
        units_per_order = _mean(LINE_COUNTS) * _mean(LINE_QTYS)
        cover = 24 * p.orders_per_hour * units_per_order * p.opening_days_of_cover
        for fc, fc_share in self.fcs.shares():
            for sku, sku_share in self.skus.shares():
                units = round(cover * fc_share * sku_share * self.rng.uniform(0.5, 1.5))
                self._schedule(
                    self.start,
                    "inventory.adjusted",
                    fc=fc,
                    sku=sku,
                    delta=max(1, units),
                    reason="opening_balance",
                )

    def _adjustment(self, at: int) -> None:
        reason, deltas = self.rng.choice(ADJUSTMENTS)
        self._schedule(
            at,
            "inventory.adjusted",
            fc=self.fcs.draw(self.random),
            sku=self._sku(),
            delta=self.rng.choice(deltas),
            reason=reason,
        )

    def _receipt(self, received: int) -> None:
        """A dock receipt, then 1-4 partial stows spread over minutes to days."""
        rng = self.rng
        receipt = {
            "receipt_id": self._id("RCV"),
            "fc": self.fcs.draw(self.random),
            "sku": self._sku(),
        }
        qty = rng.choice(CASE_SIZES)
        self._schedule(
            received, "inventory.received", **receipt, qty=qty, supplier=rng.choice(SUPPLIERS)
        )
        dock_to_stock = int(DOCK_TO_STOCK.draw(self.random))
        dock_to_stock = min(max(dock_to_stock, 10 * MINUTE), 3 * DAY)
        cuts = sorted(rng.sample(range(1, qty), rng.randint(0, 3)))
        quantities = [high - low for low, high in zip([0, *cuts], [*cuts, qty], strict=True)]
        offsets = sorted(self._between(dock_to_stock // 10, dock_to_stock) for _ in cuts)
        offsets.append(dock_to_stock)
        if rng.random() < self.profile.never_stowed_share:
            quantities.pop()
            offsets.pop()
        for offset, stowed in zip(offsets, quantities, strict=True):
            bin_label = f"{rng.choice('ABCDEFGH')}{rng.randint(1, 40):02d}-{rng.randint(1, 12):02d}"
            self._schedule(
                received + offset, "inventory.stowed", **receipt, qty=stowed, bin=bin_label
            )

    def _order(self, placed: int) -> None:
        """A customer order and, decided at once, everything that happens to it."""
        rng = self.rng
        ship_by = _ship_promise(placed)
        skus = dict.fromkeys(self._sku() for _ in range(LINE_COUNTS.draw(self.random)))
        order = _Order(
            order_id=self._id("ORD"),
            fc=self.fcs.draw(self.random),
            lines=[(sku, LINE_QTYS.draw(self.random)) for sku in skus],
            placed=placed,
            ship_by=ship_by,
            deliver_by=ship_by + HOUR * TRANSIT_HOURS.draw(self.random),
        )
        self._schedule(
            placed,
            "order.placed",
            order_id=order.order_id,
            customer_id=f"C{rng.randrange(1, 500_000):06d}",
            fc=order.fc,
            region=self.regions.draw(self.random),
            lines=[{"sku": sku, "qty": qty} for sku, qty in order.lines],
            promised_ship_by=rfc3339(order.ship_by),
            promised_delivery_by=rfc3339(order.deliver_by),
        )
        fate = self.order_fates.draw(self.random)
        if fate == "cancelled_early":
            self._schedule(
                self._between(placed + 5 * MINUTE, ship_by),
                "order.cancelled",
                order_id=order.order_id,
                reason=rng.choice(CANCEL_REASONS),
            )
        elif fate == "cancelled_late":  # by a customer tired of waiting
            self._schedule(
                ship_by + self._between(30 * MINUTE, DAY),
                "order.cancelled",
                order_id=order.order_id,
                reason="delayed",
            )
        elif fate == "shipped_late":
            delay = MINUTE + min(int(rng.expovariate(1 / (3 * HOUR))), 18 * HOUR)
            self._ship(order, ship_by + delay)
        elif fate == "shipped":
            self._ship(order, placed + int((ship_by - placed) * rng.uniform(0.25, 0.98)))
        # "stuck": never leaves the building

    def _ship(self, order: _Order, shipped: int) -> None:
        """Picks and pack between placing and shipping, then the carrier's part."""
        rng = self.rng
        span = shipped - order.placed
        for sku, qty in order.lines:
            self._schedule(
                order.placed + int(span * rng.uniform(0.1, 0.55)),
                "inventory.picked",
                order_id=order.order_id,
                fc=order.fc,
                sku=sku,
                qty=qty,
            )
        self._schedule(
            order.placed + int(span * rng.uniform(0.6, 0.9)),
            "inventory.packed",
            order_id=order.order_id,
            fc=order.fc,
        )
        carrier = rng.choice(CARRIERS)
        self._schedule(
            shipped, "order.shipped", order_id=order.order_id, fc=order.fc, carrier=carrier
        )
        fate = self.delivery_fates.draw(self.random)
        if fate != "lost":
            self._deliver(order, shipped, carrier, late=fate == "late")

    def _deliver(self, order: _Order, shipped: int, carrier: str, *, late: bool) -> None:
        """Carrier scans up to delivery (sometimes a failed attempt first), maybe a return."""
        rng = self.rng
        earliest = shipped + HOUR  # a late shipment can miss a same-day promise outright
        if late or order.deliver_by <= earliest:
            delivered = max(order.deliver_by, earliest) + self._between(HOUR, 2 * DAY)
        else:
            delivered = shipped + int((order.deliver_by - shipped) * rng.uniform(0.35, 0.98))
        transit = delivered - shipped
        scans = []
        if rng.random() < self.profile.failed_attempt_share:
            attempt = shipped + int(transit * rng.uniform(0.3, 0.5))
            failed = attempt + int(transit * rng.uniform(0.02, 0.1))
            scans += [(attempt, "out_for_delivery"), (failed, "failed_attempt")]
        out_for_delivery = shipped + int(transit * rng.uniform(0.75, 0.95))
        scans += [(out_for_delivery, "out_for_delivery"), (delivered, "delivered")]
        if rng.random() < self.profile.second_delivered_share:
            scans.append((delivered + self._between(MINUTE, 6 * HOUR), "delivered"))
        for at, status in scans:
            self._schedule(
                at, "delivery.updated", order_id=order.order_id, status=status, carrier=carrier
            )
        if rng.random() < self.profile.return_share:
            sku, qty = rng.choice(order.lines)
            self._schedule(
                delivered + self._between(2 * DAY, 21 * DAY),
                "return.received",
                order_id=order.order_id,
                fc=order.fc,
                sku=sku,
                qty=rng.randint(1, qty),
                reason=rng.choice(RETURN_REASONS),
            )

    def _session(self, begin: int) -> None:
        """A shopper's visit: page views, searches, cart adds and recommendations."""
        random = self.random
        session_id = self._id("S")
        at = begin
        for _ in range(1 + int(self.rng.expovariate(1 / (MEAN_PAGES - 1)))):
            page = PAGES.draw(random)
            load_ms = round(PAGE_LOAD_MS.draw(random), 1)
            self._schedule(at, "page.viewed", session_id=session_id, page=page, load_ms=load_ms)
            if page == "search":
                found = 0 if random() < ZERO_RESULTS_SHARE else 1 + int(SEARCH_RESULTS.draw(random))
                self._schedule(
                    at + self._between(2 * SECOND, 15 * SECOND),
                    "search.performed",
                    session_id=session_id,
                    query=QUERIES.draw(random),
                    results=found,
                    latency_ms=round(SEARCH_LATENCY_MS.draw(random), 1),
                )
            elif page == "product" and random() < CART_ADD_SHARE:
                self._schedule(
                    at + self._between(5 * SECOND, 90 * SECOND),
                    "cart.added",
                    session_id=session_id,
                    sku=self._sku(),
                    qty=LINE_QTYS.draw(random),
                )
            widget = PAGE_WIDGETS.get(page)
            if widget is not None:
                self._recommend(session_id, widget, at + self._between(SECOND, 3 * SECOND))
            at += int(THINK_TIME.draw(random))

    def _recommend(self, session_id: str, widget: str, at: int) -> None:
        """An impression, clicked now and then."""
        sku = self._sku()
        self._schedule(at, "recommendation.shown", session_id=session_id, widget=widget, sku=sku)
        if self.rng.random() < self.profile.click_through:
            self._schedule(
                at + self._between(2 * SECOND, 40 * SECOND),
                "recommendation.clicked",
                session_id=session_id,
                widget=widget,
                sku=sku,
            )


# Malformed lines: realistic producer mistakes, each one rejected by the contract.

Corruption = Callable[[random.Random, Fields, bytes], bytes]


def _truncated(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    return payload[: rng.randrange(1, len(payload))]


def _not_utf8(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    cut = rng.randrange(1, len(payload))
    return payload[:cut] + b"\xff\xfe" + payload[cut:]


def _not_object(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    return b"[" + payload + b"]"


def _unknown_type(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    return orjson.dumps({**event, "type": rng.choice(UNKNOWN_TYPES)})


def _missing_field(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    spec = EVENT_TYPES[str(event["type"])]
    missing = rng.choice([name for name, _kind in (*COMMON, *spec.required)])
    return orjson.dumps({name: value for name, value in event.items() if name != missing})


def _wrong_type(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    if "qty" in event:
        return orjson.dumps({**event, "qty": rng.choice((str(event["qty"]), 0))})
    name, _kind = rng.choice(EVENT_TYPES[str(event["type"])].required)
    return orjson.dumps({**event, name: [event[name]]})


def _bad_time(rng: random.Random, event: Fields, payload: bytes) -> bytes:
    return orjson.dumps({**event, "ts": rng.choice(BAD_TIMES)})


_CORRUPTIONS: tuple[Corruption, ...] = (
    _truncated,
    _not_utf8,
    _not_object,
    _unknown_type,
    _missing_field,
    _wrong_type,
    _bad_time,
)
