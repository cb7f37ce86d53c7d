"""Entities several KPI families read: an order's facts (its first shipment, its
stage) belong to the order, not to each family. Each entity keeps its records,
holds events that arrive before their entity (orphans), and tells the families
watching it what changed."""

from __future__ import annotations

from flows.declare import COUNTER, Metric, metric

ORPHAN_EVENTS = metric(
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
)
STATE_EXPIRED = metric(
    "cockpit_state_expired_total",
    COUNTER,
    "Open orders or receipts dropped from state by the retention horizon.",
    ("kind",),
    known=("order", "receipt"),
)
ENTITY_METRICS: tuple[Metric, ...] = (ORPHAN_EVENTS, STATE_EXPIRED)
