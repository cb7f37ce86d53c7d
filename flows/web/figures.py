"""The wall display's figures, computed from a board's totals.

Ratios and quantiles are the very `Ratio` and `Quantile` declarations that the
Prometheus recording rules are generated from, evaluated here over the same
windows from the web server's own samples; a figure with an alert behind it is
coloured by that alert's `Limit`. So one declaration feeds the rules, the
Grafana panels and this page. Metrics are read by name: a figure whose metric
is not declared (yet) or has no series shows "no data yet", never an error (but
a counter with no series reads 0 once the job has accepted an event).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flows.cockpit import rules
from flows.cockpit.rules import NETWORK, Count
from flows.ledger import SeriesKey, label_tuple
from flows.metrics import BY_NAME, HISTOGRAM
from flows.timeutil import US_PER_SECOND, parse_duration

Totals = dict[str, dict[SeriesKey, Any]]
Key = tuple[str, ...]
WORST = ("critical", "warning", "ok", "none")  # statuses, worst first
ACCEPTED = "cockpit_events_total"


def seconds(window: str) -> float:
    """A rules window ('1h', '5m') in seconds."""
    return parse_duration(window) / US_PER_SECOND


def labels_of(name: str) -> tuple[str, ...] | None:
    """The labels of a declared series (a histogram's `_count` too); None if undeclared."""
    try:
        return rules.metric(name).labels
    except KeyError:
        return None


def counts(totals: Totals, name: str) -> dict[Key, float]:
    """A counter's values by label tuple; a histogram's `_count` is its buckets summed."""
    declared = labels_of(name)
    if declared is None:
        return {}
    base = rules.metric(name)
    series = totals.get(base.name, {})
    if base.kind == HISTOGRAM:
        return {label_tuple(k): float(sum(v[:-1])) for k, v in series.items()}
    return {label_tuple(k): float(v) for k, v in series.items()}


def accepted(totals: Totals) -> float:
    """The events the job has accepted, all told."""
    return sum(counts(totals, ACCEPTED).values())


def _matchers(text: str) -> dict[str, str]:
    """`a="x",b="y"` -> {a: x, b: y}: the equality matchers the rules use."""
    pairs = (part.split("=", 1) for part in text.split(",") if part)
    return {name.strip(): value.strip().strip('"') for name, value in pairs}


@dataclass(frozen=True)
class View:
    """What figures are computed from: the totals now, and for each window the
    totals at its start (none while the process is younger than the window: then
    the values count since the state began)."""

    now: float
    totals: Totals
    bases: dict[str, tuple[float, Totals]]  # window -> (its start, the totals then)

    def base(self, window: str) -> Totals:
        kept = self.bases.get(window)
        return {} if kept is None else kept[1]

    def start(self, window: str) -> float | None:
        """When `window` starts; None while it counts since the state began."""
        kept = self.bases.get(window)
        return None if kept is None else kept[0]

    def increase(self, count: Count, window: str, level: str) -> dict[str, float]:
        """A counter's increase over `window`, summed by `level` ('' for network)."""
        now = counts(self.totals, count.name)
        before = counts(self.base(window), count.name)
        labels = labels_of(count.name) or ()
        wanted = _matchers(count.matchers)
        out: dict[str, float] = {}
        for key, value in now.items():
            named = dict(zip(labels, key, strict=True))
            if all(named.get(k) == v for k, v in wanted.items()):
                group = named.get(level, "") if level != NETWORK else ""
                out[group] = out.get(group, 0.0) + value - before.get(key, 0.0)
        return out

    def buckets(self, name: str, window: str, level: str) -> dict[str, list[float]]:
        """A histogram's bucket increases over `window` by `level` (cumulative)."""
        metric = BY_NAME.get(name)
        if metric is None:
            return {}
        before = self.base(window).get(name, {})
        out: dict[str, list[float]] = {}
        for key, value in self.totals.get(name, {}).items():
            named = dict(zip(metric.labels, label_tuple(key), strict=True))
            group = named.get(level, "") if level != NETWORK else ""
            old = before.get(key, [0.0] * len(value))
            row = out.setdefault(group, [0.0] * (len(value) - 1))
            for i, (now, then) in enumerate(zip(value[:-1], old[:-1], strict=True)):
                row[i] += now - then
        return {group: _cumulate(row) for group, row in out.items()}


def _cumulate(row: list[float]) -> list[float]:
    total, out = 0.0, []
    for count in row:
        total += count
        out.append(total)
    return out


def bucket_quantile(q: float, bounds: tuple[float, ...], cumulative: list[float]) -> float | None:
    """Prometheus' histogram_quantile on one series of cumulative buckets (the last +Inf)."""
    observations = cumulative[-1] if cumulative else 0.0
    if observations <= 0:
        return None
    rank = q * observations
    index = next(i for i, c in enumerate(cumulative) if c >= rank)
    if index == len(bounds):  # in the +Inf bucket: the highest finite bound
        return bounds[-1]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[index], cumulative[index]
    if index > 0:
        start = bounds[index - 1]
        count -= cumulative[index - 1]
        rank -= cumulative[index - 1]
    return start + (end - start) * (rank / count)


@dataclass(frozen=True)
class Reading:
    """A figure's value over everything, and by its breakdown labels (a key per row)."""

    value: float | None
    by: dict[Key, float]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Ratio:
    """A rules `Ratio` (part / (part + rest), or part / rest), by its level."""

    ratio: rules.Ratio

    @property
    def labels(self) -> tuple[str, ...]:
        return () if self.ratio.level == NETWORK else (self.ratio.level,)

    @property
    def window(self) -> str:
        return self.ratio.window

    @property
    def counters(self) -> tuple[str, ...]:
        return (self.ratio.part.name, self.ratio.rest.name)

    def read(self, view: View) -> Reading:
        if any(labels_of(name) is None for name in self.counters):
            return Reading(None, {})
        level, window = self.ratio.level, self.ratio.window
        part = view.increase(self.ratio.part, window, level)
        rest = view.increase(self.ratio.rest, window, level)

        def divide(p: float, r: float) -> float | None:
            divisor = r if self.ratio.rest_is_total else p + r
            return p / divisor if divisor > 0 else None

        by: dict[Key, float] = {
            (group,): value
            for group in sorted(part.keys() | rest.keys())
            if group and (value := divide(part.get(group, 0.0), rest.get(group, 0.0))) is not None
        }
        return Reading(divide(sum(part.values()), sum(rest.values())), by)


@dataclass(frozen=True)
class Quantile:
    """A rules `Quantile` of a histogram, by its level."""

    quantile: rules.Quantile

    @property
    def labels(self) -> tuple[str, ...]:
        return () if self.quantile.level == NETWORK else (self.quantile.level,)

    @property
    def window(self) -> str:
        return self.quantile.window

    @property
    def counters(self) -> tuple[str, ...]:
        return (self.quantile.name,)

    def read(self, view: View) -> Reading:
        name, q = self.quantile.name, self.quantile.q
        metric = BY_NAME.get(name)
        if metric is None:
            return Reading(None, {})
        rows = view.buckets(name, self.window, self.quantile.level)
        network = [sum(column) for column in zip(*rows.values(), strict=True)] if rows else []
        by: dict[Key, float] = {
            (group,): value
            for group, row in sorted(rows.items())
            if group and (value := bucket_quantile(q, metric.buckets, row)) is not None
        }
        return Reading(bucket_quantile(q, metric.buckets, network), by)


@dataclass(frozen=True)
class Increase:
    """A counter's increase over a window, by `level`."""

    count: Count
    level: str
    window: str = rules.KPI_WINDOW

    @property
    def labels(self) -> tuple[str, ...]:
        return () if self.level == NETWORK else (self.level,)

    @property
    def counters(self) -> tuple[str, ...]:
        return (self.count.name,)

    def read(self, view: View) -> Reading:
        """Its labels are an open set (fc, region): no series exists until the first
        increment, so once the job has accepted an event, none is 0, not no data."""
        by = view.increase(self.count, self.window, self.level)
        if not by:
            counted = labels_of(self.count.name) is not None and accepted(view.totals) > 0
            return Reading(0.0 if counted else None, {})
        rows: dict[Key, float] = {(g,): value for g, value in sorted(by.items()) if g}
        return Reading(sum(by.values()), rows)


@dataclass(frozen=True)
class Gauge:
    """A gauge's current value, kept by `labels` (merged by its declared rule).

    A ratio per fc has no value over all fcs (its parts are not exported): then
    `total` is False and only the breakdown is shown.
    """

    name: str
    labels: tuple[str, ...] = ()
    total: bool = True
    window: str = ""  # a gauge needs no samples
    counters: tuple[str, ...] = ()

    def read(self, view: View) -> Reading:
        metric = BY_NAME.get(self.name)
        series = view.totals.get(self.name)
        if metric is None or not series:
            return Reading(None, {})
        merge = min if metric.merge == "min" else sum
        at = [metric.labels.index(label) for label in self.labels]  # once, not per series
        grouped: dict[Key, list[float]] = {}
        for key, value in series.items():
            parts = label_tuple(key)
            grouped.setdefault(tuple([parts[i] for i in at]), []).append(float(value))
        by = {row: merge(values) for row, values in sorted(grouped.items()) if row}
        if not self.total:
            return Reading(None, by)
        return Reading(_finite(merge(v for vs in grouped.values() for v in vs)), by)


Source = Ratio | Quantile | Increase | Gauge


@dataclass(frozen=True)
class Figure:
    """One number on the page: what it is, how to show it, how to colour it.

    `unit` is the value's, which the page formats by: ratio (shown as %), seconds
    (as a duration), count, timestamp.
    """

    id: str
    title: str
    unit: str
    source: Source
    description: str
    alert: rules.Alert | None = None
    higher_is_worse: bool | None = None  # without an alert; None: neither way

    @property
    def limit(self) -> rules.Limit | None:
        return None if self.alert is None else self.alert.limit

    def __post_init__(self) -> None:
        if self.limit is not None and self.higher_is_worse is not None:
            raise ValueError(f"figure {self.id}: its alert's limit says which way is worse")

    @property
    def worse_when_higher(self) -> bool | None:
        """Which way is worse, so that a breakdown lists its worst rows first."""
        limit = self.limit
        return self.higher_is_worse if limit is None else limit.higher_is_worse

    def status(self, value: float | None) -> str:
        """ok / warning / critical by the alert's limit; none without one or a value."""
        limit = self.limit
        return "none" if limit is None or value is None else limit.severity(value)

    def overall(self, reading: Reading) -> str:
        """The colour over everything: with a breakdown, the alert fires per fc (region),
        so the worst of theirs; without one, the value's."""
        if not self.source.labels:
            return self.status(reading.value)
        return min((self.status(v) for v in reading.by.values()), key=WORST.index, default="none")

    def metrics(self) -> tuple[str, ...]:
        """The declared-or-expected metric names it reads."""
        source = self.source
        if isinstance(source, Gauge):
            return (source.name,)
        return tuple(rules.metric(n).name if labels_of(n) else n for n in source.counters)


def _windowed(figures: Iterable[Figure]) -> dict[str, set[str]]:
    """The counters each window needs at its start: window -> metric names."""
    needed: dict[str, set[str]] = {}
    for figure in figures:
        if figure.source.window:
            needed.setdefault(figure.source.window, set()).update(figure.metrics())
    return needed


FC, REGION = ("fc",), ("region",)
KPI_SPAN = rules.span(rules.KPI_WINDOW)

FIGURES: tuple[Figure, ...] = (
    Figure(
        "ship_sla_compliance",
        "Ship-SLA compliance",
        "ratio",
        Ratio(rules.SHIP_SLA),
        f"Orders shipped by their ship promise / orders due, {KPI_SPAN}.",
        rules.SHIP_SLA_ALERT,
    ),
    Figure(
        "ship_sla_breaches",
        "SLA breaches",
        "count",
        Increase(rules.SHIP_SLA.rest, "fc"),
        f"Orders neither shipped nor cancelled by their ship promise, {KPI_SPAN}.",
        higher_is_worse=True,
    ),
    Figure(
        "orders_past_ship_promise",
        "Past ship promise",
        "count",
        Gauge("cockpit_orders_past_ship_promise", FC),
        "Orders awaiting shipment whose ship promise has passed, now.",
        rules.PAST_PROMISE_ALERT,
    ),
    Figure(
        "orders_awaiting_shipment",
        "Awaiting shipment",
        "count",
        Gauge("cockpit_orders_awaiting_shipment", FC),
        "Orders placed, not shipped, not cancelled, now.",
        higher_is_worse=True,
    ),
    Figure(
        "late_deliveries",
        "Late deliveries",
        "ratio",
        Ratio(rules.LATE_DELIVERY),
        f"Orders delivered late or past their promise undelivered / orders due, {KPI_SPAN}.",
        rules.LATE_DELIVERY_ALERT,
    ),
    Figure(
        "late_delivery_count",
        "Late orders",
        "count",
        Increase(rules.LATE_DELIVERY.part, "region"),
        f"Orders late for their delivery promise, {KPI_SPAN}.",
        higher_is_worse=True,
    ),
    Figure(
        "orders_past_delivery_promise",
        "Past delivery promise",
        "count",
        Gauge("cockpit_orders_past_delivery_promise", REGION),
        "Orders not delivered, not cancelled, past their delivery promise, now.",
        higher_is_worse=True,
    ),
    Figure(
        "dock_to_stock_p90",
        "Dock-to-stock p90",
        "seconds",
        Quantile(rules.DOCK_TO_STOCK_P90),
        f"90th percentile from dock scan to stow, receipts completed in "
        f"{rules.span(rules.INBOUND_WINDOW)}.",
        rules.DOCK_TO_STOCK_ALERT,
    ),
    Figure(
        "receipts_awaiting_stow",
        "Awaiting stow",
        "count",
        Gauge("cockpit_receipts_awaiting_stow", FC),
        "Receipts received and not fully stowed, now. (The alert also needs growth.)",
        rules.BACKLOG_ALERT,
    ),
    Figure(
        "sell_through",
        "Sell-through",
        "ratio",
        Gauge("cockpit_sell_through_ratio", FC, total=False),
        "Units ordered / (on hand at window start + units stowed), latest closed window.",
    ),
    Figure(
        "stock_cover",
        "Days of cover",
        "seconds",
        Gauge("cockpit_stock_cover_seconds", FC, total=False),
        "How long on hand lasts at the ordering rate of the latest closed window.",
        higher_is_worse=False,
    ),
    Figure(
        "units_on_hand",
        "Units on hand",
        "count",
        Gauge("cockpit_units_on_hand", FC),
        "Stowed - picked + adjusted, now.",
    ),
    Figure(
        "stage_backlog",
        "Stage backlog",
        "count",
        Gauge("cockpit_stage_backlog", ("fc", "stage")),
        "Orders waiting for pick, pack, ship and receipts for stow, latest close.",
        higher_is_worse=True,
    ),
    Figure(
        "orders_in_stage",
        "Orders by stage",
        "count",
        Gauge("cockpit_orders_in_stage", ("fc", "stage")),
        "Orders awaiting shipment by the last stage reached, now.",
        higher_is_worse=True,
    ),
    Figure(
        "bottleneck",
        "Bottlenecks",
        "count",
        Gauge("cockpit_bottleneck", ("fc", "stage")),
        "Stages whose backlog rose at each of the last closes, latest close.",
        higher_is_worse=True,
    ),
    Figure(
        "skus_out_of_stock",
        "SKUs out of stock",
        "count",
        Gauge("cockpit_skus_out_of_stock", FC),
        "Items with no stock and demand, latest close.",
        higher_is_worse=True,
    ),
    Figure(
        "skus_at_risk",
        "SKUs at risk",
        "count",
        Gauge("cockpit_skus_at_risk", FC),
        "Items whose cover is below the lead time, latest close.",
        higher_is_worse=True,
    ),
    Figure(
        "page_load_p90",
        "Page load p90",
        "seconds",
        Quantile(rules.PAGE_LOAD_P90),
        f"90th percentile storefront page load, {rules.span(rules.WEB_WINDOW)}.",
        higher_is_worse=True,
    ),
    Figure(
        "cancellation_ratio",
        "Cancellations",
        "ratio",
        Gauge("cockpit_cancellation_ratio", FC, total=False),
        "Orders cancelled before shipping / orders placed, latest closed window.",
        rules.CANCELLATION_ALERT,
    ),
    Figure(
        "return_ratio",
        "Returns",
        "ratio",
        Gauge("cockpit_return_ratio", FC, total=False),
        "Units returned / units shipped, latest closed window.",
        higher_is_worse=True,
    ),
    Figure(
        "click_through",
        "Click-through",
        "ratio",
        Gauge("cockpit_recommendation_click_through_ratio", ("widget",), total=False),
        "Recommendation clicks / impressions, latest closed window.",
        higher_is_worse=False,
    ),
    Figure(
        "conversion",
        "Conversions",
        "ratio",
        Ratio(rules.RECOMMENDATION_CONVERSION),
        f"Recommendation clicks followed by a cart add / clicks, {KPI_SPAN}.",
        higher_is_worse=False,
    ),
    Figure(
        "dead_letters",
        "Dead-lettered",
        "ratio",
        Ratio(rules.DEAD_LETTERS),
        f"Rejected events / all events, {rules.span(rules.PIPELINE_WINDOW)}.",
        rules.DEAD_LETTER_ALERT,
    ),
    Figure(
        "events",
        "Events accepted",
        "count",
        Increase(Count(ACCEPTED), NETWORK, rules.PIPELINE_WINDOW),
        f"Events accepted, {rules.span(rules.PIPELINE_WINDOW)}.",
    ),
    Figure(
        "late_events",
        "Late events",
        "count",
        Increase(Count("cockpit_events_late_total"), NETWORK, rules.PIPELINE_WINDOW),
        f"Events later than the allowed lateness, ignored, {rules.span(rules.PIPELINE_WINDOW)}.",
        higher_is_worse=True,
    ),
    Figure(
        "duplicate_events",
        "Duplicates",
        "count",
        Increase(Count("cockpit_events_duplicate_total"), NETWORK, rules.PIPELINE_WINDOW),
        f"Events with an id already seen, ignored, {rules.span(rules.PIPELINE_WINDOW)}.",
        higher_is_worse=True,
    ),
    Figure(
        "watermark",
        "Event time",
        "timestamp",
        Gauge("cockpit_watermark_timestamp_seconds"),
        "The event-time watermark W: KPIs are complete up to it.",
    ),
)
BY_ID = {figure.id: figure for figure in FIGURES}
WINDOWED = _windowed(FIGURES)


@dataclass(frozen=True)
class Tile:
    """A box on the page: its figures, the first one the headline, and how to draw it
    (`figures`; `stages`: a fc-by-stage table; `items`: with the worst items;
    `alerts`: the recent alerts)."""

    title: str
    figures: tuple[str, ...]
    kind: str = "figures"


TILES: tuple[Tile, ...] = (
    Tile(
        "Ship SLA",
        (
            "ship_sla_compliance",
            "ship_sla_breaches",
            "orders_past_ship_promise",
            "orders_awaiting_shipment",
        ),
    ),
    Tile(
        "Deliveries",
        ("late_deliveries", "late_delivery_count", "orders_past_delivery_promise"),
    ),
    Tile("Inbound", ("dock_to_stock_p90", "receipts_awaiting_stow")),
    Tile("Backlog by stage", ("stage_backlog", "orders_in_stage", "bottleneck"), "stages"),
    Tile("Stock", ("stock_cover", "sell_through", "units_on_hand")),
    Tile("SKUs", ("skus_out_of_stock", "skus_at_risk"), "items"),
    Tile(
        "Customers",
        ("page_load_p90", "cancellation_ratio", "return_ratio", "click_through", "conversion"),
    ),
    Tile("Recent alerts", (), "alerts"),
    Tile("Pipeline", ("dead_letters", "events", "late_events", "duplicate_events")),
)
