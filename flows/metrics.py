"""Every metric opscockpit exports, declared once.

The Prometheus exposition, the README's metric table, the Grafana dashboards
and the alert rules are all generated from `METRICS`; nothing else names a
metric by hand without a test checking it against this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.decode import REJECT_REASONS
from flows.events import DELIVERY_STATUSES, EVENT_TYPES

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

EVENT_NAMES = tuple(EVENT_TYPES)
CAPPED_LABELS = ("fc", "region", "page", "widget")  # label values taken from events
DOCK_TO_STOCK_BUCKETS = (900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800)
CYCLE_BUCKETS = (3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600)
WEB_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Metric:
    """A metric's name (with `_total` for counters), type, help, labels and unit."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    unit: str = "short"  # Grafana unit id for panels
    buckets: tuple[float, ...] = ()
    group: str = "pipeline"  # which dashboard family it belongs to
    contract: bool = False  # listed in contract §4 from the start
    merge: str = "sum"  # how values of several shards or processes combine: sum or min
    known: tuple[str, ...] = ()  # every value of its one label: series start at 0

    @property
    def family(self) -> str:
        """The name prometheus_client families use (counters without `_total`)."""
        return self.name.removesuffix("_total") if self.kind == COUNTER else self.name


def _m(*args: object, **kwargs: object) -> Metric:
    return Metric(*args, **kwargs)  # type: ignore[arg-type]


METRICS: tuple[Metric, ...] = (
    # --- pipeline (contract §4)
    _m(
        "cockpit_events_total",
        COUNTER,
        "Accepted events.",
        ("type",),
        contract=True,
        known=EVENT_NAMES,
    ),
    _m(
        "cockpit_events_rejected_total",
        COUNTER,
        "Dead-lettered events.",
        ("reason",),
        contract=True,
        known=REJECT_REASONS,
    ),
    _m(
        "cockpit_events_duplicate_total",
        COUNTER,
        "Duplicate events ignored.",
        ("type",),
        contract=True,
        known=EVENT_NAMES,
    ),
    _m(
        "cockpit_events_late_total",
        COUNTER,
        "Late events ignored.",
        ("type",),
        contract=True,
        known=EVENT_NAMES,
    ),
    _m(
        "cockpit_watermark_timestamp_seconds",
        GAUGE,
        "Event-time watermark W as unix seconds.",
        unit="dateTimeAsEpoch",
        contract=True,
        merge="min",
    ),
    _m(
        "cockpit_label_overflow_total",
        COUNTER,
        "Label uses folded into 'other' by the label cap.",
        ("label",),
        contract=True,
        known=CAPPED_LABELS,
    ),
    # --- fulfilment (contract §4)
    _m(
        "cockpit_orders_shipped_total",
        COUNTER,
        "Orders shipped, by first shipment on time.",
        ("fc", "on_time"),
        group="fulfilment",
        contract=True,
    ),
    _m(
        "cockpit_ship_sla_breaches_total",
        COUNTER,
        "Orders that breached their ship promise.",
        ("fc",),
        group="fulfilment",
        contract=True,
    ),
    _m(
        "cockpit_orders_awaiting_shipment",
        GAUGE,
        "Orders placed, not shipped, not cancelled.",
        ("fc",),
        group="fulfilment",
        contract=True,
    ),
    _m(
        "cockpit_orders_past_ship_promise",
        GAUGE,
        "Orders awaiting shipment whose ship promise has passed.",
        ("fc",),
        group="fulfilment",
        contract=True,
    ),
    _m(
        "cockpit_units_ordered_total",
        COUNTER,
        "Units ordered.",
        ("fc",),
        group="fulfilment",
        contract=True,
    ),
    _m(
        "cockpit_units_picked_total",
        COUNTER,
        "Units picked.",
        ("fc",),
        group="fulfilment",
        contract=True,
    ),
    # --- customer experience (contract §4)
    _m(
        "cockpit_deliveries_total",
        COUNTER,
        "Orders delivered, by first delivery on time.",
        ("region", "on_time"),
        group="customer",
        contract=True,
    ),
    _m(
        "cockpit_late_deliveries_total",
        COUNTER,
        "Orders late for their delivery promise.",
        ("region",),
        group="customer",
        contract=True,
    ),
    _m(
        "cockpit_orders_past_delivery_promise",
        GAUGE,
        "Orders not delivered, not cancelled, past their delivery promise.",
        ("region",),
        group="customer",
        contract=True,
    ),
    # --- inventory (contract §4)
    _m(
        "cockpit_dock_to_stock_seconds",
        HISTOGRAM,
        "Time from dock receipt to the stow that completes the receipt.",
        ("fc",),
        unit="s",
        buckets=DOCK_TO_STOCK_BUCKETS,
        group="inventory",
        contract=True,
    ),
    _m(
        "cockpit_receipts_awaiting_stow",
        GAUGE,
        "Receipts received and not fully stowed.",
        ("fc",),
        group="inventory",
        contract=True,
    ),
    _m(
        "cockpit_units_stowed_total",
        COUNTER,
        "Units stowed.",
        ("fc",),
        group="inventory",
        contract=True,
    ),
    _m(
        "cockpit_units_on_hand",
        GAUGE,
        "Units on hand: stowed - picked + adjusted.",
        ("fc",),
        group="inventory",
        contract=True,
    ),
    _m(
        "cockpit_sell_through_ratio",
        GAUGE,
        "Units ordered / (on hand at window start + units stowed), latest closed window.",
        ("fc",),
        unit="percentunit",
        group="inventory",
        contract=True,
    ),
    # --- added by the core engine
    _m("cockpit_orders_cancelled_total", COUNTER, "Orders cancelled.", ("fc",), group="fulfilment"),
    _m(
        "cockpit_orders_in_stage",
        GAUGE,
        "Orders awaiting shipment by stage: placed (not picked), picked, packed.",
        ("fc", "stage"),
        group="fulfilment",
    ),
    _m(
        "cockpit_order_cycle_seconds",
        HISTOGRAM,
        "Time from order placed to first shipment.",
        ("fc",),
        unit="s",
        buckets=CYCLE_BUCKETS,
        group="fulfilment",
    ),
    _m(
        "cockpit_units_received_total",
        COUNTER,
        "Units scanned at inbound docks.",
        ("fc",),
        group="inventory",
    ),
    _m(
        "cockpit_units_returned_total",
        COUNTER,
        "Units returned by customers.",
        ("fc",),
        group="inventory",
    ),
    _m(
        "cockpit_units_adjusted_total",
        COUNTER,
        "Units added (up) or removed (down) by stock adjustments.",
        ("fc", "direction"),
        group="inventory",
    ),
    _m(
        "cockpit_stock_cover_seconds",
        GAUGE,
        "Days of cover, in seconds: how long on hand at the end of the latest closed "
        "window lasts at that window's ordering rate.",
        ("fc",),
        unit="s",
        group="inventory",
    ),
    _m(
        "cockpit_delivery_updates_total",
        COUNTER,
        "Carrier delivery updates by status.",
        ("status",),
        group="customer",
        known=DELIVERY_STATUSES,
    ),
    _m(
        "cockpit_page_load_seconds",
        HISTOGRAM,
        "Storefront page load time.",
        ("page",),
        unit="s",
        buckets=WEB_LATENCY_BUCKETS,
        group="customer",
    ),
    _m(
        "cockpit_search_latency_seconds",
        HISTOGRAM,
        "Storefront search latency.",
        (),
        unit="s",
        buckets=WEB_LATENCY_BUCKETS,
        group="customer",
    ),
    _m(
        "cockpit_searches_zero_results_total",
        COUNTER,
        "Searches that found nothing.",
        group="customer",
    ),
    _m("cockpit_cart_units_added_total", COUNTER, "Units added to carts.", group="customer"),
    _m(
        "cockpit_recommendations_shown_total",
        COUNTER,
        "Recommendation impressions.",
        ("widget",),
        group="customer",
    ),
    _m(
        "cockpit_recommendations_clicked_total",
        COUNTER,
        "Recommendation clicks.",
        ("widget",),
        group="customer",
    ),
    _m(
        "cockpit_orphan_events_total",
        COUNTER,
        "Events for an order or receipt never seen, dropped after the orphan horizon.",
        ("type",),
        known=(
            "order.shipped",
            "order.cancelled",
            "delivery.updated",
            "inventory.picked",
            "inventory.packed",
            "inventory.stowed",
        ),
    ),
    _m(
        "cockpit_state_expired_total",
        COUNTER,
        "Open orders or receipts dropped from state by the retention horizon.",
        ("kind",),
        known=("order", "receipt"),
    ),
    _m(
        "cockpit_kafka_up",
        GAUGE,
        "1 while the Kafka brokers answer this process, else 0.",
        merge="min",
    ),
    _m(
        "cockpit_kafka_consumer_lag",
        GAUGE,
        "Messages in a partition not yet read by this process.",
        ("topic", "partition"),
    ),
    _m(
        "cockpit_state_entries",
        GAUGE,
        "Entries held in state: orders, receipts, orphans, dedup ids, timers.",
        ("kind",),
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def markdown_table() -> str:
    """The metric table of the README (a test keeps the two equal)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in METRICS:
        labels = ", ".join(f"`{label}`" for label in metric.labels)
        buckets = (
            f" Buckets {', '.join(f'{b:g}' for b in metric.buckets)}." if metric.buckets else ""
        )
        rows.append(f"| `{metric.name}` | {metric.kind} | {labels} | {metric.help}{buckets} |")
    return "\n".join(rows)
