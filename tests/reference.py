"""A deliberately simple batch reference for opscockpit's numbers, for tests only.

Written from the contract (`../shared/contract.md`) and the README section
"Semantics: what every number means" alone, without the engine's code, so that the
two implementations check each other. One pass in arrival order decides which
lines are rejected, duplicate, late or accepted, and which accepted events reach
an order or receipt (the README's holding, orphan and leave-state rules depend on
arrival order); every KPI is then computed in batch from those events and the
final watermark W = max accepted ts.

Choices the README leaves open (it should pin them down):
- Counters of units and updates count every accepted event at once, whether or
  not its order or receipt is known: units picked, stowed and received (every
  scan), delivery updates, on hand and the window inputs. (Cancelled orders and
  returned units, by reason, are `tests/reference_health.py`'s; the labels they
  use are taken here.)
- Held (waiting for their order or receipt, then orphans) are only the events
  whose order or receipt state needs them: shipments, cancellations, `delivered`
  updates, picks and packs of an order; stows of a receipt. Returns and other
  delivery statuses are never held.
- An accepted event advances W first and is then applied with that W: it finds
  its order or receipt gone if that W makes it leave state, and an
  `order.placed` (or `inventory.received`) claims a held event only if that W
  has not passed the held event's ts + 24 h.
- An order leaves state as the README says; a receipt leaves once fully stowed
  and W has reached the completing stow's ts. Later events of either are held
  again, and a new `order.placed` / `inventory.received` starts a new one.
- A label value takes a slot when an event carrying it is applied: storefront,
  inventory and return events at arrival (a return's `fc` and `reason`), a new
  order's `order.placed` when it arrives, a shipment's `fc` and a cancellation's
  `reason` when attached to its order unless one of that type with an earlier or
  equal ts already is. A `reason` that is absent or null is `unknown` (§2).
  Ignored, held-then-orphaned events and fields no metric
  reads (the fc of `inventory.packed`, of later shipments) take none.
  Each folded field of an event counts once in `cockpit_label_overflow_total`.
- fc labels: order metrics (units ordered, awaiting, stages, breaches,
  cancellations, cycle time) use the `order.placed` fc; shipments that of the
  earliest shipment; dock-to-stock and receipts awaiting stow the
  `inventory.received` fc; units counters the event's own fc.
- A duplicate does not renew its id's memory; a late event's id is remembered.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from flows.metrics import BY_NAME, HISTOGRAM

Labels = tuple[tuple[str, str], ...]
LABEL_MAX_LENGTH = 256  # README, Labels: longer values fold into `other`
Samples = dict[str, dict[Labels, float]]

US = 1_000_000
HOUR = 3600 * US
DAY = 86400 * US
EPOCH = dt.datetime(1970, 1, 1)
MAX_DEPTH = 1024
INT_RANGE = (-(2**63), 2**64 - 1)  # integers read exactly: signed or unsigned 64-bit

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "events"
VALIDATORS = {
    path.name.removesuffix(".json"): Draft202012Validator(
        json.loads(path.read_text()), format_checker=FormatChecker()
    )
    for path in SCHEMA_DIR.glob("*.json")
}
OPENERS = {"order.placed": "order_id", "inventory.received": "receipt_id"}
HELD = {
    "order.cancelled": "order_id",
    "order.shipped": "order_id",
    "delivery.updated": "order_id",  # `delivered` only
    "inventory.picked": "order_id",
    "inventory.packed": "order_id",
    "inventory.stowed": "receipt_id",
}
UNITS = {
    "inventory.received": "received",
    "inventory.stowed": "stowed",
    "inventory.picked": "picked",
}
FOLD_AT_ARRIVAL = {
    "page.viewed": ["page"],
    "recommendation.shown": ["widget"],
    "recommendation.clicked": ["widget"],
    "inventory.received": ["fc"],
    "inventory.stowed": ["fc"],
    "inventory.picked": ["fc"],
    "inventory.adjusted": ["fc"],
    "return.received": ["fc", "reason"],
}
# Labels of the event that is its order's earliest of its type (the others' are never used).
FOLD_EARLIEST = {"order.shipped": ["fc"], "order.cancelled": ["reason"]}
TIME_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))", re.ASCII
)

# Metrics this module computes; the rest are internal or need Kafka or retention.
NOT_COMPUTED = {
    "cockpit_state_entries",
    "cockpit_state_expired_total",
    "cockpit_kafka_up",
    "cockpit_kafka_consumer_lag",
    "cockpit_kafka_records_skipped_total",
}
# Metrics of contract §3.2-§3.5, computed by `tests/reference_health.py`.
HEALTH_METRICS = [
    "cockpit_skus_tracked",
    "cockpit_skus_out_of_stock",
    "cockpit_skus_at_risk",
    "cockpit_skus_excess",
    "cockpit_skus_below_safety_stock",
    "cockpit_units_on_hand_by_age",
    "cockpit_stockouts_total",
    "cockpit_demand_spikes_total",
    "cockpit_pick_wait_seconds",
    "cockpit_pick_to_pack_seconds",
    "cockpit_pack_to_ship_seconds",
    "cockpit_stage_backlog",
    "cockpit_bottleneck",
    "cockpit_bottlenecks_total",
    "cockpit_shift_units_picked",
    "cockpit_shift_orders_shipped",
    "cockpit_shift_units_picked_per_hour",
    "cockpit_cancellation_ratio",
    "cockpit_recommendation_click_through_ratio",
    "cockpit_return_ratio",
    "cockpit_recommendations_conversions_total",
    "cockpit_recommendations_decided_total",
    "cockpit_orders_placed_total",
    "cockpit_units_shipped_total",
    "cockpit_orders_cancelled_total",
    "cockpit_units_returned_total",
]
COMPUTED = [name for name in BY_NAME if name not in NOT_COMPUTED and name not in HEALTH_METRICS]
# Gauges that are "not set" when undefined: absent and 0 differ.
PRESENCE_MATTERS = {"cockpit_sell_through_ratio", "cockpit_stock_cover_seconds"}


@dataclass
class Event:
    """An accepted event, with the watermark W just after its arrival."""

    type: str
    ts: int  # microseconds
    w: float  # W in microseconds once this event has advanced it
    body: dict[str, Any]
    labels: dict[str, str]  # folded values of the event's label fields

    def time(self, name: str) -> int:
        """The time field `name` in microseconds."""
        return to_us(self.body[name])


def earliness(e: Event) -> tuple[int, str]:
    """Which of two events of one type and order is the earlier: by ts, then by
    event id (§2)."""
    return (e.ts, e.body["event_id"])


@dataclass
class Order:
    """An order in state: its `order.placed` and the events attached to it."""

    opener: Event
    events: list[Event] = field(default_factory=list)

    def first(self, type_: str) -> Event | None:
        """The attached event of `type_` with the smallest ts (ties: the smaller event
        id, as §2 has them)."""
        return min((e for e in self.events if e.type == type_), key=earliness, default=None)

    def has_left(self, w: float) -> bool:
        """True once every holding family let it go: W has passed both promises;
        it is cancelled or shipped and counted (W past the shipment) for the ship SLA,
        cancelled or delivered for deliveries; and W has passed its earliest
        cancellation, if any (which the cancellation ratio decides then)."""
        cancelled = self.first("order.cancelled")
        shipped = self.first("order.shipped")
        ship_sla_done = cancelled or (shipped and w > shipped.ts)
        delivery_done = cancelled or self.first("delivery.updated")
        cancellation_done = cancelled is None or w > cancelled.ts
        promises = max(
            self.opener.time("promised_ship_by"), self.opener.time("promised_delivery_by")
        )
        return bool(ship_sla_done and delivery_done and cancellation_done) and w > promises


@dataclass
class Receipt:
    """A receipt in state: its `inventory.received` and the stows attached to it."""

    opener: Event
    events: list[Event] = field(default_factory=list)

    def completed_by(self) -> Event | None:
        """The stow whose ts is the smallest at which stows up to it reach the received qty."""
        stowed = 0
        for stow in sorted(self.events, key=lambda e: e.ts):
            stowed += stow.body["qty"]
            if stowed >= self.opener.body["qty"]:
                return stow
        return None

    def has_left(self, w: float) -> bool:
        """True once it is fully stowed and W has reached the completing stow."""
        stow = self.completed_by()
        return stow is not None and w >= stow.ts


@dataclass
class Result:
    """Everything the reference derives from one input."""

    metrics: Samples
    dead_letters: list[tuple[int, str]]
    alerts: set[tuple[str, str]]
    records: list[dict[str, Any]]  # sell_through and days_of_cover, every closed window


TIME_FIELDS = ("ts", "promised_ship_by", "promised_delivery_by")


def to_us(value: str | float) -> int:
    """A valid time value (RFC 3339 string or epoch milliseconds) in microseconds."""
    if not isinstance(value, str):
        return int(value) * 1000
    m = TIME_RE.fullmatch(value)
    assert m, value
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    days = (dt.date(year, month, day) - dt.date(1970, 1, 1)).days
    offset = 0
    if m[8]:
        offset = (int(m[9]) * 60 + int(m[10])) * (1 if m[8] == "+" else -1)
    seconds = days * 86400 + hour * 3600 + (minute - offset) * 60 + second
    return seconds * US + int((m[7] or "").ljust(6, "0")[:6])


FIRST_US, END_US = to_us("0001-01-02T00:00:00Z"), to_us("9999-12-31T00:00:00Z")


def label_value(body: dict[str, Any], name: str) -> str:
    """The label value of an event's field: an optional string that is absent or
    null (a `reason`) is `unknown` (§2)."""
    value = body.get(name)
    return "unknown" if value is None else str(value)


def read_lines(path: str | Path) -> list[bytes]:
    """The lines of a JSON Lines file, without their newlines."""
    lines = Path(path).read_bytes().split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


def _depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class TooBig(float):
    """A number beyond a double: invalid in a field the event table names, ignored
    elsewhere (unknown fields are not interpreted)."""


def _parse_int(text: str) -> int | float:
    """Integers beyond 64 bits are read as floats, as the README says."""
    if len(text.lstrip("-")) > 309:  # beyond a double (and maybe beyond int()'s digit limit)
        return TooBig(math.inf)
    value = int(text)
    if INT_RANGE[0] <= value <= INT_RANGE[1]:
        return value
    return _parse_float(text)


def _parse_float(text: str) -> float:
    value = float(text)
    return TooBig(value) if math.isinf(value) else value


def _reject_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def decode(line: bytes) -> dict[str, Any] | None:
    """The JSON object in `line`, or None when it is not a UTF-8 JSON object."""
    try:
        text = line.decode("utf-8-sig")  # a leading byte order mark ignored (RFC 8259 8.1)
        if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
            return None
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 4 * MAX_DEPTH))
        try:
            obj = json.loads(
                text,
                parse_int=_parse_int,
                parse_float=_parse_float,
                parse_constant=_reject_constant,
            )
            json.dumps(obj, ensure_ascii=False).encode("utf-8")  # lone surrogate escapes
        finally:
            sys.setrecursionlimit(limit)
    except (UnicodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def classify(obj: dict[str, Any] | None) -> str | None:
    """The dead-letter reason for a decoded line, or None when the event is valid."""
    if obj is None:
        return "invalid_json"
    type_ = obj.get("type")
    if type_ is None:
        return "invalid_event"
    if not isinstance(type_, str) or type_ not in VALIDATORS:
        return "unknown_type"
    read = VALIDATORS[type_].schema["properties"]
    values = [obj.get(name) for name in read]
    if type_ == "order.placed" and isinstance(obj.get("lines"), list):
        values += [
            line.get(p) for line in obj["lines"] if isinstance(line, dict) for p in ("sku", "qty")
        ]
    if any(isinstance(value, TooBig) for value in values):
        return "invalid_json"
    if not VALIDATORS[type_].is_valid(obj):
        return "invalid_event"
    # README, Time: a time must lie in [0001-01-02, 9999-12-31) UTC (epoch milliseconds
    # are bounded by the schema).
    times = [obj[name] for name in TIME_FIELDS if isinstance(obj.get(name), str)]
    return None if all(FIRST_US <= to_us(value) < END_US for value in times) else "invalid_event"


REASONS: dict[bytes, str | None] = {}  # by line, see remembered_reason
REASONS_KEPT = 1 << 18


def remembered_reason(line: bytes, obj: dict[str, Any] | None) -> str | None:
    """classify(obj) for obj = decode(line), remembered by line: schema validation is
    most of the reference's time, and tests check one file under several settings
    (each with `run` and `reference_health.compute`)."""
    if line not in REASONS:
        if len(REASONS) >= REASONS_KEPT:
            REASONS.clear()
        REASONS[line] = classify(obj)
    return REASONS[line]


def admit(
    lines: Iterable[bytes],
    *,
    lateness_s: float = 60,
    max_event_bytes: int = 1 << 20,
    counts: dict[str, Counter[Labels]] | None = None,
) -> tuple[list[Event], list[tuple[int, str]], float]:
    """The acceptance pass (§2), in arrival order: (accepted events, dead letters,
    max accepted ts, -inf when none). Counts accepted, rejected, duplicate and late
    events in `counts` when given. Also used by `tests/reference_health.py`."""
    lateness = round(lateness_s * US)
    c: dict[str, Counter[Labels]] = defaultdict(Counter) if counts is None else counts
    dead: list[tuple[int, str]] = []
    accepted: list[Event] = []
    remembered: dict[str, float] = {}  # event_id -> W at which it is forgotten
    w: float = -math.inf
    max_ts: float = -math.inf

    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix(b"\n")
        obj = None if len(line) > max_event_bytes else decode(line)
        reason = "too_large" if len(line) > max_event_bytes else remembered_reason(line, obj)
        if reason:
            dead.append((number, reason))
            c["cockpit_events_rejected_total"][(("reason", reason),)] += 1
            continue
        assert obj is not None
        type_, ts, event_id = obj["type"], to_us(obj["ts"]), obj["event_id"]
        if w < remembered.get(event_id, -math.inf):
            c["cockpit_events_duplicate_total"][(("type", type_),)] += 1
            continue
        remembered[event_id] = (ts // HOUR + 1) * HOUR + DAY
        if ts < w:
            c["cockpit_events_late_total"][(("type", type_),)] += 1
            continue
        c["cockpit_events_total"][(("type", type_),)] += 1
        max_ts = max(max_ts, ts)
        w = max(w, max_ts - lateness)
        accepted.append(Event(type_, ts, w, obj, {}))
    return accepted, dead, max_ts


def run(
    lines: Iterable[bytes],
    *,
    lateness_s: float = 60,
    window_s: float = 3600,
    max_label_values: int = 1000,
    max_event_bytes: int = 1 << 20,
) -> Result:
    """Process `lines` (one event each, no newline) and derive every number."""
    window = round(window_s * US)
    c: dict[str, Counter[Labels]] = defaultdict(Counter)
    accepted, dead, max_ts = admit(
        lines, lateness_s=lateness_s, max_event_bytes=max_event_bytes, counts=c
    )

    orders, receipts = _apply(accepted, max_ts, max_label_values, c)
    hist: dict[str, dict[Labels, list[float]]] = defaultdict(lambda: defaultdict(list))
    alerts = _orders(orders, max_ts, c, hist)
    _order_gauges(orders, max_ts, c)
    _receipts(receipts, c, hist)
    moves = _flows(accepted, c)
    _web(accepted, c, hist)

    metrics: Samples = {
        name: {tuple(sorted(k)): float(v) for k, v in cnt.items()} for name, cnt in c.items()
    }
    records = []
    if accepted:
        metrics["cockpit_watermark_timestamp_seconds"] = {(): max_ts / US}
        metrics.update(_windows(moves, orders, int(max_ts) // window * window, window))
        records = _window_records(moves, orders, int(max_ts) // window * window, window)
    for name, series in hist.items():
        for key, values in series.items():
            _histogram(metrics, name, key, values)
    return Result(metrics, dead, alerts, records)


def _apply(
    accepted: list[Event], w_final: float, max_label_values: int, c: dict[str, Counter[Labels]]
) -> tuple[list[Order], list[Receipt]]:
    """Fold labels, attach events to orders and receipts in arrival order, count orphans."""
    orders: list[Order] = []
    receipts: list[Receipt] = []
    live: dict[tuple[str, str], Order | Receipt] = {}  # by (id field, id)
    held: dict[tuple[str, str], list[Event]] = defaultdict(list)
    kept: dict[str, set[str]] = defaultdict(set)

    def fold(e: Event, names: Iterable[str]) -> None:
        for name in names:
            value = label_value(e.body, name)
            too_long = len(value) > LABEL_MAX_LENGTH
            if too_long or (value not in kept[name] and len(kept[name]) >= max_label_values):
                value = "other"
                c["cockpit_label_overflow_total"][(("label", name),)] += 1
            else:
                kept[name].add(value)
            e.labels[name] = value or "unknown"  # README, Labels: Prometheus drops fc=""

    def attach(entity: Order | Receipt, e: Event) -> None:
        if e.type in FOLD_EARLIEST and not any(
            s.type == e.type and earliness(s) <= earliness(e) for s in entity.events
        ):  # only the earliest shipment's fc (cancellation's reason) is ever used
            fold(e, FOLD_EARLIEST[e.type])
        entity.events.append(e)

    def orphan(e: Event) -> None:
        c["cockpit_orphan_events_total"][(("type", e.type),)] += 1

    for e in accepted:
        fold(e, FOLD_AT_ARRIVAL.get(e.type, []))
        id_field = OPENERS.get(e.type) or HELD.get(e.type)
        if id_field is None or (e.type == "delivery.updated" and e.body["status"] != "delivered"):
            continue
        key = (id_field, e.body[id_field])
        if key in live and live[key].has_left(e.w):
            del live[key]
        if key in live:
            if e.type not in OPENERS:  # a second order.placed or inventory.received is ignored
                attach(live[key], e)
        elif e.type not in OPENERS:
            held[key].append(e)
        else:
            if e.type == "order.placed":
                fold(e, ["fc", "region"])
                orders.append(Order(e))
                live[key] = orders[-1]
            else:
                receipts.append(Receipt(e))
                live[key] = receipts[-1]
            for h in held.pop(key, []):
                if e.w > h.ts + DAY:
                    orphan(h)
                else:
                    attach(live[key], h)
    for h in itertools.chain.from_iterable(held.values()):
        if w_final > h.ts + DAY:
            orphan(h)
    return orders, receipts


def _orders(
    orders: list[Order],
    w: float,
    c: dict[str, Counter[Labels]],
    hist: dict[str, dict[Labels, list[float]]],
) -> set[tuple[str, str]]:
    """Counters of shipments, breaches, cancellations and deliveries; returns the alerts."""
    alerts = set()
    for order in orders:
        p = order.opener
        fc, region = (("fc", p.labels["fc"]),), (("region", p.labels["region"]),)
        ship_by, deliver_by = p.time("promised_ship_by"), p.time("promised_delivery_by")
        c["cockpit_units_ordered_total"][fc] += sum(line["qty"] for line in p.body["lines"])
        shipped = order.first("order.shipped")
        cancelled = order.first("order.cancelled")
        delivered = order.first("delivery.updated")
        s = shipped.ts if shipped else math.inf
        cancel = cancelled.ts if cancelled else math.inf
        d = delivered.ts if delivered else math.inf
        # A late shipment or delivery is counted once W passes its promise, which
        # the final W = max accepted ts always has.
        if shipped:
            on_time = "true" if s <= ship_by else "false"
            c["cockpit_orders_shipped_total"][
                (("fc", shipped.labels["fc"]), ("on_time", on_time))
            ] += 1
            hist["cockpit_order_cycle_seconds"][fc].append((s - p.ts) / US)
        if min(s, cancel) > ship_by and w > ship_by:
            c["cockpit_ship_sla_breaches_total"][fc] += 1
            alerts.add(("ship_sla_breach", p.body["order_id"]))
        if delivered:
            on_time = "true" if d <= deliver_by else "false"
            c["cockpit_deliveries_total"][(*region, ("on_time", on_time))] += 1
        if min(d, cancel) > deliver_by and w > deliver_by:
            c["cockpit_late_deliveries_total"][region] += 1
            alerts.add(("late_delivery", p.body["order_id"]))
    return alerts


def _order_gauges(orders: list[Order], w: float, c: dict[str, Counter[Labels]]) -> None:
    """Orders awaiting shipment (by stage) and past their promises, at the final W."""
    for order in orders:
        p = order.opener
        fc, region = (("fc", p.labels["fc"]),), (("region", p.labels["region"]),)
        cancelled = order.first("order.cancelled")
        if not order.first("order.shipped") and not cancelled:
            c["cockpit_orders_awaiting_shipment"][fc] += 1
            if w > p.time("promised_ship_by"):
                c["cockpit_orders_past_ship_promise"][fc] += 1
            stage = (
                "packed"
                if order.first("inventory.packed")
                else "picked"
                if order.first("inventory.picked")
                else "placed"
            )
            c["cockpit_orders_in_stage"][(*fc, ("stage", stage))] += 1
        delivered = order.first("delivery.updated")
        if not delivered and not cancelled and w > p.time("promised_delivery_by"):
            c["cockpit_orders_past_delivery_promise"][region] += 1


def _receipts(
    receipts: list[Receipt],
    c: dict[str, Counter[Labels]],
    hist: dict[str, dict[Labels, list[float]]],
) -> None:
    """Dock-to-stock (observed once W reaches the completing stow: always, at the end)."""
    for r in receipts:
        fc = (("fc", r.opener.labels["fc"]),)
        stow = r.completed_by()
        if stow:
            hist["cockpit_dock_to_stock_seconds"][fc].append((stow.ts - r.opener.ts) / US)
        else:
            c["cockpit_receipts_awaiting_stow"][fc] += 1


def _flows(accepted: list[Event], c: dict[str, Counter[Labels]]) -> list[tuple[int, str, int, int]]:
    """Unit and update counters, and stock moves (ts, fc, change of on hand, units stowed)."""
    moves = []
    for e in accepted:
        b = e.body
        if e.type == "delivery.updated":
            c["cockpit_delivery_updates_total"][(("status", b["status"]),)] += 1
        elif e.type in UNITS:
            c[f"cockpit_units_{UNITS[e.type]}_total"][(("fc", e.labels["fc"]),)] += b["qty"]
        if e.type == "inventory.stowed":
            moves.append((e.ts, e.labels["fc"], b["qty"], b["qty"]))
        elif e.type == "inventory.picked":
            moves.append((e.ts, e.labels["fc"], -b["qty"], 0))
        elif e.type == "inventory.adjusted" and b["delta"]:
            direction = "up" if b["delta"] > 0 else "down"
            key = (("direction", direction), ("fc", e.labels["fc"]))
            c["cockpit_units_adjusted_total"][key] += abs(b["delta"])
            moves.append((e.ts, e.labels["fc"], b["delta"], 0))
    for _, fc, change, _ in moves:
        c["cockpit_units_on_hand"][(("fc", fc),)] += change
    return moves


def _windows(
    moves: list[tuple[int, str, int, int]], orders: list[Order], end: int, window: int
) -> Samples:
    """Sell-through and days of cover per fc for the window [end - window, end)."""
    start = end - window
    by_fc: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for ts, fc, change, stowed in moves:
        by_fc[fc].append((ts, change, stowed))
    ordered: Counter[str] = Counter()
    for o in orders:
        if start <= o.opener.ts < end:
            ordered[o.opener.labels["fc"]] += sum(line["qty"] for line in o.opener.body["lines"])
    gauges: Samples = {"cockpit_sell_through_ratio": {}, "cockpit_stock_cover_seconds": {}}
    for fc in by_fc.keys() | ordered.keys():
        before = sum(change for ts, change, _ in by_fc[fc] if ts < start)
        stowed = sum(units for ts, _, units in by_fc[fc] if start <= ts < end)
        at_end = sum(change for ts, change, _ in by_fc[fc] if ts < end)
        key = (("fc", fc),)
        if before + stowed:
            gauges["cockpit_sell_through_ratio"][key] = ordered[fc] / (before + stowed)
        if ordered[fc]:
            per_day = ordered[fc] * DAY / window
            gauges["cockpit_stock_cover_seconds"][key] = at_end / per_day * DAY / US
    return gauges


def _window_records(
    moves: list[tuple[int, str, int, int]], orders: list[Order], closed: int, window: int
) -> list[dict[str, Any]]:
    """`sell_through` and `days_of_cover` records (§5) of every window ending at or
    before `closed`, from the first in which any fc had a stock event or a placed
    order: one per fc met so far whose ratio has a divisor, its parts as numerator
    and divisor."""
    ordered: Counter[tuple[int, str]] = Counter()  # by (window number, fc)
    stowed: Counter[tuple[int, str]] = Counter()
    change: Counter[tuple[int, str]] = Counter()
    for o in orders:
        units = sum(line["qty"] for line in o.opener.body["lines"])
        ordered[o.opener.ts // window, o.opener.labels["fc"]] += units
    for ts, fc, delta, units in moves:
        stowed[ts // window, fc] += units
        change[ts // window, fc] += delta
    on_hand: Counter[str] = Counter()  # as of the start of window n, per fc met
    records = []
    met: defaultdict[int, set[str]] = defaultdict(set)  # fcs by window of an event
    for n, fc in ordered.keys() | change.keys():
        met[n].add(fc)
    for n in range(min(met, default=0), closed // window if met else 0):
        start, end = n * window, (n + 1) * window
        on_hand.update({fc: 0 for fc in met.get(n, ())})
        times = {"window_start": _iso(start), "window_end": _iso(end)}
        for fc in sorted(on_hand):
            units, divisor = ordered[n, fc], on_hand[fc] + stowed[n, fc]
            on_hand[fc] += change[n, fc]
            if divisor:
                records.append(
                    {"kpi": "sell_through", "fc": fc, **times, "value": units / divisor}
                    | {"numerator": float(units), "divisor": float(divisor)}
                )
            if units:
                per_day = units * DAY / window
                records.append(
                    {"kpi": "days_of_cover", "fc": fc, **times, "value": on_hand[fc] / per_day}
                    | {"numerator": float(on_hand[fc]), "divisor": per_day}
                )
    return records


def _iso(us: int) -> str:
    """An instant in microseconds as RFC 3339 in UTC."""
    return (EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _web(
    accepted: list[Event],
    c: dict[str, Counter[Labels]],
    hist: dict[str, dict[Labels, list[float]]],
) -> None:
    """Storefront metrics: page loads, searches, carts, recommendations."""
    for e in accepted:
        b = e.body
        if e.type == "page.viewed":
            hist["cockpit_page_load_seconds"][(("page", e.labels["page"]),)].append(
                b["load_ms"] / 1000
            )
        elif e.type == "search.performed":
            hist["cockpit_search_latency_seconds"][()].append(b["latency_ms"] / 1000)
            if b["results"] == 0:
                c["cockpit_searches_zero_results_total"][()] += 1
        elif e.type == "cart.added":
            c["cockpit_cart_units_added_total"][()] += b["qty"]
        elif e.type.startswith("recommendation."):
            name = "shown" if e.type == "recommendation.shown" else "clicked"
            c[f"cockpit_recommendations_{name}_total"][(("widget", e.labels["widget"]),)] += 1


def _histogram(
    metrics: Samples,
    name: str,
    key: Labels,
    values: list[float],
    bounds: Iterable[float] | None = None,
) -> None:
    """Add the _bucket, _count and _sum samples of one histogram series (`bounds`:
    the upper bounds, by default those declared in `flows.metrics`)."""
    buckets = metrics.setdefault(f"{name}_bucket", {})
    for le in (*(BY_NAME[name].buckets if bounds is None else bounds), math.inf):
        labels = tuple(sorted((*key, ("le", floatToGoString(le)))))  # type: ignore[no-untyped-call]
        buckets[labels] = float(sum(v <= le for v in values))
    metrics.setdefault(f"{name}_count", {})[key] = float(len(values))
    metrics.setdefault(f"{name}_sum", {})[key] = math.fsum(values)


def expected_metrics(
    lines: Iterable[bytes],
    *,
    lateness_s: float = 60,
    window_s: float = 3600,
    max_label_values: int = 1000,
    max_event_bytes: int = 1 << 20,
) -> Samples:
    """Every computed sample, by sample name and sorted (label, value) pairs."""
    return run(
        lines,
        lateness_s=lateness_s,
        window_s=window_s,
        max_label_values=max_label_values,
        max_event_bytes=max_event_bytes,
    ).metrics


def expected_dead_letters(lines: Iterable[bytes], **options: Any) -> list[tuple[int, str]]:
    """(1-based line number, reason) of every rejected line; options as for `run`."""
    return run(lines, **options).dead_letters


def expected_alerts(lines: Iterable[bytes], **options: Any) -> set[tuple[str, str]]:
    """(alert, order_id) of every ship SLA breach and late delivery; options as for `run`."""
    return run(lines, **options).alerts


def alert_key(record: dict[str, Any]) -> str:
    """The message key of an alert record (contract §5), from its fields."""
    kind = record["alert"]
    if "order_id" in record:
        return f"{kind}|{_escaped(record['order_id'])}"
    owner = _escaped(record["sku"]) if "sku" in record else record["stage"]
    return f"{kind}|{_escaped(record['fc'])}|{owner}|{record['window_end']}"


def _escaped(field: str) -> str:
    """A key's field as the README's Semantics write it: `%` as `%25`, `|` as `%7C`."""
    return "".join({"%": "%25", "|": "%7C"}.get(char, char) for char in field)


def parse_exposition(text: str) -> Samples:
    """A Prometheus text exposition in the shape of `expected_metrics` (no `_created`)."""
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                samples[s.name][tuple(sorted(s.labels.items()))] = s.value
    return dict(samples)


def _sample_names(metric: str, histograms: Collection[str] = ()) -> list[str]:
    if metric in histograms or (metric in BY_NAME and BY_NAME[metric].kind == HISTOGRAM):
        return [f"{metric}_bucket", f"{metric}_count", f"{metric}_sum"]
    return [metric]


def compare(
    expected: Samples,
    actual: Samples,
    *,
    metrics: Iterable[str] | None = None,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
    histograms: Collection[str] = (),
    presence_matters: Collection[str] = (),
) -> list[str]:
    """Differences between two sample sets, one readable line each; [] when equal.

    `metrics` are names from `flows.metrics` (default: every metric computed here).
    A series missing on one side counts as 0, except for the gauges in
    PRESENCE_MATTERS (sell-through, days of cover), which are "not set" when
    undefined: there a series present on one side only is a difference even at 0.
    Counters therefore may or may not be emitted at 0, and so may the other gauges.
    `histograms` and `presence_matters` name further metrics of those kinds (for
    metrics not declared in `flows.metrics` yet, as `tests/reference_health.py` uses).
    """
    diffs = []
    presence = PRESENCE_MATTERS | set(presence_matters)
    for metric in COMPUTED if metrics is None else metrics:
        for name in _sample_names(metric, histograms):
            exp, act = expected.get(name, {}), actual.get(name, {})
            for key in sorted(exp.keys() | act.keys()):
                series = name + "{" + ",".join(f'{k}="{v}"' for k, v in key) + "}"
                if metric in presence and (key in exp) != (key in act):
                    side = "expected" if key in exp else "actual"
                    value = exp.get(key, act.get(key))
                    diffs.append(f"{series}: only in {side} (value {value})")
                    continue
                e, a = exp.get(key, 0.0), act.get(key, 0.0)
                if not math.isclose(e, a, rel_tol=rel_tol, abs_tol=abs_tol):
                    diffs.append(f"{series}: expected {e}, actual {a}")
    return diffs
