"""A deliberately simple batch reference for contract §3.2-§3.5, for tests only.

Inventory health per item (§3.2), fulfilment flow (§3.3), customer experience
(§3.4) and detection (§3.5), with their metrics (§4) and records (§5). Written
from the contract (`../shared/contract.md`), the README section "Semantics: what
every number means" and `tests/reference.py` alone, without the engine's code, so
that the two implementations check each other.

The acceptance pass is `tests/reference.py`'s (`admit`: one pass in arrival
order decides accepted, duplicate and late events), and so is the attachment
of events to orders and receipts (`_apply`: held events, orphans, orders that
leave state and are placed anew). Every KPI is then computed in batch from the
accepted events and the final watermark W = max accepted ts, as of each window
close b (a multiple of the window with b <= W): "as of b" counts exactly the
accepted events with ts < b (§2).

    result = compute(lines, {"lead_time_days": 3, "fc": {"FC2": {"time_zone": "Europe/Berlin"}}})
    result.samples   # as tests.reference.parse_exposition gives them
    result.records   # cockpit.kpis: sku_health, shift, cancellation_ratio, return_ratio,
                     # click_through_ratio
    result.alerts    # cockpit.alerts: stockout, demand_spike, bottleneck (no decided_ts)
    compare(result.samples, parse_exposition(text)); compare_records(result.alerts, alerts)

Settings are the names of contract §6's TOML file (`demand_days`, ...,
`time_zone`, `shifts` {name: "HH:MM"}, `fc` {fc: {lead_time_days, time_zone,
shifts}}), plus `lateness` and `window` in seconds, `max_event_bytes` and
`max_label_values`.

Choices the contract and README leave open (numbered for reconciling with the
engine; the engine must agree or the README must say otherwise):

Time and closes
 1. Closes: every multiple of the window in (first accepted ts, W], including the
    closes of windows without any event; every item, fc and stage is evaluated
    at each (closes at or before the first accepted ts hold nothing as of them).
 2. "Latest close" (gauges) = the largest multiple of the window <= W; an
    instance or window is closed when W >= its end.

Items (§3.2)
 3. An item exists at close b when its first stock event or order line has
    ts < b: it is first evaluated at the first close after that event, and
    `cockpit_skus_tracked` at the latest close b leaves out items whose first
    event is at or after b.
 4. An item that leaves at close b is not evaluated at b: no states, alerts or
    record there, and it is not tracked (it holds no state then anyway unless
    demand_days exceeds 90).
 5. An item made anew after leaving starts from nothing: its on hand, lots and
    units ordered count only events from its own first event on (the same
    numbers as the whole history, since it left at on hand 0 after 90 idle days,
    unless demand_days, safety_days or spike_days reach back beyond that).
 6. Unit events never wait for their order (README: "Unit counters and on hand
    never wait"): on hand and aging use every accepted stow, pick (even of an
    order never placed) and adjustment. Units ordered count only lines of
    existing orders (first `order.placed`), on the day and window of its ts;
    several lines of one sku in an order add up.
 7. `inventory.adjusted` with delta 0 is a stock event: it makes an item exist
    and counts as activity for the leave rule; it adds no lot.
 8. `cover_days` = on hand / d whenever d > 0, so 0 or negative when on hand
    <= 0; null when d = 0. `demand_per_day` = units / demand_days as a float.
 9. sigma always divides by `safety_days`: days before the item existed count as
    days without orders (0). sigma is the square root of the exact variance.
10. Safety stock is reported as z * sigma * sqrt(lead_time) even when negative
    (service_level < 0.5); "below safety stock" needs it > 0 and compares in
    floating point (§2 names only cover and spike comparisons as exact).
11. `sku_health` records only for items that exist at that midnight close.
    `skus_*` and `units_on_hand_by_age` gauges are per fc of the items that
    exist at the latest close (an fc with no such item has no series).

Detection (§3.5)
12. Demand spike: an item "has existed since" the ts of its first stock event
    or order line (of its current life); the test is exact (u >= spike_factor
    * mean). Record `units` = u, `baseline` = the mean as a float.
13. Edge rule: the condition at the previous close b - window is computed by the
    same rule; for an item's first close it is false (§3.2). `stockout` records
    carry on hand and d as of b.
14. Bottleneck `samples` are the `bottleneck_windows` backlogs that rose (the
    last that many closes, oldest first, the last one being `backlog`), not the
    sample before them. All four stages are checked, `stow` included.

Flow (§3.3)
15. Order facts come from the orders of `tests/reference.py` (`_apply`): an
    order's events are those attached to it (held events claimed in time, not
    orphans); an order that left state and is placed again is a new order (and
    counts again in `cockpit_orders_placed_total`). Receipts likewise for
    `stow`, with the fc of `inventory.received`.
16. Stage backlog gauges and bottleneck flags for every fc with an order or a
    receipt, all four stages (0 when empty). Backlogs, bottlenecks and their
    records are per fc as the label cap folds it (the fc of the order's or
    receipt's metrics): fcs folded into `other` add up into one backlog, which
    has its own bottleneck, as `cancellation_ratio` records do (choice 21).
17. Stage times carry the fc of `order.placed`; an order missing either time of
    a pair observes nothing for it; at the end of the input every pair of an
    existing order is observed (W = max accepted ts reaches every ts).
18. Shifts: a calendar's shifts are ordered by local start time; each instance
    runs to the next one's start, the last of a day to the first of the next
    local day; two shifts with the same start make a zero-length instance
    (none). A gap's start moves to the instant of the jump (e.g. 02:30 on a
    spring-forward day in Berlin -> 03:00 CEST).
19. Shift units picked: every accepted pick (even of an order never placed), by
    its own ts and fc. Orders shipped: existing orders by their earliest
    shipment, placed by the later of its ts and the placed ts (§2), that
    shipment's fc. The fc's "first pick or shipment" is the earliest of those.
20. Shift gauges show, per fc and shift name, the latest closed instance from
    the fc's first one on; a name with no such instance has no series. fcs
    folded into one label (`other`) add up, as in every other fc metric.

Customer experience (§3.4)
21. Ratios (cancellation, return, click-through): one record per closed window
    and fc (or widget) whose divisor is not 0, also when the numerator is 0;
    the gauge shows the latest closed window and is absent (not kept from an
    earlier window) when its divisor there is 0. A cancellation placed into a
    window without placed orders is in no ratio. Their records carry the fc (or
    widget) as the gauges do, folded by the label cap (as `sell_through` records
    do), so that a record and its gauge agree.
22. The return ratio's numerator and `cockpit_units_returned_total` count every
    accepted return (even of an order never placed), by its own ts and fc; the
    divisor the line units of existing orders by their earliest shipment (later
    of its ts and the placed ts), that shipment's fc.
23. `cockpit_orders_cancelled_total{fc, reason}`: one per existing order with a
    cancellation (shipped or not) that W has passed (so not one at the last ts),
    fc of the order, reason of its earliest cancellation (ties: the first to
    arrive, as for the earliest shipment's fc).
24. Recommendation conversion: clicks and carts need no order; the cart must
    have the click's `session_id` and `sku` (any widget); a click is decided when
    W - c > conversion_minutes, at the end W = max accepted ts.

Labels and settings
25. The new metrics fold `fc`, `widget` and `reason` as the events that carried
    them were folded (`tests/reference.py`: a value is folded for good or never;
    a return's reason at its arrival, a cancellation's when it is attached as its
    order's earliest). `reason` is `unknown` when absent or null, and kept as it
    is otherwise (even ""). The other records (`sku_health`, `shift`, alerts)
    carry raw values.
26. Decimal settings are exact: a float setting is read as the decimal it
    prints as (0.95 is 19/20), like a TOML value written in decimal.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

from tests import reference
from tests.reference import DAY, US, Event, Labels, Order, Receipt, Samples

Record = dict[str, Any]

DEFAULT_SHIFTS = {"early": "06:00", "late": "14:00", "night": "22:00"}  # §3.3
LEAVE_AFTER = 90 * DAY  # §3.2: an item idle this long at on hand 0 leaves
AGE_BANDS = (("0-90", 90), ("91-180", 180), ("181-270", 270), ("271-365", 365), ("365+", None))
STATES = ("at_risk", "below_safety_stock", "excess", "out_of_stock")  # sorted (§5)
STAGES = ("pick", "pack", "ship", "stow")  # §3.3 stage backlog
STAGE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)  # §4

# §4: every metric computed here; ratios are "not set" (absent) when undefined.
HISTOGRAMS = {
    "cockpit_pick_wait_seconds": STAGE_BUCKETS,
    "cockpit_pick_to_pack_seconds": STAGE_BUCKETS,
    "cockpit_pack_to_ship_seconds": STAGE_BUCKETS,
}
PRESENCE_MATTERS = {
    "cockpit_cancellation_ratio",
    "cockpit_return_ratio",
    "cockpit_recommendation_click_through_ratio",
}
METRICS = reference.HEALTH_METRICS
RECORD_KINDS = {
    "sku_health",
    "shift",
    "cancellation_ratio",
    "return_ratio",
    "click_through_ratio",
    "stockout",
    "demand_spike",
    "bottleneck",
}
TIME_FIELDS = {"window_start", "window_end"}


# --- settings (§3.2-3.5 defaults, §6 names) ------------------------------------


def exact(value: float | str | Fraction) -> Fraction:
    """A setting as an exact rational; a float is the decimal it prints as (§2)."""
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


@dataclass(frozen=True)
class Config:
    demand_days: int = 7
    lead_time_days: Fraction = Fraction(7)
    excess_days: Fraction = Fraction(90)
    safety_days: int = 28
    service_level: Fraction = Fraction(95, 100)
    spike_days: int = 7
    spike_min_units: int = 10
    spike_factor: Fraction = Fraction(3)
    bottleneck_windows: int = 3
    bottleneck_min: int = 25
    conversion_minutes: Fraction = Fraction(30)
    time_zone: str = "UTC"
    shifts: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SHIFTS))
    fc: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lateness: float = 60  # seconds
    window: int = 3600 * US  # microseconds
    max_event_bytes: int = 1 << 20
    max_label_values: int = 1000

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> Config:
        s = dict(settings or {})
        exact_names = ("lead_time_days", "excess_days", "service_level", "spike_factor")
        for name in (*exact_names, "conversion_minutes"):
            if name in s:
                s[name] = exact(s[name])
        if "window" in s:
            s["window"] = round(exact(s["window"]) * US)
        if "shifts" in s:
            s["shifts"] = dict(s["shifts"])
        return cls(**s)

    def lead_time(self, fc: str) -> Fraction:
        """§3.2: lead time in days, also per fc."""
        return exact(self.fc.get(fc, {}).get("lead_time_days", self.lead_time_days))

    def calendar(self, fc: str) -> tuple[str, dict[str, str]]:
        """§3.3, §6: (IANA zone, {shift: "HH:MM"}); an fc's own shifts replace the defaults."""
        own = self.fc.get(fc, {})
        return own.get("time_zone", self.time_zone), dict(own.get("shifts", self.shifts))


# --- small helpers ---------------------------------------------------------------


class Timeline:
    """Quantities at times; sums over [lo, hi) of event time."""

    def __init__(self, points: Iterable[tuple[int, int]]) -> None:
        points = sorted(points)
        self.times = [t for t, _ in points]
        self.prefix = [0]
        for _, qty in points:
            self.prefix.append(self.prefix[-1] + qty)

    def before(self, t: float) -> int:
        """Σ of the quantities with time < t."""
        return self.prefix[bisect.bisect_left(self.times, t)]

    def between(self, lo: float, hi: float) -> int:
        """Σ of the quantities with lo <= time < hi."""
        return self.before(hi) - self.before(lo)

    def any_between(self, lo: float, hi: float) -> bool:
        return bisect.bisect_left(self.times, hi) > bisect.bisect_left(self.times, lo)


def fmt(us: int) -> str:
    """RFC 3339 UTC text of a time in microseconds (§5)."""
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    fraction = f".{t.microsecond:06d}" if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def closes_in(lo: float, hi: float, window: int) -> range:
    """The window closes b (multiples of the window) with lo < b <= hi."""
    first = math.floor(lo) // window * window + window
    last = math.floor(hi) // window * window
    return range(first, last + 1, window)


def labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


# --- result ------------------------------------------------------------------------


@dataclass
class Result:
    """What the reference derives from one input (records without `decided_ts`)."""

    samples: Samples
    records: list[Record]
    alerts: list[Record]


@dataclass
class Facts:
    """The input as the KPIs read it: accepted events, orders, receipts, closes."""

    config: Config
    accepted: list[Event]
    orders: list[Order]
    receipts: list[Receipt]
    w: int  # final watermark: the largest accepted ts
    closes: range  # every window close from the first accepted event up to W

    def __post_init__(self) -> None:
        self.folded: dict[str, dict[str, str]] = defaultdict(dict)
        for e in self.accepted:
            for name, label in e.labels.items():
                self.folded[name][reference.label_value(e.body, name)] = label

    def labels(self, **pairs: str) -> Labels:
        """Metric labels of event values as the label cap folds them (§4)."""
        return labels(**{name: self.folded[name].get(v, v) for name, v in pairs.items()})

    @property
    def latest(self) -> int | None:
        """The latest close (§4 "latest close", "latest closed window")."""
        return self.closes[-1] if self.closes else None


def compute(lines: Iterable[bytes], settings: Mapping[str, Any] | None = None) -> Result:
    """Every §3.2-3.5 number for the JSON Lines `lines` (one event each, no newline)."""
    config = Config.of(settings)
    scratch: dict[str, Counter[Labels]] = defaultdict(Counter)  # §3.1 counts: not ours
    accepted, _, max_ts = reference.admit(
        lines,
        lateness_s=config.lateness,
        max_event_bytes=config.max_event_bytes,
        counts=scratch,
    )
    result = Result({}, [], [])
    if not accepted:
        return result
    orders, receipts = reference._apply(accepted, max_ts, config.max_label_values, scratch)
    w = int(max_ts)
    first = min(e.ts for e in accepted)
    facts = Facts(config, accepted, orders, receipts, w, closes_in(first, w, config.window))
    _inventory_health(facts, result)
    _stage_times(facts, result)
    _backlog_and_bottlenecks(facts, result)
    _shifts(facts, result)
    _customer(facts, result)
    result.records.sort(key=record_key)
    result.alerts.sort(key=record_key)
    return result


# --- §3.2 inventory health and §3.5 stockouts and demand spikes ---------------------


@dataclass
class Item:
    """One life of an item (fc, sku): from its first stock event or order line
    until the close at which it leaves (§3.2)."""

    fc: str
    sku: str
    start: int  # ts of its first stock event or order line
    stock: list[tuple[int, str, int]]  # (ts, event_id, change of on hand), (ts, event_id) order
    lines: list[tuple[int, int]]  # (placed ts, units ordered)
    left_at: int | None = None  # the close at which it left

    def __post_init__(self) -> None:
        self.on_hand_at = Timeline((ts, change) for ts, _, change in self.stock)
        self.ordered = Timeline(self.lines)
        self.activity = Timeline([(ts, 0) for ts, _, _ in self.stock] + self.lines)

    def on_hand(self, b: int) -> int:
        """On hand as of b (§3.1: stowed - picked + adjusted, ts < b)."""
        return self.on_hand_at.before(b)

    def units_ordered(self, lo: int, hi: int) -> int:
        """Units ordered with placed ts in [lo, hi) (§3.2)."""
        return self.ordered.between(lo, hi)

    def lots(self, b: int) -> list[list[int]]:
        """§3.2 aging: FIFO lots [ts, units] as of b, oldest first."""
        lots: list[list[int]] = []
        shortfall = 0
        for ts, _, change in self.stock:  # in (ts, event_id) order
            if ts >= b:
                break
            if change > 0:
                filled = min(shortfall, change)  # a shortfall is filled before a lot is added
                shortfall -= filled
                if change > filled:
                    lots.append([ts, change - filled])
            else:
                take = -change
                while take and lots:  # from the oldest lots first
                    used = min(take, lots[0][1])
                    lots[0][1] -= used
                    take -= used
                    if lots[0][1] == 0:
                        lots.pop(0)
                shortfall += take  # what the lots cannot cover
        return lots


def _items(facts: Facts) -> list[Item]:
    """Every life of every item, with the close at which it left (if it did)."""
    stock: dict[tuple[str, str], list[tuple[int, str, int]]] = defaultdict(list)
    lines: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for e in facts.accepted:  # §3.2: stock events create items (receipts, returns do not)
        b = e.body
        if e.type == "inventory.stowed":
            stock[b["fc"], b["sku"]].append((e.ts, b["event_id"], b["qty"]))
        elif e.type == "inventory.picked":
            stock[b["fc"], b["sku"]].append((e.ts, b["event_id"], -b["qty"]))
        elif e.type == "inventory.adjusted":
            stock[b["fc"], b["sku"]].append((e.ts, b["event_id"], b["delta"]))
    for order in facts.orders:  # ... and so do the lines of orders' first order.placed
        p = order.opener
        for line in p.body["lines"]:
            lines[p.body["fc"], line["sku"]].append((p.ts, line["qty"]))

    def life(key: tuple[str, str], start: int, left_at: int | None) -> Item:
        """The item's events with ts in [start, left_at)."""
        end = math.inf if left_at is None else left_at
        return Item(
            *key,
            start,
            sorted(s for s in stock[key] if start <= s[0] < end),  # (ts, event_id) order
            sorted(line for line in lines[key] if start <= line[0] < end),
            left_at,
        )

    items = []
    for key in sorted(stock.keys() | lines.keys()):
        starts = sorted([ts for ts, _, _ in stock[key]] + [ts for ts, _ in lines[key]])
        start: int | None = starts[0]
        while start is not None:
            item = life(key, start, None)
            for b in closes_in(start, facts.w, facts.config.window):
                # §3.2: it leaves when on hand as of b is 0 and it had no stock event
                # or order line with ts in [b - 90 days, b)
                if item.on_hand(b) == 0 and not item.activity.any_between(b - LEAVE_AFTER, b):
                    item = life(key, start, b)
                    break
            items.append(item)
            # a later event makes it exist anew, as a new item
            left_at = item.left_at
            start = next((ts for ts in starts if left_at is not None and ts >= left_at), None)
    return items


@dataclass
class Health:
    """The §3.2 values of an item as of a close."""

    on_hand: int
    units: int  # ordered in [b - demand_days, b)
    demand: Fraction  # d, units per day
    cover: Fraction | None  # days of cover, when d > 0
    safety_stock: float
    states: list[str]
    by_age: dict[str, int]


def health(item: Item, b: int, config: Config) -> Health:
    """§3.2 at close b, with exact comparisons (§2)."""
    on_hand = item.on_hand(b)
    days = config.demand_days
    units = item.units_ordered(b - days * DAY, b)
    demand = Fraction(units, days)
    lead = config.lead_time(item.fc)
    states = set()
    if on_hand <= 0 and units > 0:
        states.add("out_of_stock")
    # cover < lead time  <=>  on hand · demand_days < lead_time_days · units ordered
    if on_hand > 0 and units > 0 and on_hand * days < lead * units:
        states.add("at_risk")
    if on_hand > 0 and (units == 0 or on_hand * days > config.excess_days * units):
        states.add("excess")

    # sigma: population standard deviation of units ordered per day over the
    # safety_days whole days before the day containing b (days without orders: 0)
    today = b // DAY * DAY
    per_day = [
        item.units_ordered(today - k * DAY, today - (k - 1) * DAY)
        for k in range(1, config.safety_days + 1)
    ]
    n = len(per_day)
    mean = Fraction(sum(per_day), n)
    variance = Fraction(sum(x * x for x in per_day), n) - mean * mean
    z = NormalDist().inv_cdf(float(config.service_level))
    safety = z * math.sqrt(variance) * math.sqrt(lead)
    if safety > 0 and on_hand < safety:
        states.add("below_safety_stock")

    # Aging: each unit's age is ⌊(b - lot ts) / 1 day⌋ days; bands by inclusive day counts
    by_age = dict.fromkeys((band for band, _ in AGE_BANDS), 0)
    for ts, qty in item.lots(b):
        age = (b - ts) // DAY
        band = next(band for band, top in AGE_BANDS if top is None or age <= top)
        by_age[band] += qty
    cover = Fraction(on_hand) / demand if units > 0 else None
    return Health(on_hand, units, demand, cover, safety, sorted(states), by_age)


def out_of_stock(item: Item, b: int, config: Config) -> bool:
    """§3.5 stockout condition: out of stock (§3.2) at b."""
    units = item.units_ordered(b - config.demand_days * DAY, b)
    return item.on_hand(b) <= 0 and units > 0


def demand_spike(item: Item, b: int, config: Config) -> tuple[int, Fraction] | None:
    """§3.5: (u, baseline) when the window [a, b) just closed is a spike, else None."""
    a = b - config.window
    u = item.units_ordered(a, b)
    days = config.spike_days
    if not item.start < a - days * DAY:  # existed since before a - spike_days (strictly)
        return None
    if u < config.spike_min_units:
        return None
    # baseline: the mean of the same window on each of the spike_days previous days
    same_windows = sum(item.units_ordered(a - k * DAY, b - k * DAY) for k in range(1, days + 1))
    baseline = Fraction(same_windows, days)
    return (u, baseline) if u >= config.spike_factor * baseline else None


def _inventory_health(facts: Facts, out: Result) -> None:
    config, latest = facts.config, facts.latest
    gauges: dict[str, Counter[Labels]] = defaultdict(Counter)
    stockouts: Counter[Labels] = Counter()
    spikes: Counter[Labels] = Counter()
    for item in _items(facts):
        fc = facts.labels(fc=item.fc)
        end = facts.w if item.left_at is None else item.left_at - 1  # not evaluated when it leaves
        # §3.2: an item's first close counts as one where no state held before
        was_out = was_spike = False
        for b in closes_in(item.start, end, config.window):
            # §3.5: an alert the first time the condition holds after not holding
            now_out = out_of_stock(item, b, config)
            if now_out and not was_out:
                h = health(item, b, config)
                stockouts[fc] += 1
                out.alerts.append(
                    {
                        "alert": "stockout",
                        "fc": item.fc,
                        "sku": item.sku,
                        "window_end": fmt(b),
                        "on_hand": h.on_hand,
                        "demand_per_day": float(h.demand),
                    }
                )
            spike = demand_spike(item, b, config)
            now_spike = spike is not None
            if spike and not was_spike:
                u, baseline = spike
                spikes[fc] += 1
                out.alerts.append(
                    {
                        "alert": "demand_spike",
                        "fc": item.fc,
                        "sku": item.sku,
                        "window_start": fmt(b - config.window),
                        "window_end": fmt(b),
                        "units": u,
                        "baseline": float(baseline),
                    }
                )
            was_out, was_spike = now_out, now_spike
            if b % DAY == 0:  # §5: sku_health at each day's close
                h = health(item, b, config)
                if h.on_hand != 0 or h.units > 0:
                    out.records.append(
                        {
                            "kpi": "sku_health",
                            "fc": item.fc,
                            "sku": item.sku,
                            "window_start": fmt(b - DAY),
                            "window_end": fmt(b),
                            "on_hand": h.on_hand,
                            "demand_per_day": float(h.demand),
                            "cover_days": None if h.cover is None else float(h.cover),
                            "safety_stock": h.safety_stock,
                            "states": h.states,
                            "units_by_age": h.by_age,
                        }
                    )
        # §4 gauges at the latest close: the items that exist there
        if latest is not None and item.start < latest <= end:
            h = health(item, latest, config)
            gauges["cockpit_skus_tracked"][fc] += 1
            for state in STATES:
                gauges[f"cockpit_skus_{state}"][fc] += state in h.states
            for band, units in h.by_age.items():
                gauges["cockpit_units_on_hand_by_age"][facts.labels(fc=item.fc, age=band)] += units
    for name, series in gauges.items():
        out.samples[name] = {key: float(v) for key, v in series.items()}
    out.samples["cockpit_stockouts_total"] = {k: float(v) for k, v in stockouts.items()}
    out.samples["cockpit_demand_spikes_total"] = {k: float(v) for k, v in spikes.items()}


# --- §3.3 fulfilment flow ---------------------------------------------------------


def _ts(event: Event | None) -> float:
    return event.ts if event else math.inf


def _stage_times(facts: Facts, out: Result) -> None:
    """Pick wait, pick to pack, pack to ship per order, in seconds, negative if the
    data says so; observed once W reaches the later time (always, at the end)."""
    values: dict[str, dict[Labels, list[float]]] = defaultdict(lambda: defaultdict(list))
    for order in facts.orders:
        fc = facts.labels(fc=order.opener.body["fc"])
        p = order.opener.ts
        k1, k2 = order.first("inventory.picked"), order.first("inventory.packed")
        s = order.first("order.shipped")
        if k1:
            values["cockpit_pick_wait_seconds"][fc].append((k1.ts - p) / US)
        if k1 and k2:
            values["cockpit_pick_to_pack_seconds"][fc].append((k2.ts - k1.ts) / US)
        if k2 and s:
            values["cockpit_pack_to_ship_seconds"][fc].append((s.ts - k2.ts) / US)
    for name, series in values.items():
        for key, observed in series.items():
            reference._histogram(out.samples, name, key, observed, HISTOGRAMS[name])


def stage_as_of(order: Order, b: int) -> str | None:
    """§3.3: the backlog stage of an order as of b, or None when in no backlog."""
    shipped, cancelled = order.first("order.shipped"), order.first("order.cancelled")
    if order.opener.ts >= b or _ts(shipped) < b or _ts(cancelled) < b:
        return None
    if _ts(order.first("inventory.packed")) < b:
        return "ship"  # packed (with or without a pick)
    if _ts(order.first("inventory.picked")) < b:
        return "pack"
    return "pick"


def backlogs(facts: Facts) -> dict[tuple[str, str], Counter[int]]:
    """§3.3 stage backlog per (fc, stage) as of each close (missing closes: 0)."""
    window = facts.config.window
    # Per fc as the label cap folds it (choice 16): fcs folded into `other` add up.
    fcs = {o.opener.labels["fc"] for o in facts.orders} | {
        r.opener.labels["fc"] for r in facts.receipts
    }
    backlog = {(fc, stage): Counter[int]() for fc in fcs for stage in STAGES}
    for order in facts.orders:  # in a backlog from its placed ts to its shipment or cancellation
        fc = order.opener.labels["fc"]
        done = min(_ts(order.first("order.shipped")), _ts(order.first("order.cancelled")))
        for b in closes_in(order.opener.ts, min(done, facts.w), window):
            stage = stage_as_of(order, b)
            assert stage is not None
            backlog[fc, stage][b] += 1
    for receipt in facts.receipts:  # received before b, not completed as of b (§3.1)
        done = _ts(receipt.completed_by())
        for b in closes_in(receipt.opener.ts, min(done, facts.w), window):
            backlog[receipt.opener.labels["fc"], "stow"][b] += 1
    return backlog


def bottleneck(series: Counter[int], b: int, config: Config) -> tuple[bool, list[int]]:
    """§3.5: (bottleneck at b?, the backlogs that rose): the backlog rose strictly at
    each of the last `bottleneck_windows` closes and is >= `bottleneck_min` at b."""
    n = config.bottleneck_windows
    samples = [series[b - k * config.window] for k in range(n, -1, -1)]  # n + 1, oldest first
    rose = all(later > earlier for earlier, later in pairwise(samples))
    return rose and samples[-1] >= config.bottleneck_min, samples[1:]


def _backlog_and_bottlenecks(facts: Facts, out: Result) -> None:
    config, latest = facts.config, facts.latest
    gauge, flag, alerts = {}, {}, Counter[Labels]()
    for (fc, stage), series in sorted(backlogs(facts).items()):
        key = labels(fc=fc, stage=stage)
        for b in facts.closes:
            now, samples = bottleneck(series, b, config)
            before, _ = bottleneck(series, b - config.window, config)
            if now and not before:
                alerts[key] += 1
                out.alerts.append(
                    {
                        "alert": "bottleneck",
                        "fc": fc,
                        "stage": stage,
                        "window_end": fmt(b),
                        "backlog": series[b],
                        "samples": samples,
                    }
                )
        if latest is not None:
            gauge[key] = float(series[latest])
            flag[key] = float(bottleneck(series, latest, config)[0])
    out.samples["cockpit_stage_backlog"] = gauge
    out.samples["cockpit_bottleneck"] = flag
    out.samples["cockpit_bottlenecks_total"] = {k: float(v) for k, v in alerts.items()}


def local_to_utc(local: dt.datetime, zone: ZoneInfo) -> int:
    """A local wall time in µs UTC (§3.3): a time that occurs twice takes the first;
    one that does not exist moves forward to the first instant that does (the
    instant the clocks jumped)."""
    first = local.replace(tzinfo=zone, fold=0)  # fold=0: the first of two occurrences
    if first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == local:
        return _us(first)
    # In a gap, fold=1 reads `local` with the offset after the jump (an instant
    # before it) and fold=0 with the offset before (an instant after it): the
    # jump lies between; find its second.
    lo, hi = _us(local.replace(tzinfo=zone, fold=1)) // US, _us(first) // US
    offset_before = dt.datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, zone).utcoffset() == offset_before:
            lo = mid
        else:
            hi = mid
    return hi * US


def _us(aware: dt.datetime) -> int:
    return (aware.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
        microseconds=1
    )


@dataclass
class Shift:
    name: str
    start: int  # µs UTC
    end: int


def shift_instances(time_zone: str, shifts: Mapping[str, str], lo: int, hi: int) -> list[Shift]:
    """§3.3: the instances of a calendar over local days around [lo, hi], in order.

    Each runs from its local start to the next shift's local start (the last of a
    day to the first of the next day), converted by the zone's rules; an instance
    with no length does not exist."""
    zone = ZoneInfo(time_zone)
    starts = sorted((dt.time.fromisoformat(hm), name) for name, hm in shifts.items())
    day = dt.datetime.fromtimestamp(lo // US, zone).date() - dt.timedelta(days=2)
    last = dt.datetime.fromtimestamp(hi // US, zone).date() + dt.timedelta(days=1)
    instances = []
    while day <= last:
        for i, (start, name) in enumerate(starts):
            following = day if i + 1 < len(starts) else day + dt.timedelta(days=1)
            end = starts[(i + 1) % len(starts)][0]
            begin = local_to_utc(dt.datetime.combine(day, start), zone)
            finish = local_to_utc(dt.datetime.combine(following, end), zone)
            if finish > begin:
                instances.append(Shift(name, begin, finish))
        day += dt.timedelta(days=1)
    return instances


def _shifts(facts: Facts, out: Result) -> None:
    """§3.3 throughput per fc and closed shift instance; `shift` records and gauges."""
    picks: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in facts.accepted:  # every accepted pick, by its own ts and fc
        if e.type == "inventory.picked":
            picks[e.body["fc"]].append((e.ts, e.body["qty"]))
    ships: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for order in facts.orders:  # orders by their earliest shipment, that shipment's fc
        s = order.first("order.shipped")
        if s:  # placed by the later of its ts and the placed ts (§2)
            ships[s.body["fc"]].append((max(s.ts, order.opener.ts), 1))
    latest: dict[tuple[str, str], tuple[int, int, float]] = {}  # (fc, shift name) ->
    for fc in sorted(picks.keys() | ships.keys()):
        picked, shipped = Timeline(picks[fc]), Timeline(ships[fc])
        first = min(picked.times[:1] + shipped.times[:1])
        zone, shifts = facts.config.calendar(fc)
        instances = shift_instances(zone, shifts, first, facts.w)
        # every closed instance from the one holding the fc's first pick or shipment
        for shift in instances:
            if shift.end <= first or shift.end > facts.w:  # before that one, or not closed
                continue
            units = picked.between(shift.start, shift.end)
            orders = shipped.between(shift.start, shift.end)
            hours = (shift.end - shift.start) / (3600 * US)
            out.records.append(
                {
                    "kpi": "shift",
                    "fc": fc,
                    "shift": shift.name,
                    "window_start": fmt(shift.start),
                    "window_end": fmt(shift.end),
                    "hours": hours,
                    "units_picked": units,
                    "orders_shipped": orders,
                    "value": units / hours,
                }
            )
            latest[fc, shift.name] = (units, orders, units / hours)  # instances in order
    names = (
        "cockpit_shift_units_picked",
        "cockpit_shift_orders_shipped",
        "cockpit_shift_units_picked_per_hour",
    )
    gauges: dict[str, dict[Labels, float]] = {name: {} for name in names}
    for (fc, shift_name), values in sorted(latest.items()):  # fcs folded into one label add up
        key = facts.labels(fc=fc, shift=shift_name)
        for name, value in zip(names, values, strict=True):
            gauges[name][key] = gauges[name].get(key, 0.0) + value
    out.samples.update(gauges)


# --- §3.4 customer experience -----------------------------------------------------


def _customer(facts: Facts, out: Result) -> None:
    config, window = facts.config, facts.config.window
    counters: dict[str, Counter[Labels]] = defaultdict(Counter)
    # Per window start and fc (or widget): numerators and divisors of §3.4's ratios.
    placed: Counter[tuple[int, str]] = Counter()
    cancelled: Counter[tuple[int, str]] = Counter()
    returned: Counter[tuple[int, str]] = Counter()
    shipped_units: Counter[tuple[int, str]] = Counter()
    shown: Counter[tuple[int, str]] = Counter()
    clicked: Counter[tuple[int, str]] = Counter()

    def start_of(ts: int) -> int:
        return ts // window * window

    # Ratios and their records per fc (widget) as the metrics fold it (`Event.labels`).
    for order in facts.orders:
        p = order.opener
        fc = p.labels["fc"]
        units = sum(line["qty"] for line in p.body["lines"])
        counters["cockpit_orders_placed_total"][labels(fc=fc)] += 1
        placed[start_of(p.ts), fc] += 1
        s, c = order.first("order.shipped"), order.first("order.cancelled")
        if s:  # units of the order at its first shipment, that shipment's fc
            counters["cockpit_units_shipped_total"][labels(fc=s.labels["fc"])] += units
            shipped_units[start_of(max(s.ts, p.ts)), s.labels["fc"]] += units
        if c and facts.w > c.ts:  # decided: the reason of its earliest cancellation
            counters["cockpit_orders_cancelled_total"][
                labels(fc=fc, reason=c.labels["reason"])
            ] += 1
            if c.ts < _ts(s):  # cancelled before shipping, placed by the later of c and p
                cancelled[start_of(max(c.ts, p.ts)), fc] += 1

    clicks: list[Event] = []
    carts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in facts.accepted:
        b = e.body
        if e.type == "return.received":  # every accepted return, its own ts and fc
            key = labels(fc=e.labels["fc"], reason=e.labels["reason"])
            counters["cockpit_units_returned_total"][key] += b["qty"]
            returned[start_of(e.ts), e.labels["fc"]] += b["qty"]
        elif e.type == "recommendation.shown":
            shown[start_of(e.ts), e.labels["widget"]] += 1
        elif e.type == "recommendation.clicked":
            clicked[start_of(e.ts), e.labels["widget"]] += 1
            clicks.append(e)
        elif e.type == "cart.added":
            carts[b["session_id"], b["sku"]].append(e.ts)

    # Recommendation conversion: decided when W passes c + conversion_minutes; it
    # converts when a cart event of the same session and sku has ts in [c, c + 30 min].
    horizon = config.conversion_minutes * 60 * US
    conversions: Counter[Labels] = Counter()
    decided: Counter[Labels] = Counter()
    for click in clicks:
        c, b = click.ts, click.body
        if facts.w - c > horizon:
            widget = labels(widget=click.labels["widget"])
            decided[widget] += 1
            if any(0 <= ts - c <= horizon for ts in carts[b["session_id"], b["sku"]]):
                conversions[widget] += 1
    counters["cockpit_recommendations_conversions_total"] = conversions
    counters["cockpit_recommendations_decided_total"] = decided

    for name, series in counters.items():
        out.samples[name] = {key: float(v) for key, v in series.items()}

    ratios = [  # (kpi, gauge, label, numerators, divisors)
        ("cancellation_ratio", "cockpit_cancellation_ratio", "fc", cancelled, placed),
        ("return_ratio", "cockpit_return_ratio", "fc", returned, shipped_units),
        (
            "click_through_ratio",
            "cockpit_recommendation_click_through_ratio",
            "widget",
            clicked,
            shown,
        ),
    ]
    latest_start = None if facts.latest is None else facts.latest - window
    for kpi, gauge, label, numerators, divisors in ratios:
        out.samples[gauge] = {}
        for (a, name), divisor in sorted(divisors.items()):
            if a + window > facts.w or divisor == 0:  # window not closed, or not set
                continue
            value = numerators[a, name] / divisor
            out.records.append(
                {
                    "kpi": kpi,
                    label: name,
                    "window_start": fmt(a),
                    "window_end": fmt(a + window),
                    "value": value,
                    "numerator": numerators[a, name],
                    "divisor": divisor,
                }
            )
            if a == latest_start:
                out.samples[gauge][labels(**{label: name})] = value


# --- comparing -------------------------------------------------------------------


def compare(
    expected: Samples,
    actual: Samples,
    *,
    metrics: Iterable[str] | None = None,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> list[str]:
    """Differences in the metrics computed here (`tests.reference.compare`): a series
    missing on one side is 0, except for the ratio gauges, absent when not set."""
    return reference.compare(
        expected,
        actual,
        metrics=METRICS if metrics is None else metrics,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        histograms=HISTOGRAMS,
        presence_matters=PRESENCE_MATTERS,
    )


def record_key(record: Record) -> str:
    """The §5 key of a record, its times normalised to microseconds."""
    kind = record.get("kpi") or record["alert"]
    if kind == "sku_health" or kind in {"stockout", "demand_spike"}:
        parts = [record["fc"], record["sku"], reference.to_us(record["window_end"])]
    elif kind == "bottleneck":
        parts = [record["fc"], record["stage"], reference.to_us(record["window_end"])]
    else:  # shift and ratios: kpi|fc (or widget)|window_start
        owner = record["widget"] if kind == "click_through_ratio" else record["fc"]
        parts = [owner, reference.to_us(record["window_start"])]
    return "|".join([kind, *(f"{p:020d}" if isinstance(p, int) else p for p in parts)])


def _differs(e: Any, a: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(e, dict) and isinstance(a, dict):
        return e.keys() != a.keys() or any(_differs(e[k], a[k], rel_tol, abs_tol) for k in e)
    if isinstance(e, list) and isinstance(a, list):
        return len(e) != len(a) or any(
            _differs(x, y, rel_tol, abs_tol) for x, y in zip(e, a, strict=True)
        )
    numbers = (int, float)
    if isinstance(e, numbers) and isinstance(a, numbers) and not isinstance(e, bool):
        return not math.isclose(e, a, rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(e != a)


def compare_records(
    expected: Iterable[Record],
    actual: Iterable[Record],
    *,
    kinds: Collection[str] = RECORD_KINDS,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> list[str]:
    """Differences between two record lists, one readable line each; [] when equal.

    Only records of `kinds` (default: those computed here) are compared, by their
    §5 key; times are compared as instants and `decided_ts` is ignored."""

    def by_key(records: Iterable[Record]) -> dict[str, Record]:
        keyed: dict[str, Record] = {}
        for r in records:
            if (r.get("kpi") or r.get("alert")) in kinds:
                same = {k: v for k, v in r.items() if k != "decided_ts"}
                for name in TIME_FIELDS & same.keys():
                    same[name] = reference.to_us(same[name])
                keyed[record_key(r)] = same
        return keyed

    exp, act = by_key(expected), by_key(actual)
    diffs = []
    for key in sorted(exp.keys() | act.keys()):
        if key not in act:
            diffs.append(f"{key}: only in expected {exp[key]}")
        elif key not in exp:
            diffs.append(f"{key}: only in actual {act[key]}")
        elif _differs(exp[key], act[key], rel_tol, abs_tol):
            diffs.append(f"{key}: expected {exp[key]}, actual {act[key]}")
    return diffs


def jsonl_records(text: str) -> list[Record]:
    """The records of a JSON Lines output file (`replay --kpis/--alerts`)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
