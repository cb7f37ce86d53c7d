"""Prometheus recording and alert rules, generated from the metric declarations.

Every threshold is declared once, on its `Alert`; the dashboards colour their
panels with the same `Limit`, so a panel turns amber or red exactly when the
warning or critical alert condition holds. Recorded series follow the
`level:metric:operation` convention; `network` is the level of a value over
every fc or region. Aggregations use each metric's declared merge rule, so
several opscockpit processes scraped together add up correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from flows.metrics import BY_NAME, HISTOGRAM, Metric

NETWORK = "network"
KPI_WINDOW = "1h"  # window of the KPI ratios and quantiles: an operations hour
INBOUND_WINDOW = "6h"  # dock-to-stock: a few receipts an hour per fc need a longer window
WEB_WINDOW = "5m"  # storefront latencies: thousands of samples a minute
PIPELINE_WINDOW = "15m"  # window of the pipeline's own health ratios
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def span(window: str) -> str:
    """A window in words for descriptions: '1h' -> 'the last hour', '6h' -> 'the last 6 hours'."""
    count, unit = int(window[:-1]), UNITS[window[-1]]
    return f"the last {unit[:-1]}" if count == 1 else f"the last {count} {unit}"


def metric(name: str) -> Metric:
    """The declared metric of a series name (histograms with their suffixes)."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = BY_NAME.get(name.removesuffix(suffix))
        if name.endswith(suffix) and base is not None and base.kind == HISTOGRAM:
            return base
    return BY_NAME[name]


def select(name: str, matchers: str = "") -> str:
    """A selector of a declared series; raises KeyError for an undeclared name."""
    metric(name)
    return f"{name}{{{matchers}}}" if matchers else name


def aggregate(name: str, inner: str, by: tuple[str, ...] = ()) -> str:
    """`inner` aggregated with the merge rule declared for `name`."""
    clause = f" by ({', '.join(by)}) " if by else ""
    return f"{metric(name).merge}{clause}({inner})"


@dataclass(frozen=True)
class Count:
    """Increases of one counter (optionally narrowed by label matchers)."""

    name: str
    matchers: str = ""
    record_as: str = ""  # the middle part of the recorded name; default: name less _total

    @property
    def stem(self) -> str:
        return self.record_as or self.name.removesuffix("_total")

    def increase(self, level: str, window: str) -> str:
        inner = f"increase({select(self.name, self.matchers)}[{window}])"
        return aggregate(self.name, inner, grouping(level))


def recorded(level: str, stem: str, operation: str) -> str:
    """A recording rule name: level:metric:operation."""
    return f"{level}:{stem}:{operation}"


def grouping(level: str) -> tuple[str, ...]:
    """The labels kept at a level: none network-wide."""
    return () if level == NETWORK else (level,)


@dataclass(frozen=True)
class Ratio:
    """part / (part + rest), or part / rest when `rest_is_total`, over a window.

    Recorded per `level` label and network-wide. Each side is recorded with
    `or <other side> * 0`, so a key seen on one side only gets a ratio of 0 or 1
    rather than none, and a zero divisor gives no value rather than NaN.
    """

    stem: str
    level: str
    part: Count
    rest: Count
    rest_is_total: bool = False
    window: str = KPI_WINDOW

    def _side(self, count: Count) -> str:
        return recorded(self.level, count.stem, f"increase{self.window}")

    @property
    def part_series(self) -> str:
        """The recorded increase of the part, per level label value."""
        return self._side(self.part)

    @property
    def rest_series(self) -> str:
        """The recorded increase of the rest (or total), per level label value."""
        return self._side(self.rest)

    @property
    def by_level(self) -> str:
        """The recorded ratio per level label value."""
        return recorded(self.level, self.stem, f"ratio{self.window}")

    @property
    def network(self) -> str:
        """The recorded ratio over every level label value."""
        return recorded(NETWORK, self.stem, f"ratio{self.window}")

    def _divide(self, part: str, rest: str) -> str:
        divisor = rest if self.rest_is_total else f"{part} + {rest}"
        return f"{part} / ({divisor} > 0)"

    def records(self) -> list[dict[str, str]]:
        part, rest = self.part_series, self.rest_series
        part_expr = self.part.increase(self.level, self.window)
        rest_expr = self.rest.increase(self.level, self.window)
        sides = [
            {"record": part, "expr": f"{part_expr} or ({rest_expr}) * 0"},
            {"record": rest, "expr": f"{rest_expr} or ({part_expr}) * 0"},
        ]
        if self.level == NETWORK:
            return [*sides, {"record": self.network, "expr": self._divide(part, rest)}]
        return [
            *sides,
            {"record": self.by_level, "expr": self._divide(part, rest)},
            {"record": self.network, "expr": self._divide(f"sum({part})", f"sum({rest})")},
        ]


@dataclass(frozen=True)
class Quantile:
    """A quantile of a histogram over a window, per `level` label and network-wide."""

    name: str
    q: float
    level: str
    window: str = KPI_WINDOW

    def _recorded(self, level: str) -> str:
        return recorded(level, self.name, f"p{round(self.q * 100)}_{self.window}")

    @property
    def by_level(self) -> str:
        return self._recorded(self.level)

    @property
    def network(self) -> str:
        return self._recorded(NETWORK)

    def _expr(self, by: tuple[str, ...]) -> str:
        rate = f"rate({select(self.name + '_bucket')}[{self.window}])"
        return f"histogram_quantile({self.q}, {aggregate(self.name, rate, (*by, 'le'))})"

    def records(self) -> list[dict[str, str]]:
        network = [{"record": self.network, "expr": self._expr(())}]
        if self.level == NETWORK:
            return network
        return [{"record": self.by_level, "expr": self._expr((self.level,))}, *network]


@dataclass(frozen=True)
class Total:
    """A gauge summed (by its merge rule) per level, for alerts that need a range."""

    name: str
    level: str

    @property
    def by_level(self) -> str:
        return recorded(self.level, self.name, metric(self.name).merge)

    def records(self) -> list[dict[str, str]]:
        expr = aggregate(self.name, self.name, grouping(self.level))
        return [{"record": self.by_level, "expr": expr}]


# --- the ratios, quantiles and totals the dashboards and alerts use
SHIP_SLA = Ratio(
    "cockpit_ship_sla_compliance",
    "fc",
    Count("cockpit_orders_shipped_total", 'on_time="true"', "cockpit_orders_shipped_on_time"),
    Count("cockpit_ship_sla_breaches_total"),
)
LATE_DELIVERY = Ratio(
    "cockpit_late_delivery",
    "region",
    Count("cockpit_late_deliveries_total"),
    Count("cockpit_deliveries_total", 'on_time="true"', "cockpit_deliveries_on_time"),
)
ZERO_RESULT_SEARCHES = Ratio(
    "cockpit_search_zero_results",
    NETWORK,
    Count("cockpit_searches_zero_results_total"),
    Count("cockpit_search_latency_seconds_count", record_as="cockpit_searches"),
    rest_is_total=True,
)
RECOMMENDATION_CTR = Ratio(
    "cockpit_recommendation_click_through",
    "widget",
    Count("cockpit_recommendations_clicked_total"),
    Count("cockpit_recommendations_shown_total"),
    rest_is_total=True,
)
DEAD_LETTERS = Ratio(
    "cockpit_dead_letter",
    NETWORK,
    Count("cockpit_events_rejected_total"),
    Count("cockpit_events_total", record_as="cockpit_events_accepted"),
    window=PIPELINE_WINDOW,
)
DOCK_TO_STOCK_P50 = Quantile("cockpit_dock_to_stock_seconds", 0.5, "fc", INBOUND_WINDOW)
DOCK_TO_STOCK_P90 = Quantile("cockpit_dock_to_stock_seconds", 0.9, "fc", INBOUND_WINDOW)
ORDER_CYCLE_P90 = Quantile("cockpit_order_cycle_seconds", 0.9, "fc")
PAGE_LOAD_P90 = Quantile("cockpit_page_load_seconds", 0.9, "page", WEB_WINDOW)
SEARCH_LATENCY_P90 = Quantile("cockpit_search_latency_seconds", 0.9, NETWORK, WEB_WINDOW)
RECEIPTS_AWAITING = Total("cockpit_receipts_awaiting_stow", "fc")
WATERMARK = Total("cockpit_watermark_timestamp_seconds", NETWORK)

RECORDED: tuple[Ratio | Quantile | Total, ...] = (
    SHIP_SLA,
    LATE_DELIVERY,
    ZERO_RESULT_SEARCHES,
    RECOMMENDATION_CTR,
    DEAD_LETTERS,
    DOCK_TO_STOCK_P50,
    DOCK_TO_STOCK_P90,
    ORDER_CYCLE_P90,
    PAGE_LOAD_P90,
    SEARCH_LATENCY_P90,
    RECEIPTS_AWAITING,
    WATERMARK,
)


@dataclass(frozen=True)
class Limit:
    """Where a value turns amber (warning) and red (critical).

    `higher_is_worse` values alert at >= the level, the others at < the level,
    which is exactly where Grafana's ascending threshold steps change colour.
    """

    warning: float
    critical: float
    higher_is_worse: bool = True

    def condition(self, value: str, level: float) -> str:
        return f"{value} >= {level:g}" if self.higher_is_worse else f"{value} < {level:g}"

    def severity(self, value: float) -> str:
        """The alert severity `value` meets, as `condition` compares: "critical",
        "warning", or "ok" (the web page's colours)."""
        for name, level in (("critical", self.critical), ("warning", self.warning)):
            if value >= level if self.higher_is_worse else value < level:
                return name
        return "ok"


@dataclass(frozen=True)
class Alert:
    """An alert: `value` compared with `limit` at both severities, or a plain condition."""

    name: str
    value: str
    summary: str
    description: str
    runbook: str
    limit: Limit | None = None
    severity: str = "critical"  # of a plain condition (no limit)
    guard: str = ""  # a further condition joined with `and`
    for_: str = "10m"

    def conditions(self) -> list[tuple[str, str]]:
        """(severity, PromQL condition) pairs."""
        if self.limit is None:
            pairs = [(self.severity, self.value)]
        else:
            pairs = [
                (severity, self.limit.condition(self.value, level))
                for severity, level in (
                    ("warning", self.limit.warning),
                    ("critical", self.limit.critical),
                )
            ]
        return [
            (severity, f"{cond} and {self.guard}" if self.guard else cond)
            for severity, cond in pairs
        ]

    def rules(self) -> list[dict[str, Any]]:
        return [
            {
                "alert": self.name,
                "expr": condition,
                "for": self.for_,
                "labels": {"severity": severity},
                "annotations": {
                    "summary": self.summary,
                    "description": self.description,
                    "runbook": self.runbook,
                },
            }
            for severity, condition in self.conditions()
        ]


HOUR = 3600
SHIP_SLA_ALERT = Alert(
    "ShipSlaBreachRateHigh",
    SHIP_SLA.by_level,
    summary="Ship-SLA compliance at {{ $labels.fc }} is {{ $value | humanizePercentage }}",
    description=f"Share of the orders of {{{{ $labels.fc }}}} due in {span(KPI_WINDOW)} that "
    "were shipped by their promised ship-by time (the others were neither shipped "
    "nor cancelled in time).",
    runbook="Open 'Fulfilment and supply chain' for this fc: find the stage where orders "
    "wait (placed, picked, packed), add pick/pack labour or re-promise, and tell the "
    "carrier desk about late shipments.",
    limit=Limit(warning=0.95, critical=0.90, higher_is_worse=False),
)
LATE_DELIVERY_ALERT = Alert(
    "LateDeliveryRateHigh",
    LATE_DELIVERY.by_level,
    summary="Late deliveries in {{ $labels.region }}: {{ $value | humanizePercentage }}",
    description=f"Share of the orders of {{{{ $labels.region }}}} due in {span(KPI_WINDOW)} "
    "that were delivered after their promised delivery time, or passed it "
    "undelivered.",
    runbook="Open 'Customer experience' for this region: compare carriers and failed "
    "attempts, escalate to the carrier, and trigger proactive customer notices.",
    limit=Limit(warning=0.10, critical=0.20),
)
DOCK_TO_STOCK_ALERT = Alert(
    "DockToStockSlow",
    DOCK_TO_STOCK_P90.by_level,
    summary="Dock-to-stock p90 at {{ $labels.fc }} is {{ $value | humanizeDuration }}",
    description=f"90 % of the receipts completed at {{{{ $labels.fc }}}} in "
    f"{span(INBOUND_WINDOW)} took up to this long from dock scan to the stow that "
    "completed them.",
    runbook="Open 'Inventory health' for this fc: check receipts awaiting stow and the "
    "dock-to-stock heatmap, move labour from pick to stow, prioritise "
    "receipts of out-of-stock SKUs.",
    limit=Limit(warning=16 * HOUR, critical=24 * HOUR),
    for_="30m",
)
BACKLOG_ALERT = Alert(
    "ReceivingBacklogGrowing",
    RECEIPTS_AWAITING.by_level,
    summary="{{ $value }} receipts await stow at {{ $labels.fc }} and the backlog grows",
    description="Receipts scanned at the dock of {{ $labels.fc }} but not fully stowed are "
    "above the limit and grew over the last hour.",
    runbook="Open 'Inventory health' for this fc: add stow labour or slow inbound "
    "appointments until the backlog falls.",
    limit=Limit(warning=50, critical=100),
    guard=f"delta({RECEIPTS_AWAITING.by_level}[1h]) > 0",
    for_="15m",
)
PAST_PROMISE_ALERT = Alert(
    "OrdersPastShipPromise",
    aggregate("cockpit_orders_past_ship_promise", "cockpit_orders_past_ship_promise", ("fc",)),
    summary="{{ $value }} orders at {{ $labels.fc }} are past their ship promise",
    description="Orders of {{ $labels.fc }} not shipped and not cancelled whose promised "
    "ship-by time has passed.",
    runbook="Open 'Fulfilment and supply chain' for this fc: ship the oldest orders first, "
    "re-promise what cannot leave today and notify the customers.",
    limit=Limit(warning=25, critical=100),
)
PIPELINE_STALLED_ALERT = Alert(
    "PipelineStalled",
    f"changes({WATERMARK.by_level}[10m]) == 0",
    summary="The event-time watermark has not advanced for 10 minutes",
    description="No opscockpit process moved the watermark: KPIs and deadlines are frozen "
    "(input stopped, a partition stuck, or the job hung).",
    runbook="Open 'Pipeline health': check events/s, Kafka consumer lag and the process "
    "logs; restart the job if it hangs, fix the producer if input stopped.",
    for_="5m",
)
DEAD_LETTER_ALERT = Alert(
    "DeadLetterRateHigh",
    DEAD_LETTERS.network,
    summary="{{ $value | humanizePercentage }} of the input is dead-lettered",
    description=f"Share of the events of {span(PIPELINE_WINDOW)} that were rejected (invalid "
    "JSON, unknown type, invalid event, too large) and sent to the dead-letter "
    "output.",
    runbook="Read the dead-letter topic (reason and error of each record) and fix the "
    "producer that sends them; rejected events are not counted in any KPI.",
    limit=Limit(warning=0.01, critical=0.05),
)
LABEL_OVERFLOW_ALERT = Alert(
    "LabelOverflow",
    aggregate(
        "cockpit_label_overflow_total", "increase(cockpit_label_overflow_total[15m])", ("label",)
    )
    + " > 0",
    summary="Values of label {{ $labels.label }} fold into 'other'",
    description="More distinct values of {{ $labels.label }} arrived than --max-label-values "
    "allows; the newest are counted under 'other' and per-value KPIs are merged.",
    runbook="Check the producer for bad values of this label; if the values are real, raise "
    "--max-label-values and restart the job.",
    severity="warning",
    for_="5m",
)

ALERTS: tuple[Alert, ...] = (
    SHIP_SLA_ALERT,
    LATE_DELIVERY_ALERT,
    DOCK_TO_STOCK_ALERT,
    BACKLOG_ALERT,
    PAST_PROMISE_ALERT,
    PIPELINE_STALLED_ALERT,
    DEAD_LETTER_ALERT,
    LABEL_OVERFLOW_ALERT,
)


def rule_groups() -> dict[str, Any]:
    """The Prometheus rules file, as data.

    One group: its rules run in order, so every alert reads the records of the
    same evaluation.
    """
    records = [rule for item in RECORDED for rule in item.records()]
    alerts = [rule for alert in ALERTS for rule in alert.rules()]
    return {"groups": [{"name": "opscockpit", "rules": records + alerts}]}


def rules_yaml() -> str:
    """The rules file as YAML text (the generated docker/prometheus/rules.yml)."""
    header = "# Generated by `opscockpit grafana generate` from flows/cockpit/rules.py.\n"
    return header + yaml.safe_dump(rule_groups(), sort_keys=False, width=1000)
