"""JSON Schemas for the input events, the output records and the web API's answers,
generated from code.

`python -m flows.schemas` writes them under `schemas/`; a test fails when the
committed files differ from what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from flows.events import (
    COUNT,
    DELIVERY_STATUSES,
    EVENT_TYPES,
    INT,
    LINES,
    MAX_UNITS,
    NUMBER,
    QTY,
    STATUS,
    STRING,
    TIME,
    EventType,
)
from flows.kpis.inventory import STATE_NAMES as ITEM_STATE_NAMES
from flows.kpis.sku_health import BANDS as AGE_BANDS
from flows.timeutil import MAX_EPOCH_MS, RFC3339_PATTERN
from flows.web.schemas import api_schemas

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://opscockpit.dev/schemas"

TIME_SCHEMA: dict[str, Any] = {
    "description": "RFC 3339 with offset, or integer epoch milliseconds; from "
    "0001-01-02T00:00:00Z to before 9999-12-31T00:00:00Z in UTC (which a pattern "
    "cannot say of a time with an offset).",
    "anyOf": [
        {"type": "string", "pattern": RFC3339_PATTERN, "format": "date-time"},
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS},
    ],
}
QTY_SCHEMA = {"type": "integer", "exclusiveMinimum": 0, "maximum": MAX_UNITS}
KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    STRING: {"type": "string"},
    TIME: {"$ref": "#/$defs/time"},
    QTY: QTY_SCHEMA,
    INT: {"type": "integer", "minimum": -MAX_UNITS, "maximum": MAX_UNITS},
    COUNT: {"type": "integer", "minimum": 0},
    NUMBER: {"type": "number", "minimum": 0},
    STATUS: {"enum": list(DELIVERY_STATUSES)},
    LINES: {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {"sku": {"type": "string"}, "qty": QTY_SCHEMA},
        },
    },
}


def event_schema(spec: EventType) -> dict[str, Any]:
    """The schema of one event type."""
    properties: dict[str, Any] = {
        "event_id": {"type": "string", "description": "Unique id; a repeat is a duplicate."},
        "type": {"const": spec.name},
        "ts": {"$ref": "#/$defs/time", "description": "Event time."},
    }
    for name, kind in spec.required:
        properties[name] = KIND_SCHEMAS[kind]
    for name, _kind in spec.optional:
        properties[name] = {"type": ["string", "null"]}
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/events/{spec.name}.json",
        "title": spec.name,
        "description": f"{spec.summary} Unknown extra fields are allowed and ignored.",
        "type": "object",
        "required": ["event_id", "type", "ts", *(name for name, _ in spec.required)],
        "properties": properties,
        "$defs": {"time": TIME_SCHEMA},
    }


def _record(
    name: str, description: str, required: list[str], properties: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/outputs/{name}.json",
        "title": name,
        "description": description,
        "type": "object",
        "required": required,
        "properties": properties,
        **extra,
    }


def closed_record(
    description: str, properties: dict[str, Any], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An output record of exactly these properties, each required but the optional."""
    return {
        "description": description,
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


TEXT_TIME = {"type": "string", "pattern": RFC3339_PATTERN, "format": "date-time"}
FC_RATIOS = ["sell_through", "days_of_cover", "cancellation_ratio", "return_ratio"]
LABEL = {"type": "string"}


def _ratio_record(kpis: list[str], owner: str) -> dict[str, Any]:
    return closed_record(
        f"A ratio per {owner} and closed window, not set (no record) when its divisor is 0.",
        {
            "kpi": {"enum": kpis},
            owner: LABEL,
            "window_start": TEXT_TIME,
            "window_end": TEXT_TIME,
            "value": {"type": "number"},
            "numerator": {"type": "number"},
            "divisor": {"type": "number", "not": {"const": 0}},
        },
    )


FC_RATIO_RECORD = _ratio_record(FC_RATIOS, "fc")
WIDGET_RATIO_RECORD = _ratio_record(["click_through_ratio"], "widget")
SHIFT_RECORD = closed_record(
    "Throughput per fc and closed shift instance (contract §3.3): "
    "[window_start, window_end) is the instance, `hours` its real length, `value` the "
    "units picked per hour of it.",
    {
        "kpi": {"const": "shift"},
        "fc": LABEL,
        "shift": {"type": "string", "description": "The shift's name in the fc's calendar."},
        "window_start": TEXT_TIME,
        "window_end": TEXT_TIME,
        "hours": {"type": "number", "exclusiveMinimum": 0},
        "units_picked": {"type": "integer", "minimum": 0},
        "orders_shipped": {"type": "integer", "minimum": 0},
        "value": {"type": "number", "minimum": 0},
    },
)


SKU_HEALTH_RECORD = closed_record(
    "An item (fc, sku) at a day's close, for every item with on hand or "
    "demand (contract §3.2): `window_start` is the day, `window_end` its close.",
    {
        "kpi": {"const": "sku_health"},
        "fc": LABEL,
        "sku": {"type": "string"},
        "window_start": TEXT_TIME,
        "window_end": TEXT_TIME,
        "on_hand": {"type": "integer"},
        "demand_per_day": {"type": "number", "minimum": 0},
        "cover_days": {"type": ["number", "null"], "description": "null when no demand"},
        "safety_stock": {"type": "number"},
        "states": {
            "type": "array",
            "items": {"enum": list(ITEM_STATE_NAMES)},
            "uniqueItems": True,
            "description": "Sorted.",
        },
        "units_by_age": {
            "type": "object",
            "required": list(AGE_BANDS),
            "properties": {band: {"type": "integer", "minimum": 0} for band in AGE_BANDS},
            "additionalProperties": False,
        },
    },
)
DECIDED = {**TEXT_TIME, "description": "The watermark when it became known."}
AS_DECIDED = {
    "anyOf": [TEXT_TIME, {"type": "null"}],
    "description": "The awaited step's earliest time if it is at most decided_ts, else null.",
}
ORDER_ALERT = closed_record(
    "A breached order as the breach becomes known. Key: `<alert>|<order_id>`.",
    {
        "alert": {"enum": ["ship_sla_breach", "late_delivery"]},
        "order_id": {"type": "string"},
        "fc": LABEL,
        "region": LABEL,
        "deadline": TEXT_TIME,
        "decided_ts": DECIDED,
        "shipped_ts": AS_DECIDED,
        "delivered_ts": AS_DECIDED,
    },
    optional=("shipped_ts", "delivered_ts"),
)
STOCKOUT_ALERT = closed_record(
    "An item out of stock at a close where it was not at the one before "
    "(contract §3.5). Key: `stockout|<fc>|<sku>|<window_end>`.",
    {
        "alert": {"const": "stockout"},
        "fc": LABEL,
        "sku": {"type": "string"},
        "window_end": TEXT_TIME,
        "on_hand": {"type": "integer", "maximum": 0},
        "demand_per_day": {"type": "number", "exclusiveMinimum": 0},
        "decided_ts": DECIDED,
    },
)
DEMAND_SPIKE_ALERT = closed_record(
    "An item's units ordered in the window just closed against the mean of "
    "the same window on the days before (contract §3.5). Key: "
    "`demand_spike|<fc>|<sku>|<window_end>`.",
    {
        "alert": {"const": "demand_spike"},
        "fc": LABEL,
        "sku": {"type": "string"},
        "window_start": TEXT_TIME,
        "window_end": TEXT_TIME,
        "units": {"type": "integer", "minimum": 1},
        "baseline": {"type": "number", "minimum": 0},
        "decided_ts": DECIDED,
    },
)
BOTTLENECK_ALERT = closed_record(
    "A stage whose backlog rose strictly at each of the last "
    "bottleneck_windows closes to at least bottleneck_min, at the first close where that "
    "holds after not holding (contract §3.5). Key: `bottleneck|<fc>|<stage>|<window_end>`.",
    {
        "alert": {"const": "bottleneck"},
        "fc": LABEL,
        "stage": {"enum": ["pick", "pack", "ship", "stow"]},
        "window_end": TEXT_TIME,
        "backlog": {"type": "integer", "minimum": 0},
        "samples": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
            "description": "The backlogs that rose, oldest first; the last is `backlog`.",
        },
        "decided_ts": DECIDED,
    },
)


ALERT_RECORDS = (ORDER_ALERT, STOCKOUT_ALERT, DEMAND_SPIKE_ALERT, BOTTLENECK_ALERT)
ALERT_KINDS = tuple(  # as the schemas name them: the API's `alert` filter takes these
    kind
    for record in ALERT_RECORDS
    for kind in record["properties"]["alert"].get(
        "enum", [record["properties"]["alert"].get("const")]
    )
)


def output_schemas() -> dict[str, dict[str, Any]]:
    """Schemas of the records opscockpit writes (dead letters, alerts, KPIs)."""
    return {
        "dead-letter": _record(
            "dead-letter",
            "A rejected input (topic `<input topic>.dlq`, or the replay --dlq file). Key: "
            "`topic|partition|offset`, or `file|line`.",
            ["reason", "error", "payload", "payload_encoding"],
            {
                "reason": {"enum": ["invalid_json", "unknown_type", "invalid_event", "too_large"]},
                "error": {"type": "string", "description": "What is wrong, readable."},
                "payload": {
                    "type": "string",
                    "description": "The original payload; only its start (payload_truncated) "
                    "on a Kafka topic where the whole would not fit a message, and for a "
                    "replayed line longer than --max-event-bytes (its first that many bytes).",
                },
                "payload_encoding": {"enum": ["utf-8", "base64"]},
                "payload_truncated": {
                    "const": True,
                    "description": "Present where `payload` is the start of a payload too "
                    "large for a Kafka message (librdkafka's message.max.bytes), or of a "
                    "replayed line over --max-event-bytes.",
                },
                "payload_bytes": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The whole payload's size in bytes, where truncated.",
                },
                "topic": {"type": "string"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
                "file": {"type": "string"},
                "line": {"type": "integer", "minimum": 1},
                "source": {"type": "string"},
                "sequence": {"type": "integer", "minimum": 0},
            },
            additionalProperties=False,
            dependentRequired={
                "payload_truncated": ["payload_bytes"],
                "payload_bytes": ["payload_truncated"],
            },
        ),
        "alert": _record(
            "alert",
            "Alert records (topic `cockpit.alerts`), one of the kinds below, keyed by "
            "`<alert>|...` as each kind says.",
            ["alert", "decided_ts"],
            {},
            oneOf=list(ALERT_RECORDS),
        ),
        "kpi": _record(
            "kpi",
            "KPI records (topic `cockpit.kpis`), one of the kinds below. Key: "
            "`<kpi>|<fc or widget>|<window_start>`; `sku_health|<fc>|<sku>|<window_end>`.",
            ["kpi", "window_start", "window_end"],
            {},
            oneOf=[FC_RATIO_RECORD, WIDGET_RATIO_RECORD, SHIFT_RECORD, SKU_HEALTH_RECORD],
        ),
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every schema by its path under `schemas/`."""
    files = {f"events/{name}.json": event_schema(spec) for name, spec in EVENT_TYPES.items()}
    files.update({f"outputs/{name}.json": schema for name, schema in output_schemas().items()})
    files.update({f"api/{name}.json": schema for name, schema in api_schemas().items()})
    return files


def render(schema: dict[str, Any]) -> bytes:
    """Stable, reviewable JSON."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"


def write(root: Path) -> None:
    """Write every schema under `root`."""
    for relative, schema in all_schemas().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(schema))


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas"))
