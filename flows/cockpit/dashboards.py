"""The five Grafana dashboards, built with grafana-foundation-sdk from `METRICS`.

Panels take their description from each metric's help text and their unit
from its declared unit; ratios and quantiles come from the recorded series of
`flows.cockpit.rules`, and every panel with an alert behind it is coloured by
that alert's `Limit`. Queries aggregate with each metric's merge rule, so
several opscockpit processes scraped together show one correct number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import gauge, heatmap, stat, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import prometheus as prom_model

from flows.cockpit import rules
from flows.cockpit.rules import Limit, aggregate, grouping, metric, select
from flows.kpis.sku_health import BANDS

TAG = "opscockpit"
DATASOURCE_UID = "opscockpit-prometheus"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
PER_SECOND = "cps"  # Grafana's counts/second unit, for rates of counted things
HOUR = "1h"  # "per hour" panels show the increase over the last hour
KPI, INBOUND, WEB = (
    rules.span(w) for w in (rules.KPI_WINDOW, rules.INBOUND_WINDOW, rules.WEB_WINDOW)
)
SHIP_SLA_TEXT = f"Orders shipped by their promised ship-by time / orders due, {KPI}"
LATE_TEXT = f"Orders delivered after their promise or past it undelivered / orders due, {KPI}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One visualisation: kind is stat, gauge, timeseries or heatmap.

    A panel with an `alert` is coloured by that alert's limit, and its
    description says so.
    """

    kind: str
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    alert: rules.Alert | None = None
    width: int = 12
    height: int = 8
    drilldown: str = ""  # uid of the dashboard that explains this panel
    stack: str = ""  # a time series' stacking: "" (none) or "normal"
    axis_unit: str = ""  # a heatmap's bucket unit

    @property
    def limit(self) -> Limit | None:
        return None if self.alert is None else self.alert.limit

    @property
    def full_description(self) -> str:
        limit = self.limit
        if self.alert is None or limit is None:
            return self.description
        word = "from" if limit.higher_is_worse else "below"
        return (
            f"{self.description} Amber {word} {_level(limit.warning, self.unit)}, red "
            f"{word} {_level(limit.critical, self.unit)}: the levels of alert "
            f"{self.alert.name}."
        )


def _level(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value:.0%}"
    if unit == "s" and value >= 3600:
        return f"{value / 3600:g} h"
    return f"{value:g}"


@dataclass(frozen=True)
class Board:
    """One dashboard: rows of panels, drill-down variables and refresh."""

    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    variables: tuple[tuple[str, str], ...] = ()  # (label, metric whose values it lists)
    refresh: str = "30s"
    kiosk: bool = False  # a wall display: variables hidden


UID_PREFIX = "opscockpit-"  # every dashboard's: `grafana generate` removes only these
COCKPIT_UID = f"{UID_PREFIX}cockpit"
INVENTORY_UID = f"{UID_PREFIX}inventory"
FULFILMENT_UID = f"{UID_PREFIX}fulfilment"
CUSTOMER_UID = f"{UID_PREFIX}customer"
PIPELINE_UID = f"{UID_PREFIX}pipeline"


# --- expressions and descriptions from the metric declarations


def matcher(label: str) -> str:
    """The label matcher of a drill-down variable (its "All" value is .*)."""
    return f'{label}=~"${label}"'


def filtered(series: str, label: str) -> str:
    """A recorded series narrowed to the drill-down variable of `label`."""
    return f"{series}{{{matcher(label)}}}"


def current(name: str, level: str, narrow: str = "") -> str:
    """A gauge's current value per level label (merged over processes)."""
    return aggregate(name, select(name, narrow), grouping(level))


def last_hour(name: str, by: tuple[str, ...] = (), narrow: str = "") -> str:
    """A counter's increase over the last hour."""
    return aggregate(name, f"increase({select(name, narrow)}[{HOUR}])", by)


def per_second(name: str, by: tuple[str, ...]) -> str:
    """A counter's per-second rate over Grafana's rate interval."""
    return aggregate(name, f"rate({select(name)}[$__rate_interval])", by)


def about(name: str, how: str) -> str:
    """A panel description: the metric's help, then how the panel shows it."""
    return f"{metric(name).help} {how}"


def unit(name: str) -> str:
    return metric(name).unit


def by_label(series: str, label: str) -> tuple[Query, ...]:
    """One line per value of `label`, narrowed to its drill-down variable."""
    return (Query(filtered(series, label), "{{" + label + "}}"),)


def gauge_per(
    name: str, by: tuple[str, ...], narrow: str, title: str, how: str, **options: Any
) -> Panel:
    """A time series of a gauge per `by` labels, over the series `narrow` selects."""
    legend = " ".join("{{" + label + "}}" for label in by)
    query = Query(aggregate(name, select(name, narrow), by), legend)
    return Panel("timeseries", title, about(name, how), unit(name), (query,), **options)


def gauge_by(name: str, label: str, narrow_to: str, how: str, **options: Any) -> Panel:
    """A time series of a gauge per `label`, narrowed to the variable of `narrow_to`."""
    title = f"{_title(name)} by {label}"
    return gauge_per(name, (label,), matcher(narrow_to), title, how, **options)


def _title(name: str) -> str:
    words = name.removeprefix("cockpit_").removesuffix("_total").replace("_", " ")
    words = words.replace("skus", "SKUs")
    return words[0].upper() + words[1:]


def quantile_by(
    quantile: rules.Quantile,
    title: str,
    counted: str,
    alert: rules.Alert | None = None,
    **options: Any,
) -> Panel:
    """A recorded quantile per its level label: '<title> p90 by fc'."""
    percent = round(quantile.q * 100)
    which = "Median" if percent == 50 else f"{percent}th percentile"
    how = f"{which} per {quantile.level}, {counted} in {rules.span(quantile.window)}."
    return Panel(
        "timeseries",
        f"{title} p{percent} by {quantile.level}",
        about(quantile.name, how),
        unit(quantile.name),
        by_label(quantile.by_level, quantile.level),
        alert,
        **options,
    )


def alerts_per_window(increase: rules.Increase, how: str, **options: Any) -> Panel:
    """A recorded increase of alert records per its level label."""
    name = increase.count.name
    return Panel(
        "timeseries",
        f"{_title(name)} per {rules.span(increase.window).removeprefix('the last ')} by "
        f"{increase.level}",
        about(name, f"Increase over {rules.span(increase.window)}, per {increase.level}. {how}"),
        unit(name),
        by_label(increase.by_level, increase.level),
        **options,
    )


def counts_per_hour(
    title: str, description: str, label: str, counts: tuple[tuple[str, str], ...]
) -> Panel:
    """Last-hour increases of several counters over the selected `label` values."""
    queries = tuple(Query(last_hour(name, (), matcher(label)), legend) for name, legend in counts)
    return Panel("timeseries", title, description, unit(counts[0][0]), queries)


def fc_tiles(
    title: str,
    description: str,
    unit_id: str,
    expr: str,
    drilldown: str,
    alert: rules.Alert | None = None,
    **size: Any,
) -> Panel:
    """A wall-display stat with one tile per fc, drilling down into `drilldown`."""
    query = Query(expr, "{{fc}}")
    return Panel("stat", title, description, unit_id, (query,), alert, drilldown=drilldown, **size)


# --- the dashboards


def cockpit() -> Board:
    """The wall display: network-wide KPIs and per-fc counts, coloured by the alerts."""
    sell = "cockpit_sell_through_ratio"
    big: dict[str, Any] = {"width": 8, "height": 9}
    wide: dict[str, Any] = {"width": 24, "height": 6}
    network = (
        Panel(
            "gauge",
            "Ship-SLA compliance",
            f"{SHIP_SLA_TEXT}, all fcs. The alert is per fc; a network value below a level "
            "means some fc is below it.",
            "percentunit",
            (Query(rules.SHIP_SLA.network),),
            rules.SHIP_SLA_ALERT,
            drilldown=FULFILMENT_UID,
            **big,
        ),
        Panel(
            "gauge",
            "Late deliveries",
            f"{LATE_TEXT}, all regions. The alert is per region; a network value above a "
            "level means some region is above it.",
            "percentunit",
            (Query(rules.LATE_DELIVERY.network),),
            rules.LATE_DELIVERY_ALERT,
            drilldown=CUSTOMER_UID,
            **big,
        ),
        Panel(
            "stat",
            "Dock-to-stock p90",
            about(
                "cockpit_dock_to_stock_seconds",
                f"90th percentile of the receipts completed in {INBOUND}, all fcs.",
            ),
            unit("cockpit_dock_to_stock_seconds"),
            (Query(rules.DOCK_TO_STOCK_P90.network),),
            rules.DOCK_TO_STOCK_ALERT,
            drilldown=INVENTORY_UID,
            **big,
        ),
    )
    per_fc = (
        fc_tiles(
            "Orders past ship promise",
            about("cockpit_orders_past_ship_promise", "One tile per fc."),
            unit("cockpit_orders_past_ship_promise"),
            rules.PAST_PROMISE_ALERT.value,
            FULFILMENT_UID,
            rules.PAST_PROMISE_ALERT,
            **wide,
        ),
        fc_tiles(
            "Receipts awaiting stow",
            about(
                "cockpit_receipts_awaiting_stow",
                "One tile per fc. The alert also needs the backlog to have grown over "
                "the last hour.",
            ),
            unit("cockpit_receipts_awaiting_stow"),
            rules.BACKLOG_ALERT.value,
            INVENTORY_UID,
            rules.BACKLOG_ALERT,
            **wide,
        ),
        fc_tiles(
            "Sell-through",
            about(sell, "One tile per fc; informational, no alert."),
            unit(sell),
            current(sell, "fc"),
            INVENTORY_UID,
            **wide,
        ),
    )
    half: dict[str, Any] = {"width": 12, "height": 6}
    stock_and_customers = (
        fc_tiles(
            "Out-of-stock share",
            "Items out of stock / items tracked, latest window close. One tile per fc.",
            "percentunit",
            rules.OUT_OF_STOCK_SHARE.by_level,
            INVENTORY_UID,
            rules.OUT_OF_STOCK_ALERT,
            **half,
        ),
        fc_tiles(
            "Cancellations",
            about("cockpit_cancellation_ratio", "One tile per fc."),
            unit("cockpit_cancellation_ratio"),
            rules.CANCELLATION_ALERT.value,
            CUSTOMER_UID,
            rules.CANCELLATION_ALERT,
            **half,
        ),
    )
    return Board(
        COCKPIT_UID,
        "Operations cockpit",
        "The wall display: fulfilment KPIs at a glance, coloured by the alert levels.",
        (
            ("Network", network),
            ("By fulfilment centre", per_fc),
            ("Stock and customers by fulfilment centre", stock_and_customers),
        ),
        refresh="10s",
        kiosk=True,
    )


def inventory() -> Board:
    """Inbound flow and stock per fc."""
    d2s = "cockpit_dock_to_stock_seconds"
    buckets = f"increase({select(d2s + '_bucket', matcher('fc'))}[$__rate_interval])"
    inbound = (
        quantile_by(
            rules.DOCK_TO_STOCK_P90,
            "Dock-to-stock",
            "receipts completed",
            rules.DOCK_TO_STOCK_ALERT,
        ),
        quantile_by(rules.DOCK_TO_STOCK_P50, "Dock-to-stock", "receipts completed"),
        Panel(
            "heatmap",
            "Dock-to-stock distribution",
            about(d2s, "Receipts completed per bucket and time slot, selected fcs."),
            "short",
            (Query(aggregate(d2s, buckets, ("le",)), "{{le}}"),),
            width=24,
            axis_unit=unit(d2s),
        ),
        Panel(
            "timeseries",
            "Receipts awaiting stow by fc",
            about("cockpit_receipts_awaiting_stow", "Per fc."),
            unit("cockpit_receipts_awaiting_stow"),
            by_label(rules.RECEIPTS_AWAITING.by_level, "fc"),
            rules.BACKLOG_ALERT,
        ),
        counts_per_hour(
            "Units received and stowed per hour",
            "Units scanned at the inbound docks and units stowed (sellable), last hour, "
            "selected fcs.",
            "fc",
            (
                ("cockpit_units_received_total", "received"),
                ("cockpit_units_stowed_total", "stowed"),
            ),
        ),
    )
    stock = (
        gauge_by("cockpit_units_on_hand", "fc", "fc", "Per fc."),
        gauge_by("cockpit_sell_through_ratio", "fc", "fc", "Per fc, latest closed window."),
        gauge_by(
            "cockpit_stock_cover_seconds", "fc", "fc", "Days of cover per fc, latest closed window."
        ),
        counts_per_hour(
            "Stock flow per hour",
            "Units stowed (in) and picked (out), last hour, selected fcs: with the "
            "adjustments below they make the change of on hand.",
            "fc",
            (
                ("cockpit_units_stowed_total", "stowed"),
                ("cockpit_units_picked_total", "picked"),
            ),
        ),
        Panel(
            "timeseries",
            "Stock adjustments per hour",
            about("cockpit_units_adjusted_total", "Last hour, selected fcs, by direction."),
            unit("cockpit_units_adjusted_total"),
            (
                Query(
                    last_hour("cockpit_units_adjusted_total", ("direction",), matcher("fc")),
                    "{{direction}}",
                ),
            ),
            width=24,
        ),
    )
    return Board(
        INVENTORY_UID,
        "Inventory health",
        "Inbound (dock-to-stock, stow backlog), stock (on hand, sell-through, cover), "
        "SKU health (out of stock, at risk, excess, below safety stock), stock age, "
        "stockouts and demand spikes per fulfilment centre.",
        (
            ("Inbound", inbound),
            ("Stock", stock),
            ("SKU health", sku_health()),
            ("Stockouts and demand spikes", sku_alerts()),
            ("Stock age", stock_age()),
        ),
        variables=(("fc", "cockpit_units_on_hand"),),
    )


SKU_STATE_HOW = "Per fc, latest window close."


def sku_health() -> tuple[Panel, ...]:
    """Items per state of §3.2, in numbers and as shares of the items tracked."""
    share = rules.OUT_OF_STOCK_SHARE
    third: dict[str, Any] = {"width": 8}
    return (
        Panel(
            "timeseries",
            "Out-of-stock share by fc",
            f"Items out of stock (on hand <= 0 with demand) / items tracked, per fc, latest "
            f"window close. Alert {rules.OUT_OF_STOCK_ALERT.name} also raises per-item "
            "stockout records on cockpit.alerts.",
            "percentunit",
            by_label(share.by_level, "fc"),
            rules.OUT_OF_STOCK_ALERT,
        ),
        Panel(
            "timeseries",
            "SKU states, share of tracked",
            "Items in each state / items tracked, selected fcs, latest window close. An item "
            "can be at risk and below safety stock at once; excess is stock with no demand "
            "or cover beyond excess_days.",
            "percentunit",
            tuple(
                Query(state.over((), matcher("fc")), name)
                for name, state in rules.SKU_STATES.items()
            ),
        ),
        gauge_by("cockpit_skus_tracked", "fc", "fc", SKU_STATE_HOW, **third),
        *(
            gauge_by(state.part, "fc", "fc", SKU_STATE_HOW, **third)
            for state in rules.SKU_STATES.values()
        ),
        Panel(
            "timeseries",
            "Cover below lead time, share by fc",
            "Items at risk (days of cover below the lead time) / items tracked, per fc, "
            "latest window close: the stockouts to come if nothing is received.",
            "percentunit",
            by_label(rules.SKU_STATES["at risk"].by_level, "fc"),
            **third,
        ),
    )


def sku_alerts() -> tuple[Panel, ...]:
    """Stockout and demand spike alert records per window."""
    return (
        alerts_per_window(
            rules.STOCKOUTS,
            "Per-item records (fc, sku, on hand, demand) are on cockpit.alerts.",
        ),
        alerts_per_window(
            rules.DEMAND_SPIKES,
            f"Alert {rules.DEMAND_SPIKE_ALERT.name} fires while this is above 0; per-item "
            "records (sku, units, baseline) are on cockpit.alerts.",
        ),
    )


def stock_age() -> tuple[Panel, ...]:
    """FIFO units by age band: how much stock is old."""
    by_age = "cockpit_units_on_hand_by_age"
    aged = BANDS[2:]  # older than 180 days: long-term storage fees, write-off risk
    young = "|".join(BANDS[: -len(aged)])
    narrow = matcher("fc")
    total = aggregate(by_age, select(by_age, narrow))
    return (
        gauge_per(
            by_age,
            ("age",),
            narrow,
            "Units on hand by age band",
            "Selected fcs, stacked.",
            stack="normal",
        ),
        Panel(
            "timeseries",
            "Age mix of units on hand",
            about(by_age, "Share of each age band, selected fcs."),
            "percentunit",
            # The share itself, not units stacked to 100%: Grafana then shows the
            # units in percentunit in tooltips and legends (1,234 units as 123400%).
            (Query(f"{current(by_age, 'age', narrow)} / scalar({total})", "{{age}}"),),
            stack="normal",
        ),
        gauge_per(
            by_age,
            ("fc",),
            f'{narrow},age!~"{young}"',
            f"Units older than {young.rpartition('-')[2]} days by fc",
            f"Bands {', '.join(aged)}, per fc: stock that ages into long-term storage fees "
            "and write-offs.",
            width=24,
        ),
    )


def fulfilment() -> Board:
    """Orders from placement to shipment per fc."""
    sla = rules.SHIP_SLA
    ship = (
        Panel(
            "timeseries",
            "Ship-SLA compliance by fc",
            f"{SHIP_SLA_TEXT}, per fc.",
            "percentunit",
            by_label(sla.by_level, "fc"),
            rules.SHIP_SLA_ALERT,
        ),
        Panel(
            "timeseries",
            "Orders due per hour",
            f"Orders whose ship promise fell due in {KPI}: shipped on time, or "
            "breached (neither shipped nor cancelled in time), selected fcs.",
            "short",
            (
                Query(f"sum({filtered(sla.part_series, 'fc')})", "on time"),
                Query(f"sum({filtered(sla.rest_series, 'fc')})", "breached"),
            ),
            stack="normal",
        ),
        gauge_by(
            "cockpit_orders_past_ship_promise",
            "fc",
            "fc",
            "Per fc.",
            alert=rules.PAST_PROMISE_ALERT,
        ),
        gauge_by(
            "cockpit_orders_in_stage", "stage", "fc", "Selected fcs, stacked.", stack="normal"
        ),
    )
    stages = (
        *(
            quantile_by(quantile, title, f"orders that {did}", width=8)
            for quantile, title, did in zip(
                rules.STAGE_TIMES_P90,
                ("Pick wait", "Pick to pack", "Pack to ship"),
                ("were picked", "were packed", "shipped"),
                strict=True,
            )
        ),
        gauge_by(
            "cockpit_stage_backlog",
            "stage",
            "fc",
            "Selected fcs, stacked; as of each window close.",
            stack="normal",
            width=8,
        ),
        gauge_per(
            "cockpit_bottleneck",
            ("fc", "stage"),
            matcher("fc"),
            "Bottlenecks by fc and stage",
            f"Alert {rules.BOTTLENECK_ALERT.name} fires while one is 1.",
            alert=rules.BOTTLENECK_ALERT,
            width=8,
        ),
        alerts_per_window(
            rules.BOTTLENECKS,
            "Records (fc, stage, the backlogs that rose) are on cockpit.alerts.",
            width=8,
        ),
    )
    flow = (
        quantile_by(rules.ORDER_CYCLE_P90, "Order cycle time", "orders shipped"),
        counts_per_hour(
            "Orders placed and units shipped per hour",
            "Orders placed and line units of the orders first shipped, last hour, selected fcs.",
            "fc",
            (
                ("cockpit_orders_placed_total", "orders placed"),
                ("cockpit_units_shipped_total", "units shipped"),
            ),
        ),
        counts_per_hour(
            "Units ordered and picked per hour",
            "Units ordered and units picked, last hour, selected fcs.",
            "fc",
            (("cockpit_units_ordered_total", "ordered"), ("cockpit_units_picked_total", "picked")),
        ),
        Panel(
            "timeseries",
            "Orders cancelled per hour by fc",
            about("cockpit_orders_cancelled_total", "Last hour, per fc."),
            unit("cockpit_orders_cancelled_total"),
            (Query(last_hour("cockpit_orders_cancelled_total", ("fc",), matcher("fc")), "{{fc}}"),),
            width=24,
        ),
    )
    return Board(
        FULFILMENT_UID,
        "Fulfilment and supply chain",
        "Orders from placement to shipment: ship SLA, orders past promise, stages, "
        "flow and shift throughput per fulfilment centre.",
        (
            ("Ship SLA", ship),
            ("Stages and bottlenecks", stages),
            ("Flow", flow),
            ("Shift throughput", shift_throughput()),
        ),
        variables=(("fc", "cockpit_orders_awaiting_shipment"),),
    )


SHIFT_HOW = "Per fc and named shift (its latest closed instance), selected fcs."


def shift_throughput() -> tuple[Panel, ...]:
    """Per fc and named shift, the latest closed instance (§3.3)."""
    third: dict[str, Any] = {"width": 8}
    return tuple(
        gauge_per(name, ("fc", "shift"), matcher("fc"), title, SHIFT_HOW, **third)
        for name, title in (
            ("cockpit_shift_units_picked_per_hour", "Units picked per hour by shift"),
            ("cockpit_shift_units_picked", "Units picked per shift"),
            ("cockpit_shift_orders_shipped", "Orders shipped per shift"),
        )
    )


def customer() -> Board:
    """Deliveries per region and the storefront experience."""
    late = rules.LATE_DELIVERY
    page = "cockpit_page_load_seconds"
    search = "cockpit_search_latency_seconds"
    delivery = (
        Panel(
            "timeseries",
            "Late deliveries by region",
            f"{LATE_TEXT}, per region.",
            "percentunit",
            by_label(late.by_level, "region"),
            rules.LATE_DELIVERY_ALERT,
        ),
        Panel(
            "timeseries",
            "Deliveries due per hour",
            f"Orders whose delivery promise fell due in {KPI}: delivered on time, or "
            "late, selected regions.",
            "short",
            (
                Query(f"sum({filtered(late.rest_series, 'region')})", "on time"),
                Query(f"sum({filtered(late.part_series, 'region')})", "late"),
            ),
            stack="normal",
        ),
        gauge_by("cockpit_orders_past_delivery_promise", "region", "region", "Per region."),
        Panel(
            "timeseries",
            "Delivery updates per hour by status",
            about("cockpit_delivery_updates_total", "Last hour, all regions."),
            unit("cockpit_delivery_updates_total"),
            (Query(last_hour("cockpit_delivery_updates_total", ("status",)), "{{status}}"),),
        ),
    )
    storefront = (
        Panel(
            "timeseries",
            "Page load p90 by page",
            about(page, f"90th percentile per page, {WEB}."),
            unit(page),
            (Query(rules.PAGE_LOAD_P90.by_level, "{{page}}"),),
        ),
        Panel(
            "timeseries",
            "Search latency p90",
            about(search, f"90th percentile, {WEB}."),
            unit(search),
            (Query(rules.SEARCH_LATENCY_P90.network, "p90"),),
        ),
        Panel(
            "timeseries",
            "Searches with no results",
            f"Searches that found nothing / all searches, {KPI}.",
            "percentunit",
            (Query(rules.ZERO_RESULT_SEARCHES.network, "no results"),),
        ),
        Panel(
            "timeseries",
            "Units added to carts per hour",
            about("cockpit_cart_units_added_total", "Last hour."),
            unit("cockpit_cart_units_added_total"),
            (Query(last_hour("cockpit_cart_units_added_total"), "units"),),
        ),
    )
    return Board(
        CUSTOMER_UID,
        "Customer experience",
        "Delivery promises kept per region, cancellations and returns per fc, and the "
        "storefront: page load, search, recommendations, carts.",
        (
            ("Deliveries", delivery),
            ("Cancellations and returns", cancellations_and_returns()),
            ("Storefront", storefront),
            ("Recommendations", recommendations()),
        ),
        variables=(
            ("region", "cockpit_deliveries_total"),
            ("fc", "cockpit_orders_awaiting_shipment"),
        ),
    )


def cancellations_and_returns() -> tuple[Panel, ...]:
    """Per fc: the ratios of the latest closed window, and the counts by reason."""
    return (
        gauge_by(
            "cockpit_cancellation_ratio", "fc", "fc", "Per fc.", alert=rules.CANCELLATION_ALERT
        ),
        gauge_by("cockpit_return_ratio", "fc", "fc", "Per fc."),
        *(
            Panel(
                "timeseries",
                f"{_title(name)} per hour by reason",
                about(name, "Last hour, selected fcs, by reason ('unknown' when none given)."),
                unit(name),
                (Query(last_hour(name, ("reason",), matcher("fc")), "{{reason}}"),),
            )
            for name in ("cockpit_orders_cancelled_total", "cockpit_units_returned_total")
        ),
    )


def recommendations() -> tuple[Panel, ...]:
    """Recommendation widgets: click-through, conversion and their counts."""
    ctr, conversion = "cockpit_recommendation_click_through_ratio", rules.RECOMMENDATION_CONVERSION
    return (
        Panel(
            "timeseries",
            "Recommendation click-through by widget",
            f"Recommendation clicks / impressions, {KPI}, per widget.",
            "percentunit",
            (Query(rules.RECOMMENDATION_CTR.by_level, "{{widget}}"),),
        ),
        gauge_per(
            ctr,
            ("widget",),
            "",
            "Click-through by widget, closed windows",
            "Per widget: the exact ratio of each closed window, stepping at window closes.",
        ),
        Panel(
            "timeseries",
            "Recommendation conversion by widget",
            f"Clicks followed by a cart add of the same sku in the same session within "
            f"conversion_minutes / clicks decided, {KPI}, per widget.",
            "percentunit",
            (Query(conversion.by_level, "{{widget}}"),),
        ),
        Panel(
            "timeseries",
            "Recommendations per hour",
            "Impressions, clicks, clicks decided (conversion_minutes after them) and "
            "converted clicks, last hour, all widgets.",
            unit(conversion.part.name),
            tuple(
                Query(last_hour(name), legend)
                for name, legend in (
                    ("cockpit_recommendations_shown_total", "shown"),
                    ("cockpit_recommendations_clicked_total", "clicked"),
                    ("cockpit_recommendations_decided_total", "decided"),
                    ("cockpit_recommendations_conversions_total", "converted"),
                )
            ),
        ),
    )


KAFKA_PANELS = (
    "Kafka consumer lag by topic",
    "Kafka brokers reachable",
    "Kafka records not written, last hour, by topic",
)
"""Panels whose metrics exist only when opscockpit reads Kafka (`run --kafka`)."""


def rate_by(name: str, label: str) -> Panel:
    """A counter's per-second rate per `label`."""
    title = f"{_title(name)}/s by {label}"
    return Panel(
        "timeseries",
        title,
        about(name, f"Per second, by {label}."),
        PER_SECOND,
        (Query(per_second(name, (label,)), "{{" + label + "}}"),),
    )


def pipeline() -> Board:
    """The stream processor's own health."""
    watermark = metric("cockpit_watermark_timestamp_seconds")
    flow = (
        rate_by("cockpit_events_total", "type"),
        rate_by("cockpit_events_rejected_total", "reason"),
        Panel(
            "timeseries",
            "Dead-letter ratio",
            f"Rejected events / all events, {rules.span(rules.PIPELINE_WINDOW)}.",
            "percentunit",
            (Query(rules.DEAD_LETTERS.network, "dead-lettered"),),
            rules.DEAD_LETTER_ALERT,
        ),
        rate_by("cockpit_events_duplicate_total", "type"),
        rate_by("cockpit_events_late_total", "type"),
        Panel(
            "timeseries",
            "Watermark lag behind wall-clock",
            f"Wall-clock time minus the lowest watermark of all processes ({watermark.help}) "
            "It includes the allowed lateness. Alert "
            f"{rules.PIPELINE_STALLED_ALERT.name} fires when the watermark does not move "
            "for 10 minutes.",
            "s",
            (Query(f"time() - {rules.WATERMARK.by_level}", "lag"),),
        ),
    )
    state = (
        rate_by("cockpit_label_overflow_total", "label"),
        Panel(
            "timeseries",
            "State entries by kind",
            about("cockpit_state_entries", "Summed over processes, by kind."),
            unit("cockpit_state_entries"),
            (Query(current("cockpit_state_entries", "kind"), "{{kind}}"),),
        ),
        Panel(
            "timeseries",
            KAFKA_PANELS[0],
            about("cockpit_kafka_consumer_lag", "Summed by topic; only in Kafka mode."),
            unit("cockpit_kafka_consumer_lag"),
            (Query(current("cockpit_kafka_consumer_lag", "topic"), "{{topic}}"),),
        ),
        Panel(
            "stat",
            KAFKA_PANELS[1],
            about("cockpit_kafka_up", "The lowest value over processes; only in Kafka mode."),
            unit("cockpit_kafka_up"),
            (Query(current("cockpit_kafka_up", rules.NETWORK)),),
        ),
        Panel(
            "timeseries",
            KAFKA_PANELS[2],
            about(
                "cockpit_kafka_records_skipped_total",
                f"Over the last hour, by topic; only in Kafka mode. Alert "
                f"{rules.KAFKA_SKIPPED_ALERT.name} fires on any.",
            ),
            "short",
            (Query(last_hour("cockpit_kafka_records_skipped_total", ("topic",)), "{{topic}}"),),
        ),
    )
    return Board(
        PIPELINE_UID,
        "Pipeline health",
        "The stream processor itself: input rates, rejects, duplicates, late events, "
        "watermark, label caps, state and Kafka.",
        (("Input", flow), ("State and Kafka", state)),
    )


BOARDS = (cockpit, inventory, fulfilment, customer, pipeline)


# --- rendering with grafana-foundation-sdk


def _thresholds(limit: Limit | None) -> db.ThresholdsConfig:
    """Colour steps: green/amber/red at the alert levels, a neutral blue without an alert."""
    if limit is None:
        colours: list[tuple[float | None, str]] = [(None, "blue")]
    elif limit.higher_is_worse:
        colours = [(None, "green"), (limit.warning, "orange"), (limit.critical, "red")]
    else:
        colours = [(None, "red"), (limit.critical, "orange"), (limit.warning, "green")]
    steps = [dm.Threshold(value=value, color=colour) for value, colour in colours]
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def _target(query: Query, ref: str, kind: str) -> prom.Dataquery:
    target = (
        prom.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend or "__auto")
        .ref_id(ref)
        .datasource(DATASOURCE)
    )
    if kind == "gauge":
        return target.instant()
    if kind == "heatmap":
        return target.range().format(prom_model.PromQueryFormat.HEATMAP)
    return target.range()


def _visual(panel: Panel) -> Any:
    """The SDK builder of a panel kind, with the options that kind needs."""
    last = common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    if panel.kind == "stat":
        return (
            stat.Panel()
            .reduce_options(last)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.AREA)
            .text_mode(common.BigValueTextMode.AUTO)
        )
    if panel.kind == "gauge":
        return (
            gauge.Panel()
            .reduce_options(last)
            .min(0)
            .max(1)
            .show_threshold_markers(True)
            .show_threshold_labels(False)
        )
    if panel.kind == "heatmap":
        colour = (
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
        )
        return (
            heatmap.Panel()
            .calculate(False)
            .color(colour)
            .y_axis(heatmap.YAxisConfig().unit(panel.axis_unit))
            .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        )
    lines = (
        common.GraphTresholdsStyleMode.OFF
        if panel.limit is None
        else common.GraphTresholdsStyleMode.DASHED
    )
    legend = (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    series = (
        timeseries.Panel()
        .legend(legend)
        .fill_opacity(60 if panel.stack else 10)
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(lines))
    )
    if panel.stack:
        series.stacking(common_builders.StackingConfig().mode(common.StackingMode(panel.stack)))
    return series


def _panel(panel: Panel, panel_id: int) -> Any:
    builder = (
        _visual(panel)
        .id(panel_id)
        .title(panel.title)
        .description(panel.full_description)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
        .datasource(DATASOURCE)
        .thresholds(_thresholds(panel.limit))
    )
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        builder.with_target(_target(query, ref, panel.kind))
    if panel.drilldown:
        link = db.DashboardLink("Drill down").url(f"/d/{panel.drilldown}?${{__url_time_range}}")
        builder.links([link])
    return builder


def _variables(board: Board) -> list[Any]:
    hide = dm.VariableHide.HIDE_VARIABLE if board.kiosk else dm.VariableHide.DONT_HIDE
    source = (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dm.VariableOption(text="Prometheus", value=DATASOURCE_UID))
        .hide(hide)
    )
    drill = [
        db.QueryVariable(label)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({select(name)}, {label})")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(text="All", value="$__all"))
        for label, name in board.variables
    ]
    return [source, *drill]


def build(board: Board) -> dict[str, Any]:
    """A dashboard as the JSON model Grafana stores."""
    builder = (
        db.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags([TAG])
        .refresh(board.refresh)
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .variables(_variables(board))
        .link(
            db.DashboardLink("opscockpit")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(True)
        )
    )
    panel_id = 0
    for title, panels in board.rows:
        panel_id += 1
        builder.with_row(db.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            builder.with_panel(_panel(panel, panel_id))
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by uid."""
    built = [build(make()) for make in BOARDS]
    return {model["uid"]: model for model in built}


def dashboard_json(model: dict[str, Any]) -> str:
    """Stable text for a committed dashboard file."""
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


# --- provisioning for the compose stack

PROMETHEUS_URL = "http://prometheus:9090"  # the Prometheus service of docker/compose.yaml
DASHBOARDS_PATH = "/etc/grafana/dashboards/opscockpit"  # where compose mounts grafana/dashboards
GENERATED = "# Generated by `opscockpit grafana generate` from flows/cockpit/dashboards.py.\n"


def _yaml(data: dict[str, Any]) -> str:
    return GENERATED + yaml.safe_dump(data, sort_keys=False)


def provisioning_files() -> dict[str, str]:
    """Grafana's files, by path under the repository: dashboards, provisioning, grafana.ini."""
    files = {
        f"grafana/dashboards/{uid}.json": dashboard_json(model)
        for uid, model in dashboards().items()
    }
    files["grafana/provisioning/datasources/opscockpit.yaml"] = _yaml(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": DATASOURCE_UID,
                    "access": "proxy",
                    "url": PROMETHEUS_URL,
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"timeInterval": "5s", "httpMethod": "POST"},
                }
            ],
        }
    )
    files["grafana/provisioning/dashboards/opscockpit.yaml"] = _yaml(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "opscockpit",
                    "folder": "opscockpit",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 30,
                    "options": {"path": DASHBOARDS_PATH},
                }
            ],
        }
    )
    files["grafana/grafana.ini"] = GRAFANA_INI.format(home=f"{DASHBOARDS_PATH}/{COCKPIT_UID}.json")
    return files


GRAFANA_INI = (
    GENERATED
    + """\
# The admin password comes from GF_SECURITY_ADMIN_PASSWORD (see docker/compose.yaml).

[dashboards]
# The wall display is the home page.
default_home_dashboard_path = {home}

[auth.anonymous]
# Wall displays see the dashboards read-only, without logging in.
enabled = true
org_role = Viewer

[users]
allow_sign_up = false

[analytics]
reporting_enabled = false
check_for_updates = false
"""
)
