"""The TPS event table of the contract (§1), declared once.

The decoder and the JSON Schemas in `schemas/` are both built from this table,
and a test checks that they accept and reject the same corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

# Field kinds. Each maps to one check in `decode` and one schema fragment.
STRING = "string"
TIME = "time"  # RFC 3339 with offset, or integer epoch milliseconds
QTY = "qty"  # integer > 0, at most MAX_UNITS
INT = "int"  # integer within ±MAX_UNITS (a stock delta)
COUNT = "count"  # integer >= 0
NUMBER = "number"  # number >= 0
STATUS = "status"  # delivery status
LINES = "lines"  # non-empty list of {sku, qty}

DELIVERY_STATUSES = ("out_for_delivery", "delivered", "failed_attempt")
# Units one event may move (qty, a line's qty, delta): every sum of units is kept in
# 64 bits, exact for 2^32 such events however large each is.
MAX_UNITS = 2**31 - 1

Field = tuple[str, str]


@dataclass(frozen=True)
class EventType:
    """One row of the contract's event table."""

    name: str
    required: tuple[Field, ...]
    optional: tuple[Field, ...] = ()
    key: str = ""  # the entity id field producers key Kafka messages by
    summary: str = ""


COMMON: tuple[Field, ...] = (("event_id", STRING), ("type", STRING), ("ts", TIME))

EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "order.placed",
            (
                ("order_id", STRING),
                ("fc", STRING),
                ("region", STRING),
                ("lines", LINES),
                ("promised_ship_by", TIME),
                ("promised_delivery_by", TIME),
            ),
            (("customer_id", STRING),),
            key="order_id",
            summary="A customer order with its ship and delivery promises.",
        ),
        EventType(
            "order.cancelled",
            (("order_id", STRING),),
            (("reason", STRING),),
            key="order_id",
            summary="The order was cancelled.",
        ),
        EventType(
            "order.shipped",
            (("order_id", STRING), ("fc", STRING)),
            (("carrier", STRING),),
            key="order_id",
            summary="The order left the fulfilment centre.",
        ),
        EventType(
            "delivery.updated",
            (("order_id", STRING), ("status", STATUS)),
            (("carrier", STRING),),
            key="order_id",
            summary="A carrier scan: out for delivery, delivered or a failed attempt.",
        ),
        EventType(
            "return.received",
            (("order_id", STRING), ("fc", STRING), ("sku", STRING), ("qty", QTY)),
            (("reason", STRING),),
            key="order_id",
            summary="Returned units received at a fulfilment centre.",
        ),
        EventType(
            "inventory.received",
            (("receipt_id", STRING), ("fc", STRING), ("sku", STRING), ("qty", QTY)),
            (("supplier", STRING),),
            key="receipt_id",
            summary="Inbound units scanned at the dock.",
        ),
        EventType(
            "inventory.stowed",
            (("receipt_id", STRING), ("fc", STRING), ("sku", STRING), ("qty", QTY)),
            (("bin", STRING),),
            key="receipt_id",
            summary="Units of a receipt put away and sellable.",
        ),
        EventType(
            "inventory.picked",
            (("order_id", STRING), ("fc", STRING), ("sku", STRING), ("qty", QTY)),
            key="order_id",
            summary="Units picked for an order.",
        ),
        EventType(
            "inventory.packed",
            (("order_id", STRING), ("fc", STRING)),
            key="order_id",
            summary="An order packed and ready to ship.",
        ),
        EventType(
            "inventory.adjusted",
            (("fc", STRING), ("sku", STRING), ("delta", INT)),
            (("reason", STRING),),
            key="sku",
            summary="A stock correction (cycle count, damage, opening balance).",
        ),
        EventType(
            "page.viewed",
            (("session_id", STRING), ("page", STRING), ("load_ms", NUMBER)),
            key="session_id",
            summary="A storefront page view with its load time.",
        ),
        EventType(
            "search.performed",
            (
                ("session_id", STRING),
                ("query", STRING),
                ("results", COUNT),
                ("latency_ms", NUMBER),
            ),
            key="session_id",
            summary="A storefront search with its result count and latency.",
        ),
        EventType(
            "cart.added",
            (("session_id", STRING), ("sku", STRING), ("qty", QTY)),
            key="session_id",
            summary="Units added to a cart.",
        ),
        EventType(
            "recommendation.shown",
            (("session_id", STRING), ("widget", STRING), ("sku", STRING)),
            key="session_id",
            summary="A recommendation impression.",
        ),
        EventType(
            "recommendation.clicked",
            (("session_id", STRING), ("widget", STRING), ("sku", STRING)),
            key="session_id",
            summary="A click on a recommendation.",
        ),
    )
}


def entity_key(event: dict[str, object]) -> str:
    """The Kafka message key for an event: its entity id (contract §1)."""
    spec = EVENT_TYPES.get(str(event.get("type")))
    if spec is None:
        return str(event.get("event_id", ""))
    if spec.name == "inventory.adjusted":
        return f"{event.get('fc')}|{event.get('sku')}"
    return str(event.get(spec.key, ""))
