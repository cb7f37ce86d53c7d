"""A deterministic simulator of a fulfilment network, emitting contract events (§1) as JSON.

It is the embedded default of `opscockpit run` and the source of `opscockpit simulate`.
Orders (per fulfilment centre, following its customers' day), receipts, web sessions
and stock adjustments start as Poisson processes; each entity schedules its whole
lifecycle at once into a heap of future events. The network keeps each item's stock:
an order ships only what it can take from stock (else it is cancelled, out of stock),
an item that runs low is replenished by a supplier, and regular inbound tops up
items below their order-up-to level, so stock stays level. Occasional demand spikes,
and a daily packing slowdown at one fc, give the cockpit's detectors something to
find. Time advances in one-minute steps: events whose time has come are serialised,
given transport faults (duplicates, disorder, late arrival, malformed copies) and
released in arrival order. The opening balances come first, dated by their receipt
(up to ~400 days before the start) and in time order. Every draw comes from one
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
from datetime import datetime
from functools import lru_cache, partial
from itertools import accumulate, count
from statistics import NormalDist
from typing import BinaryIO, Generic, TypeVar
from zoneinfo import ZoneInfo

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
Item = tuple[str, str]  # (fc, sku)
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


@dataclass(frozen=True)
class Site:
    """A fulfilment centre: its time zone and how its floor works, in local time.

    `docker/opscockpit.toml` gives each the same zone and its shifts."""

    time_zone: str
    pick_minutes: float  # median wait from placing to the first pick, with the day crew
    pack_minutes: float  # median from the first pick to packing, with the day crew
    opens: int = 0  # the floor works from this local hour ...
    closes: int = 24  # ... to this one (0-24: around the clock, slower at night)
    region: str | None = None  # the customers it serves, when not the profile's regions


SITES = {
    "FC-ATL1": Site("America/New_York", 30, 12),
    "FC-DAL1": Site("America/Chicago", 45, 18),
    "FC-RNO1": Site("America/Los_Angeles", 60, 25),
    "FC-EWR1": Site("America/New_York", 40, 15),
    "FC-ORD1": Site("America/Chicago", 35, 20),
    # No night shift: orders placed after 23:00 wait for the early shift at 06:00.
    "FC-BER1": Site("Europe/Berlin", 25, 10, opens=6, closes=23, region="eu-central"),
}
OTHER_SITE = Site("UTC", 40, 15)  # an fc of a custom profile
FCS = tuple(SITES)
REGIONS = ("us-east", "us-west", "us-central", "us-south", "us-northwest", "ca-east")
CUSTOMER_PEAK = 20 * HOUR  # UTC; mid-afternoon in the US (storefront sessions)
ORDER_PEAK_LOCAL = 15 * HOUR  # an fc's customers order most mid-afternoon, its local time
NIGHT = (6, 22)  # local hours of the day crew; a floor open around the clock ...
NIGHT_CREW_SLOWER = 2.5  # ... takes this much longer outside them
SHIP_CUTOFF_HOURS = (11, 23)  # UTC; an order ships by the first cut-off >= 4 h after placing
MIN_HANDLING = 4 * HOUR
# Delivery promise after the ship promise, in hours: same day, next day, 2, 3, 5 days.
TRANSIT_HOURS = Weighted((8, 24, 48, 72, 120), (12, 20, 38, 20, 10))
LINE_COUNTS = Weighted((1, 2, 3, 4), (55, 25, 13, 7))
LINE_QTYS = Weighted((1, 2, 3, 4, 6), (70, 17, 7, 4, 2))
UNITS_PER_ORDER = _mean(LINE_COUNTS) * _mean(LINE_QTYS)
CASE_SIZES = (6, 12, 24, 36, 48, 72, 96)
DOCK_TO_STOCK = LogNormal(3 * HOUR, 1.1)  # from dock scan to the last stow
SUPPLIER_LEAD = LogNormal(20 * HOUR, 0.6)  # from a replenishment order to the dock
REORDER_DAYS = 2.0  # an item is reordered when its stock covers this many days of demand
ORDER_UP_TO_DAYS = 12.0  # ... for this many days
MIN_STOCK = (3, 4, 6, 8, 12)  # units at the start of an item that sells slowly
# Opening stock by age: most items' lots came in the hours before the start; some
# slow movers (and dead stock) hold lots received 91-400 days before; the items
# that may see a demand spike were stocked 8-45 days before (a spike needs an
# item older than its baseline). Few old items keep the history cheap: an item
# gets a sku_health record at every midnight since it first existed.
RECENT_LOT = 6 * HOUR
AGED_LOT_DAYS = (91, 400)
SPIKE_ITEM_DAYS = (8, 45)
PROMO_STOCK = (20, 80)  # extra units of an item that may spike
SPIKE_HOURS = (1.5, 2.5)
SPIKE_UNITS_PER_HOUR = (20, 45)
SLOWDOWN_LOCAL_START = (8, 13)  # local hours; a packing slowdown starts in the day ...
SLOWDOWN_HOURS = (4.0, 7.0)  # ... and lasts this long
SLOWDOWN_STALLED = 0.85  # the share of packs it holds back until it ends
CART_AFTER_CLICK = LogNormal(3 * MINUTE, 1.0)  # a recommendation's click to its cart add
CONVERSION_MINUTES = 30  # the contract's default; some clicks convert later than this
CARRIERS = ("UPS", "FedEx", "USPS", "OnTrac", "DHL")
CANCEL_REASONS = ("customer_request", "payment_failed", "duplicate_order", "address_invalid")
OUT_OF_STOCK = "out_of_stock"
RETURN_AFTER = (2 * DAY, 21 * DAY)  # from delivery to the return reaching the fc
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
    # Stock: old lots, dead stock (never ordered) and the items that may spike.
    aged_share: float = 0.004  # of the items of the slowest 90% of SKUs
    dead_skus: int = 10
    spike_item_share: float = 0.02  # of the items of SKUs ranked in the top 1-20%
    # Episodes, not traffic: `scaled` keeps them, a spike's units are absolute.
    spikes_per_day: float = 1.5
    pack_slowdown_chance: float = 1.0  # that a day has one, at one fc
    # Orders: how each one ends.
    cancel_before_promise_share: float = 0.02
    cancel_after_promise_share: float = 0.007
    cancel_after_ship_share: float = 0.003
    never_ship_share: float = 0.01
    late_ship_share: float = 0.04  # and the floor's own delays make some more late
    late_delivery_share: float = 0.07
    lost_share: float = 0.007
    failed_attempt_share: float = 0.04
    second_delivered_share: float = 0.005
    return_share: float = 0.04
    no_reason_share: float = 0.1  # cancellations and returns without a reason (absent or null)
    # Inbound and web.
    never_stowed_share: float = 0.02
    click_through: float = 0.04
    conversion_share: float = 0.3  # of clicks, a cart add of the clicked sku follows ...
    late_conversion_share: float = 0.2  # ... of those, after CONVERSION_MINUTES
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
# What warehouses stream: order lifecycles and scans ~97%, storefront ~2.5%, with the
# usual faults. 120 h is ~1.0M events, ~135k open orders at a time.
ORDER_HEAVY = replace(
    DEFAULT_PROFILE,
    orders_per_hour=1400,
    receipts_per_hour=60,
    sessions_per_hour=25,
    adjustments_per_hour=30,
    skus=5000,
)


def stream(seed: int, start_us: int, profile: Profile = DEFAULT_PROFILE) -> Iterator[Emission]:
    """Infinite, deterministic for (seed, start_us, profile): (arrival_us, key, payload).

    Arrival times never decrease and never precede start_us (the opening balances,
    dated before it, arrive at it). The key is the event's entity key, and "" exactly
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
    peak: int = CUSTOMER_PEAK  # time of day (UTC) of the most starts
    next_at: int = 0


class _Floor:
    """A fulfilment centre's floor: local time, working hours and the speed of its crew."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.zone = ZoneInfo(site.time_zone)
        self.offsets: dict[int, int] = {}  # UTC offset (ms) by hour since the epoch
        self.pick_wait = LogNormal(site.pick_minutes * MINUTE, 0.5)
        self.pack_time = LogNormal(site.pack_minutes * MINUTE, 0.6)
        self.around_the_clock = site.opens == 0 and site.closes == 24

    def offset(self, at: int) -> int:
        """Local time minus UTC at a time, looked up once per hour."""
        hour = at // HOUR
        offset = self.offsets.get(hour)
        if offset is None:
            delta = datetime.fromtimestamp(hour * 3600, self.zone).utcoffset()
            offset = self.offsets[hour] = 0 if delta is None else delta // _ONE_MS
        return offset

    def time_of_day(self, at: int) -> int:
        """Milliseconds since local midnight."""
        return (at + self.offset(at)) % DAY

    def open_at(self, at: int) -> int:
        """The first moment from `at` on when the floor works."""
        now = self.time_of_day(at)
        opens, closes = self.site.opens * HOUR, self.site.closes * HOUR
        return at if opens <= now < closes else at + (opens - now) % DAY

    def crew(self, at: int) -> float:
        """How much longer work takes at a time: the night crew is smaller."""
        if not self.around_the_clock:
            return 1.0
        hour = self.time_of_day(at) // HOUR
        return 1.0 if NIGHT[0] <= hour < NIGHT[1] else NIGHT_CREW_SLOWER


_ONE_MS = datetime.resolution * 1000


@dataclass(frozen=True, slots=True)
class _Slowdown:
    """A packing line down at one fc: most packs wait until it is back, then drain."""

    fc: str
    start: int
    end: int


class _Network:
    """The simulated fulfilment network and its two heaps: future events and arrivals."""

    def __init__(self, seed: int, start_us: int, profile: Profile) -> None:
        self.seed, self.profile = seed, profile
        self.rng = random.Random(seed)
        self.random = self.rng.random
        self.event_prefix, self.event_numbers = f"ev-{seed}-", count()
        self.start = -(-start_us // US_PER_MS)  # round up: no arrival before start_us
        self.ids: defaultdict[str, Iterator[int]] = defaultdict(count)
        self.tiebreak = count()  # keeps both heaps stable
        self.pending: list[tuple[int, int, str, Fields]] = []
        self.arrivals: list[tuple[int, int, str, bytes]] = []

        self.skus = zipf([f"SKU-{n:05d}" for n in range(1, profile.skus + 1)], 1.0)
        self.fcs = zipf(profile.fcs, 0.5)
        self.regions = zipf(profile.regions, 0.5)
        self.floors = {fc: _Floor(SITES.get(fc, OTHER_SITE)) for fc in profile.fcs}
        # Each item's stock as the network plans it: units not yet promised to an
        # order, stows still to come, expected demand, and when it may be reordered.
        self.stock: dict[Item, int] = {}
        self.inbound: dict[Item, list[tuple[int, int]]] = {}
        self.demand_per_day: dict[Item, float] = {}
        self.reorder_after: dict[Item, int] = {}
        self.spike_items: list[Item] = []
        self.slowdowns: dict[int, _Slowdown | None] = {}  # by UTC day

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

        candidates = [
            _Process(
                p.orders_per_hour * share,
                p.diurnal_amplitude,
                partial(self._order, fc=fc),
                (ORDER_PEAK_LOCAL - self.floors[fc].offset(self.start)) % DAY,
            )
            for fc, share in self.fcs.shares()
        ]
        candidates += [
            _Process(p.receipts_per_hour, 0.0, self._receipt),
            _Process(p.sessions_per_hour, p.diurnal_amplitude, self._session),
            _Process(p.adjustments_per_hour, 0.0, self._adjustment),
            _Process(p.orders_per_hour * p.return_share, 0.0, self._earlier_return),
        ]
        self.opening = self._opening_balances()
        if self.spike_items:
            candidates.append(_Process(p.spikes_per_day / 24, p.diurnal_amplitude, self._spike))
        self.processes = [process for process in candidates if process.per_hour > 0]
        for process in self.processes:
            process.next_at = self.start + self._gap(process, self.start)

    def emissions(self) -> Iterator[Emission]:
        """The opening balances, then one step at a time; an arrival before the step's
        end is final. Infinite unless every traffic rate is zero."""
        yield from self._opening_emissions()
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
        phase = 2 * math.pi * ((at - process.peak) % DAY) / DAY
        per_ms = process.per_hour / HOUR * (1 + process.diurnal_amplitude * math.cos(phase))
        return 1 + int(self.rng.expovariate(per_ms))

    def _between(self, low: int, high: int) -> int:
        return low + int((high - low) * self.random())

    def _sku(self) -> str:
        return self.skus.draw(self.random)

    def _reason(self, reason: str) -> Fields:
        """A reason field as producers send it: now and then absent or null."""
        draw = self.random()
        share = self.profile.no_reason_share
        if draw >= share:
            return {"reason": reason}
        return {} if draw < 0.75 * share else {"reason": None}

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

    def _event(self, ts: int, kind: str, fields: Fields) -> tuple[Fields, bytes]:
        """An event with its id and time, and its JSON."""
        event: Fields = {
            "event_id": self.event_prefix + str(next(self.event_numbers)),
            "type": kind,
            "ts": self._stamp(ts),
        }
        event.update(fields)
        return event, orjson.dumps(event)

    def _release(self, ts: int, kind: str, fields: Fields) -> tuple[str, bytes] | None:
        """Serialise an event whose time has come and decide how it arrives.

        Returns (key, payload) when it arrives on time; anything delayed or extra is
        held back in the arrivals heap.
        """
        event, payload = self._event(ts, kind, fields)
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

    # Stock: opening balances, what orders take, what suppliers and adjustments bring.

    def _opening_balances(self) -> list[tuple[int, Item, int]]:
        """Every item's stock at the start as lots (received, item, units), oldest first.

        Units cover days of the expected demand by popularity (a few at least); their
        age follows the item's kind (see AGED_LOT_DAYS). Sets the network's stock."""
        p, rng = self.profile, self.rng
        per_day = 24 * p.orders_per_hour * UNITS_PER_ORDER
        slow_rank, spike_ranks = p.skus // 10, (p.skus // 100, p.skus // 5)
        lots: list[tuple[int, Item, int]] = []
        for fc, fc_share in self.fcs.shares():
            for rank, (sku, sku_share) in enumerate(self.skus.shares(), 1):
                item = (fc, sku)
                demand = self.demand_per_day[item] = per_day * fc_share * sku_share
                units = round(demand * p.opening_days_of_cover * rng.uniform(0.5, 1.5))
                units = max(units, rng.choice(MIN_STOCK))
                kind = self.random()
                if rank > slow_rank and kind < p.aged_share:
                    lots += self._aged_lots(item)
                    continue
                if spike_ranks[0] <= rank <= spike_ranks[1] and kind < p.spike_item_share:
                    self.spike_items.append(item)
                    units += rng.randint(*PROMO_STOCK)
                    lots.append((self.start - self._between(*SPIKE_ITEM_DAYS) * DAY, item, units))
                    continue
                lots.append((self.start - self._between(MINUTE, RECENT_LOT), item, units))
        for n in range(p.dead_skus):  # stock nobody orders
            lots += self._aged_lots((self.fcs.draw(self.random), f"SKU-{p.skus + n + 1:05d}"))
        for _received, item, units in lots:
            self.stock[item] = self.stock.get(item, 0) + units
        lots.sort()
        return lots

    def _aged_lots(self, item: Item) -> list[tuple[int, Item, int]]:
        """One to three lots of a slow mover, received 91-400 days before the start."""
        low, high = AGED_LOT_DAYS
        return [
            (
                self.start - self._between(low * DAY + HOUR, high * DAY),
                item,
                self.rng.randint(1, 12),
            )
            for _ in range(self.rng.randint(1, 3))
        ]

    def _opening_emissions(self) -> Iterator[Emission]:
        """The opening lots as adjustments dated by their receipt, in time order, all
        arriving at the start without transport faults (none of them is late)."""
        arrival = self.start * US_PER_MS
        for received, (fc, sku), units in self.opening:
            fields: Fields = {"fc": fc, "sku": sku, "delta": units, "reason": "opening_balance"}
            event, payload = self._event(received, "inventory.adjusted", fields)
            yield arrival, entity_key(event), payload
        self.opening = []

    def _on_hand(self, item: Item, at: int) -> int:
        """Units of an item free to promise at a time (its stows up to then counted)."""
        arriving = self.inbound.get(item)
        if arriving is not None:
            while arriving and arriving[0][0] <= at:
                self.stock[item] = self.stock.get(item, 0) + heapq.heappop(arriving)[1]
            if not arriving:
                del self.inbound[item]
        return self.stock.get(item, 0)

    def _take(self, fc: str, lines: list[tuple[str, int]], at: int) -> bool:
        """Promise an order's units from stock, all or nothing; reorder what runs low
        (or short)."""
        short = [sku for sku, qty in lines if self._on_hand((fc, sku), at) < qty]
        for sku, qty in lines:
            item = (fc, sku)
            left = self.stock.get(item, 0) - (0 if short else qty)
            demand = self.demand_per_day.get(item, 0.0)
            low = sku in short or left <= max(demand * REORDER_DAYS, 1)
            if low and at >= self.reorder_after.get(item, 0):
                self._replenish(item, demand, at)
            if not short:
                self.stock[item] = left
        return not short

    def _replenish(self, item: Item, demand: float, at: int) -> None:
        """A supplier's delivery of whole cases for ORDER_UP_TO_DAYS of demand."""
        case = next((size for size in CASE_SIZES if size >= demand), CASE_SIZES[-1])
        qty = case * max(1, math.ceil(demand * ORDER_UP_TO_DAYS / case))
        lead = min(max(int(SUPPLIER_LEAD.draw(self.random)), 4 * HOUR), 5 * DAY)
        self.reorder_after[item] = self._inbound(at + lead, item, qty)

    def _receipt(self, received: int) -> None:
        """A purchase order of some SKU arriving at the dock (regular inbound): a case
        for an item whose stock and stows to come cover less than ORDER_UP_TO_DAYS
        of its demand; an item drawn with more gets none (stock stays level)."""
        item = (self.fcs.draw(self.random), self._sku())
        case = self.rng.choice(CASE_SIZES)
        on_hand = self._on_hand(item, received)  # stows up to now counted, not coming
        coming = sum(qty for _at, qty in self.inbound.get(item, ()))
        if on_hand + coming < self.demand_per_day.get(item, 0.0) * ORDER_UP_TO_DAYS:
            self._inbound(received, item, case)

    def _inbound(self, received: int, item: Item, qty: int) -> int:
        """A dock receipt, then 1-4 partial stows spread over minutes to days; returns
        when the last stow happens (the receipt's time when none does)."""
        rng = self.rng
        fc, sku = item
        receipt = {"receipt_id": self._id("RCV"), "fc": fc, "sku": sku}
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
        arriving = self.inbound.setdefault(item, [])
        for offset, stowed in zip(offsets, quantities, strict=True):
            bin_label = f"{rng.choice('ABCDEFGH')}{rng.randint(1, 40):02d}-{rng.randint(1, 12):02d}"
            self._schedule(
                received + offset, "inventory.stowed", **receipt, qty=stowed, bin=bin_label
            )
            heapq.heappush(arriving, (received + offset, stowed))
        return received + (offsets[-1] if offsets else 0)

    def _adjustment(self, at: int) -> None:
        """A cycle count, damage or find; nothing is written off below zero."""
        reason, deltas = self.rng.choice(ADJUSTMENTS)
        item = (self.fcs.draw(self.random), self._sku())
        delta = max(self.rng.choice(deltas), -self._on_hand(item, at))
        if delta == 0:
            return
        self.stock[item] = self.stock.get(item, 0) + delta
        fc, sku = item
        self._schedule(at, "inventory.adjusted", fc=fc, sku=sku, delta=delta, reason=reason)

    # Orders: placing, fulfilment on the floor, carriers, returns.

    def _order(
        self, placed: int, fc: str, skus: Sequence[str] = (), decided: int | None = None
    ) -> None:
        """A customer order and, decided at once (at `decided`, by default when it is
        placed), everything that happens to it."""
        rng, random = self.rng, self.random
        ship_by = _ship_promise(placed)
        if not skus:
            skus = list(dict.fromkeys(self._sku() for _ in range(LINE_COUNTS.draw(random))))
        order = _Order(
            order_id=self._id("ORD"),
            fc=fc,
            lines=[(sku, LINE_QTYS.draw(random)) for sku in skus],
            placed=placed,
            ship_by=ship_by,
            deliver_by=ship_by + HOUR * TRANSIT_HOURS.draw(random),
        )
        self._schedule(
            placed,
            "order.placed",
            order_id=order.order_id,
            customer_id=f"C{rng.randrange(1, 500_000):06d}",
            fc=fc,
            region=self.floors[fc].site.region or self.regions.draw(random),
            lines=[{"sku": sku, "qty": qty} for sku, qty in order.lines],
            promised_ship_by=rfc3339(order.ship_by),
            promised_delivery_by=rfc3339(order.deliver_by),
        )
        fate = self.order_fates.draw(random)
        taken_at = placed if decided is None else decided
        if fate.startswith("shipped") and not self._take(fc, order.lines, taken_at):
            self._schedule(
                placed + self._between(5 * MINUTE, 2 * HOUR),
                "order.cancelled",
                order_id=order.order_id,
                reason=OUT_OF_STOCK,
            )
        elif fate == "cancelled_early":
            self._schedule(
                self._between(placed + 5 * MINUTE, ship_by),
                "order.cancelled",
                order_id=order.order_id,
                **self._reason(rng.choice(CANCEL_REASONS)),
            )
        elif fate == "cancelled_late":  # by a customer tired of waiting
            self._schedule(
                ship_by + self._between(30 * MINUTE, DAY),
                "order.cancelled",
                order_id=order.order_id,
                **self._reason("delayed"),
            )
        elif fate == "shipped_late":
            delay = MINUTE + min(int(rng.expovariate(1 / (3 * HOUR))), 18 * HOUR)
            self._ship(order, ship_by + delay)
        elif fate == "shipped":
            self._ship(order, placed + int((ship_by - placed) * rng.uniform(0.25, 0.98)))
        # "stuck": never leaves the building

    def _spike(self, begin: int) -> None:
        """A demand spike: one item's orders at one fc jump for an hour or two."""
        fc, sku = self.rng.choice(self.spike_items)
        span = int(HOUR * self.rng.uniform(*SPIKE_HOURS))
        units = self.rng.uniform(*SPIKE_UNITS_PER_HOUR) * span / HOUR
        orders = round(units / _mean(LINE_QTYS))
        for at in sorted(self._between(begin, begin + span) for _ in range(orders)):
            self._order(at, fc, (sku,), decided=begin)

    def _ship(self, order: _Order, shipped: int) -> None:
        """The floor's work between placing and shipping, then the carrier's part.

        Picks and packs happen while the floor works (slower with the night crew);
        packing may be held up by a slowdown; a shipment never leaves before its pack."""
        rng, fc = self.rng, order.fc
        floor = self.floors[fc]
        begin = floor.open_at(order.placed)
        picked = floor.open_at(begin + int(floor.pick_wait.draw(self.random) * floor.crew(begin)))
        packed = picked + int(floor.pack_time.draw(self.random) * floor.crew(picked))
        packed = self._held_up(fc, floor.open_at(packed))
        if shipped <= packed:
            shipped = packed + self._between(5 * MINUTE, 45 * MINUTE)
        for line, (sku, qty) in enumerate(order.lines):
            at = picked + (self._between(0, min(6 * MINUTE, packed - picked)) if line else 0)
            self._schedule(at, "inventory.picked", order_id=order.order_id, fc=fc, sku=sku, qty=qty)
        self._schedule(packed, "inventory.packed", order_id=order.order_id, fc=fc)
        carrier = rng.choice(CARRIERS)
        self._schedule(shipped, "order.shipped", order_id=order.order_id, fc=fc, carrier=carrier)
        if rng.random() < self.profile.cancel_after_ship_share:  # intercepted, sent back
            self._schedule(
                shipped + self._between(10 * MINUTE, 6 * HOUR),
                "order.cancelled",
                order_id=order.order_id,
                **self._reason(rng.choice(CANCEL_REASONS)),
            )
            return
        fate = self.delivery_fates.draw(self.random)
        if fate != "lost":
            self._deliver(order, shipped, carrier, late=fate == "late")

    def _held_up(self, fc: str, packed: int) -> int:
        """When a pack due at `packed` happens: a slowdown at the fc holds most back."""
        day = packed - packed % DAY
        for slowdown in (self._slowdown(day - DAY), self._slowdown(day)):
            if (
                slowdown is not None
                and slowdown.fc == fc
                and slowdown.start <= packed < slowdown.end
                and self.random() < SLOWDOWN_STALLED
            ):
                drain = (slowdown.end - slowdown.start) // 3
                return slowdown.end + self._between(0, drain)
        return packed

    def _slowdown(self, day: int) -> _Slowdown | None:
        """The packing slowdown of a UTC day, if any: at one fc (busy ones more often),
        starting in its local morning."""
        if day not in self.slowdowns:
            slowdown = None
            if self.random() < self.profile.pack_slowdown_chance:
                fc = self.fcs.draw(self.random)
                local = int(HOUR * self.rng.uniform(*SLOWDOWN_LOCAL_START))
                start = day + local - self.floors[fc].offset(day + local)
                span = int(HOUR * self.rng.uniform(*SLOWDOWN_HOURS))
                slowdown = _Slowdown(fc, start, start + span)
            self.slowdowns[day] = slowdown
        return self.slowdowns[day]

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
                delivered + self._between(*RETURN_AFTER),
                "return.received",
                order_id=order.order_id,
                fc=order.fc,
                sku=sku,
                qty=rng.randint(1, qty),
                **self._reason(rng.choice(RETURN_REASONS)),
            )

    def _earlier_return(self, at: int) -> None:
        """A return of an order delivered before the start (one this stream never
        places): they fade out as the simulated orders' own returns come in."""
        low, high = RETURN_AFTER
        if self.random() * (high - low) >= self.start + high - at:
            return
        self._schedule(
            at,
            "return.received",
            order_id=f"ORD-{self.seed}-E{next(self.ids['earlier']):07d}",
            fc=self.fcs.draw(self.random),
            sku=self._sku(),
            qty=LINE_QTYS.draw(self.random),
            **self._reason(self.rng.choice(RETURN_REASONS)),
        )

    # Shoppers.

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
        """An impression, clicked now and then; a click often puts the sku in the cart,
        mostly within CONVERSION_MINUTES, now and then later (the shopper came back)."""
        sku = self._sku()
        self._schedule(at, "recommendation.shown", session_id=session_id, widget=widget, sku=sku)
        p = self.profile
        if self.random() >= p.click_through:
            return
        clicked = at + self._between(2 * SECOND, 40 * SECOND)
        self._schedule(
            clicked, "recommendation.clicked", session_id=session_id, widget=widget, sku=sku
        )
        if self.random() >= p.conversion_share:
            return
        if self.random() < p.late_conversion_share:
            added = clicked + self._between((CONVERSION_MINUTES + 1) * MINUTE, 3 * HOUR)
        else:
            wait = int(CART_AFTER_CLICK.draw(self.random))
            added = clicked + min(wait, (CONVERSION_MINUTES - 1) * MINUTE)
        self._schedule(added, "cart.added", session_id=session_id, sku=sku, qty=1)


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
