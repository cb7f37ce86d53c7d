"""JSON Schemas for the input events and the output records, generated from code.

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
    NUMBER,
    QTY,
    STATUS,
    STRING,
    TIME,
    EventType,
)
from flows.timeutil import MAX_EPOCH_MS, RFC3339_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://opscockpit.dev/schemas"

TIME_SCHEMA: dict[str, Any] = {
    "description": "RFC 3339 with offset, or integer epoch milliseconds.",
    "anyOf": [
        {"type": "string", "pattern": RFC3339_PATTERN, "format": "date-time"},
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS},
    ],
}
QTY_SCHEMA = {"type": "integer", "exclusiveMinimum": 0}
KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    STRING: {"type": "string"},
    TIME: {"$ref": "#/$defs/time"},
    QTY: QTY_SCHEMA,
    INT: {"type": "integer"},
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


TEXT_TIME = {"type": "string", "pattern": RFC3339_PATTERN, "format": "date-time"}
LABEL = {"type": "string"}


RATIO_RECORD: dict[str, Any] = {
    "description": "A ratio per fc and closed window.",
    "type": "object",
    "required": ["kpi", "fc", "window_start", "window_end", "value", "numerator", "divisor"],
    "properties": {
        "kpi": {"enum": ["sell_through", "days_of_cover"]},
        "fc": LABEL,
        "window_start": TEXT_TIME,
        "window_end": TEXT_TIME,
        "value": {"type": "number"},
        "numerator": {"type": "number"},
        "divisor": {"type": "number", "not": {"const": 0}},
    },
    "additionalProperties": False,
}
SHIFT_RECORD: dict[str, Any] = {
    "description": "Throughput per fc and closed shift instance (contract §3.3): "
    "[window_start, window_end) is the instance, `hours` its real length, `value` the "
    "units picked per hour of it.",
    "type": "object",
    "required": [
        "kpi",
        "fc",
        "shift",
        "window_start",
        "window_end",
        "hours",
        "units_picked",
        "orders_shipped",
        "value",
    ],
    "properties": {
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
    "additionalProperties": False,
}


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
                "payload": {"type": "string"},
                "payload_encoding": {"enum": ["utf-8", "base64"]},
                "topic": {"type": "string"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
                "file": {"type": "string"},
                "line": {"type": "integer", "minimum": 1},
                "source": {"type": "string"},
                "sequence": {"type": "integer", "minimum": 0},
            },
            additionalProperties=False,
        ),
        "alert": _record(
            "alert",
            "One record per breached order as the breach becomes known (topic "
            "`cockpit.alerts`). Key: `<alert>|<order_id>`.",
            ["alert", "order_id", "fc", "region", "deadline", "decided_ts"],
            {
                "alert": {"enum": ["ship_sla_breach", "late_delivery"]},
                "order_id": {"type": "string"},
                "fc": LABEL,
                "region": LABEL,
                "deadline": TEXT_TIME,
                "decided_ts": {**TEXT_TIME, "description": "The watermark when it became known."},
                "shipped_ts": {"anyOf": [TEXT_TIME, {"type": "null"}]},
                "delivered_ts": {"anyOf": [TEXT_TIME, {"type": "null"}]},
            },
            additionalProperties=False,
        ),
        "kpi": _record(
            "kpi",
            "KPI records (topic `cockpit.kpis`), one of the kinds below. Key: "
            "`<kpi>|<fc>|<window_start>`.",
            ["kpi", "fc", "window_start", "window_end", "value"],
            {},
            oneOf=[RATIO_RECORD, SHIFT_RECORD],
        ),
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every schema by its path under `schemas/`."""
    files = {f"events/{name}.json": event_schema(spec) for name, spec in EVENT_TYPES.items()}
    files.update({f"outputs/{name}.json": schema for name, schema in output_schemas().items()})
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
