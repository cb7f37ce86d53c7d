"""Prometheus recording and alert rules, generated from the metric declarations.

Every threshold is declared once, on its `Alert`; the dashboards colour their
panels with the same `Limit`, so a panel turns amber or red exactly when the
warning or critical alert condition holds. Recorded series follow the
`level:metric:operation` convention; `network` is the level of a value over
every fc or region. Aggregations use each metric's declared merge rule, so
several opscockpit processes scraped together add up correctly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.metrics import BY_NAME, HISTOGRAM, Metric, between_markers

NETWORK = "network"
KPI_WINDOW = "1h"  # window of the KPI ratios and quantiles: an operations hour
INBOUND_WINDOW = "6h"  # dock-to-stock: a few receipts an hour per fc need a longer window
WEB_WINDOW = "5m"  # storefront latencies: thousands of samples a minute
PIPELINE_WINDOW = "15m"  # window of the pipeline's own health ratios
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
PROCESS = "cockpit_watermark_timestamp_seconds"  # a series every opscockpit process serves
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


def increased(name: str, label: str) -> str:
    """Whether a counter grew over the last 15 minutes, per `label`."""
    return aggregate(name, f"increase({name}[15m])", (label,)) + " > 0"


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


class PerLevel:
    """A recorded value per `level` label and network-wide, named by `_recorded`."""

    level: str

    def _recorded(self, level: str) -> str:
        raise NotImplementedError

    @property
    def by_level(self) -> str:
        return self._recorded(self.level)

    @property
    def network(self) -> str:
        return self._recorded(NETWORK)


@dataclass(frozen=True)
class Quantile(PerLevel):
    """A quantile of a histogram over a window, per `level` label and network-wide."""

    name: str
    q: float
    level: str
    window: str = KPI_WINDOW

    def _recorded(self, level: str) -> str:
        return recorded(level, self.name, f"p{round(self.q * 100)}_{self.window}")

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


@dataclass(frozen=True)
class Increase:
    """A counter's increase over a window per level: how many alert records (stockouts,
    spikes) a window produced, for a panel and an alert to read the same series.

    Such a counter's series appears at its first count (an fc's label is not known
    before its first alert), where `increase` alone sees no rise: a series absent a
    window ago, of a process scraped then (`PROCESS`), counts from 0.
    """

    count: Count
    level: str
    window: str = KPI_WINDOW

    @property
    def by_level(self) -> str:
        return recorded(self.level, self.count.stem, f"increase{self.window}")

    def records(self) -> list[dict[str, str]]:
        series, window = select(self.count.name, self.count.matchers), self.window
        new = (
            f"({series} unless {series} offset {window}) "
            f"and on (instance, job) ({select(PROCESS)} offset {window})"
        )
        inner = f"({new}) or increase({series}[{window}])"
        expr = aggregate(self.count.name, inner, grouping(self.level))
        return [{"record": self.by_level, "expr": expr}]


@dataclass(frozen=True)
class Share(PerLevel):
    """A gauge as a share of another gauge (items in a state / items tracked), per
    `level` label and network-wide; no value where the whole is 0."""

    part: str
    whole: str
    level: str

    def _recorded(self, level: str) -> str:
        return recorded(level, self.part, "share")

    def over(self, by: tuple[str, ...], matchers: str = "") -> str:
        """The share aggregated `by` labels, over the series `matchers` select."""
        part = aggregate(self.part, select(self.part, matchers), by)
        whole = aggregate(self.whole, select(self.whole, matchers), by)
        return f"{part} / ({whole} > 0)"

    def records(self) -> list[dict[str, str]]:
        return [
            {"record": self.by_level, "expr": self.over(grouping(self.level))},
            {"record": self.network, "expr": self.over(())},
        ]


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
RECOMMENDATION_CONVERSION = Ratio(
    "cockpit_recommendation_conversion",
    "widget",
    Count("cockpit_recommendations_conversions_total"),
    # clicks as they are decided, 30 minutes after they happen, as conversions are
    Count("cockpit_recommendations_decided_total"),
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
# The stage times of §3.3, each observed once its later time is known.
STAGE_TIMES_P90 = tuple(
    Quantile(f"cockpit_{stage}_seconds", 0.9, "fc")
    for stage in ("pick_wait", "pick_to_pack", "pack_to_ship")
)
PAGE_LOAD_P90 = Quantile("cockpit_page_load_seconds", 0.9, "page", WEB_WINDOW)
SEARCH_LATENCY_P90 = Quantile("cockpit_search_latency_seconds", 0.9, NETWORK, WEB_WINDOW)
RECEIPTS_AWAITING = Total("cockpit_receipts_awaiting_stow", "fc")
WATERMARK = Total("cockpit_watermark_timestamp_seconds", NETWORK)
STOCKOUTS = Increase(Count("cockpit_stockouts_total"), "fc")
DEMAND_SPIKES = Increase(Count("cockpit_demand_spikes_total"), "fc")
BOTTLENECKS = Increase(Count("cockpit_bottlenecks_total"), "fc")
# Items in each state of §3.2 as a share of the items tracked, per fc.
SKU_STATES = {
    state: Share(f"cockpit_skus_{state.replace(' ', '_')}", "cockpit_skus_tracked", "fc")
    for state in ("out of stock", "at risk", "excess", "below safety stock")
}
OUT_OF_STOCK_SHARE = SKU_STATES["out of stock"]

RECORDED: tuple[Ratio | Quantile | Total | Increase | Share, ...] = (
    SHIP_SLA,
    LATE_DELIVERY,
    ZERO_RESULT_SEARCHES,
    RECOMMENDATION_CTR,
    RECOMMENDATION_CONVERSION,
    DEAD_LETTERS,
    DOCK_TO_STOCK_P50,
    DOCK_TO_STOCK_P90,
    ORDER_CYCLE_P90,
    *STAGE_TIMES_P90,
    PAGE_LOAD_P90,
    SEARCH_LATENCY_P90,
    RECEIPTS_AWAITING,
    WATERMARK,
    STOCKOUTS,
    DEMAND_SPIKES,
    BOTTLENECKS,
    *SKU_STATES.values(),
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
    why: str = ""  # why these levels (the README's alert table)

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
LATE_SHIPMENTS = Limit(warning=1 - 0.03, critical=1 - 0.04, higher_is_worse=False)
SHIP_SLA_ALERT = Alert(
    "ShipSlaBreachRateHigh",
    SHIP_SLA.by_level,
    summary="Ship-SLA compliance at {{ $labels.fc }} is {{ $value | humanizePercentage }} "
    f"(marketplaces allow under {1 - LATE_SHIPMENTS.critical:.0%} late shipments)",
    description=f"Share of the orders of {{{{ $labels.fc }}}} due in {span(KPI_WINDOW)} that "
    "were shipped by their promised ship-by time (the others were neither shipped "
    f"nor cancelled in time). Marketplaces allow under {1 - LATE_SHIPMENTS.critical:.0%} "
    "late shipments: critical from there, a warning one point earlier.",
    runbook="Open 'Fulfilment and supply chain' for this fc: find the stage where orders "
    "wait (placed, picked, packed), add pick/pack labour or re-promise, and tell the "
    "carrier desk about late shipments.",
    limit=LATE_SHIPMENTS,
    why=f"Marketplaces hold sellers to under {1 - LATE_SHIPMENTS.critical:.0%} late "
    "shipments (Amazon's late shipment rate): critical when more of the orders due "
    "were late (compliance below that), a warning one point earlier. This is the "
    "late-shipment alert: compliance and late share are one ratio.",
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
    # absent(): a process that died or is no longer scraped leaves no series to
    # see standing still.
    f"changes({WATERMARK.by_level}[10m]) == 0 or absent({WATERMARK.by_level})",
    summary="The event-time watermark has not advanced for 10 minutes",
    description="No opscockpit process moved the watermark, or none reports one: KPIs and "
    "deadlines are frozen (input stopped, a partition stuck, or the job hung or died).",
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
    increased("cockpit_label_overflow_total", "label"),
    summary="Values of label {{ $labels.label }} fold into 'other'",
    description="More distinct values of {{ $labels.label }} arrived than --max-label-values "
    "allows; the newest are counted under 'other' and per-value KPIs are merged.",
    runbook="Check the producer for bad values of this label; if the values are real, raise "
    "--max-label-values and restart the job.",
    severity="warning",
    for_="5m",
)

KAFKA_SKIPPED_ALERT = Alert(
    "KafkaRecordsSkipped",
    increased("cockpit_kafka_records_skipped_total", "topic"),
    summary="Records were not written to Kafka topic {{ $labels.topic }}",
    description="Records larger than a message of {{ $labels.topic }} can hold (the "
    "producer's message.max.bytes, the topic's max.message.bytes) were skipped: its "
    "consumers never get them. The job's log names each record's key.",
    runbook="Find the keys in the job's log and the events behind them (an id thousands of "
    "characters long is a producer bug: fix it there); for records that are real, raise the "
    "topic's max.message.bytes and the producer's message.max.bytes (--kafka-config).",
    severity="warning",
    for_="0m",  # a record is lost the moment it is skipped
)

OUT_OF_STOCK = Limit(warning=0.05, critical=0.10)
OUT_OF_STOCK_ALERT = Alert(
    "SkusOutOfStockHigh",
    OUT_OF_STOCK_SHARE.by_level,
    summary="{{ $value | humanizePercentage }} of the SKUs tracked at {{ $labels.fc }} are "
    "out of stock",
    description="Items of {{ $labels.fc }} with demand in the last demand_days and nothing on "
    "hand, as a share of the items tracked, at the latest window close: orders for "
    "them are cancelled or wait.",
    runbook="Open 'Inventory health' for this fc: find the out-of-stock items (the web "
    "cockpit's SKUs tile, or the stockout records on cockpit.alerts), expedite their "
    "receipts and stows, transfer stock from another fc, and reorder the at-risk items "
    "before they follow.",
    limit=OUT_OF_STOCK,
    why=f"E-commerce aims for an in-stock rate of {1 - OUT_OF_STOCK.warning:.0%} or better "
    f"(a warning from {OUT_OF_STOCK.warning:.0%} of the items out of stock); retail "
    f"shelves miss about 8 % of their items on average, so from {OUT_OF_STOCK.critical:.0%} "
    "an fc does worse than a typical shop (critical).",
)
DEMAND_SPIKE_ALERT = Alert(
    "DemandSpike",
    f"{DEMAND_SPIKES.by_level} > 0",
    summary='Demand spike at {{ $labels.fc }}: {{ printf "%.0f" $value }} item(s) in '
    f"{span(KPI_WINDOW)}",
    description="Items of {{ $labels.fc }} whose units ordered in the window just closed "
    "reached spike_factor times their usual demand in that window (the mean of the "
    "previous spike_days) and at least spike_min_units.",
    runbook="Read the demand_spike records of this fc on cockpit.alerts (sku, units, "
    "baseline): check the items' cover on 'Inventory health', reserve or transfer stock, "
    "expedite their receipts, and ask marketing whether a promotion or listing error "
    "explains it.",
    severity="warning",
    for_="0m",
    why="Any spike: each is worth a look, and the spike rule (spike_factor, "
    "spike_min_units, spike_days) already filters the noise. It warns for an hour.",
)
CANCELLATIONS = Limit(warning=0.02, critical=0.025)
CANCELLATION_ALERT = Alert(
    "CancellationRateHigh",
    aggregate("cockpit_cancellation_ratio", "cockpit_cancellation_ratio", ("fc",)),
    summary="{{ $value | humanizePercentage }} of the orders placed at {{ $labels.fc }} were "
    "cancelled before shipping",
    description="Orders of {{ $labels.fc }} cancelled before their first shipment / orders "
    f"placed, latest closed window. Marketplaces hold sellers to under "
    f"{CANCELLATIONS.critical:.1%}.",
    runbook="Open 'Customer experience' for this fc and read cancellations by reason: "
    "out_of_stock -> 'Inventory health' (stop selling what is not on hand); delayed -> "
    "the fulfilment stages and ship promises; payment_failed or address_invalid -> the "
    "checkout team.",
    limit=CANCELLATIONS,
    why=f"Marketplaces hold sellers to a pre-fulfilment cancel rate under "
    f"{CANCELLATIONS.critical:.1%} (Amazon's): critical from there, a warning from "
    f"{CANCELLATIONS.warning:.0%}.",
)
BOTTLENECK_ALERT = Alert(
    "StageBottleneck",
    aggregate("cockpit_bottleneck", "cockpit_bottleneck", ("fc", "stage")) + " > 0",
    summary="The {{ $labels.stage }} stage of {{ $labels.fc }} is a bottleneck",
    description="The {{ $labels.stage }} backlog of {{ $labels.fc }} (orders awaiting pick, "
    "pack or ship, or receipts awaiting stow) rose at each of the last bottleneck_windows "
    "window closes and is at least bottleneck_min at the latest one.",
    runbook="Open 'Fulfilment and supply chain' for this fc: compare the stage backlog and "
    "stage times with the shift throughput, move labour to this stage, and re-promise "
    "the orders that cannot leave in time. The bottleneck records on cockpit.alerts "
    "carry the backlogs that rose.",
    severity="warning",
    for_="0m",
    why="While the latest close finds a bottleneck: the rule itself (bottleneck_windows "
    "strict rises, at least bottleneck_min) already asks for a sustained, sizeable rise.",
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
    KAFKA_SKIPPED_ALERT,
    OUT_OF_STOCK_ALERT,
    DEMAND_SPIKE_ALERT,
    CANCELLATION_ALERT,
    BOTTLENECK_ALERT,
)


def rule_groups() -> dict[str, Any]:
    """The Prometheus rules file, as data.

    One group: its rules run in order, so every alert reads the records of the
    same evaluation.
    """
    records = [rule for item in RECORDED for rule in item.records()]
    names = [rule["record"] for rule in records]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"recorded twice: {repeated}"
    alerts = [rule for alert in ALERTS for rule in alert.rules()]
    return {"groups": [{"name": "opscockpit", "rules": records + alerts}]}


def rules_yaml() -> str:
    """The rules file as YAML text (the generated docker/prometheus/rules.yml)."""
    import yaml  # here: the web API reads these rules at every start, never their YAML

    header = "# Generated by `opscockpit grafana generate` from flows/cockpit/rules.py.\n"
    return header + yaml.safe_dump(rule_groups(), sort_keys=False, width=1000)


def alerts_table() -> str:
    """The README's alert table: each alert's conditions, delay and runbook."""
    rows = ["| alert | severity: fires when | for | what to do |", "|---|---|---|---|"]
    for alert in ALERTS:
        when = "<br>".join(
            f"{severity}: `{condition}`".replace("|", "\\|")
            for severity, condition in alert.conditions()
        )
        why = f" *Levels:* {alert.why}" if alert.why else ""
        rows.append(f"| `{alert.name}` | {when} | {alert.for_} | {alert.runbook}{why} |")
    return "\n".join(rows)


def with_alerts_table(readme: str) -> str:
    """`readme` with the text between its alert-table markers replaced by the table."""
    return between_markers(readme, "alerts", alerts_table())


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(with_alerts_table(readme.read_text()))
