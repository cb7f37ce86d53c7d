"""JSON Schemas of the /api/v1/ answers (written to `schemas/api/` by
`python -m flows.schemas`), held by the API tests against real answers."""

from __future__ import annotations

from typing import Any

from flows.published import ITEM_STATES
from flows.timeutil import RFC3339_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://opscockpit.dev/schemas/api"
NUMBER_OR_NULL = {"type": ["number", "null"]}
STATUS = {"enum": ["ok", "warning", "critical", "none"]}
TEXT_TIME = {"type": "string", "pattern": RFC3339_PATTERN}
TABLE = {"type": "object", "description": "By name (of the shift, the fc); {} when empty."}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


FIGURE = _object(
    {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "unit": {"enum": ["ratio", "seconds", "count", "timestamp"]},
        "labels": {"type": "array", "items": {"type": "string"}},
        "window": {"type": ["string", "null"], "description": "e.g. 1h; null for a gauge"},
        "since": {
            **NUMBER_OR_NULL,
            "description": "Start of the window (unix seconds); null: since the state began.",
        },
        "value": {**NUMBER_OR_NULL, "description": "Over every label; null: no data yet."},
        "status": STATUS,
        "higher_is_worse": {
            "type": ["boolean", "null"],
            "description": "Which way is worse (the page lists a breakdown worst first); "
            "null: neither.",
        },
        "limit": {
            "oneOf": [
                {"type": "null"},
                _object(
                    {
                        "alert": {"type": "string"},
                        "warning": {"type": "number"},
                        "critical": {"type": "number"},
                        "higher_is_worse": {"type": "boolean"},
                    }
                ),
            ]
        },
        "metrics": {"type": "array", "items": {"type": "string", "pattern": "^cockpit_"}},
        "by": {
            "type": "array",
            "items": _object(
                {
                    "key": {"type": "array", "items": {"type": "string"}},
                    "value": {"type": "number"},
                    "status": STATUS,
                }
            ),
        },
    }
)
POINT = _object(
    {
        "t": {"type": "number"},
        "values": {"type": "object", "additionalProperties": NUMBER_OR_NULL},
    }
)
ITEM = _object(
    {
        "fc": {"type": "string"},
        "sku": {"type": "string"},
        "on_hand": {"type": "integer"},
        "demand_per_day": {"type": "number", "minimum": 0},
        "cover_days": NUMBER_OR_NULL,
        "safety_stock": {"type": "number", "minimum": 0},
        "states": {
            "type": "array",
            "items": {"enum": list(ITEM_STATES)},
            "uniqueItems": True,
            "description": "Worst first, in the order of the enum.",
        },
        "units_by_age": {"type": "object", "additionalProperties": {"type": "integer"}},
        "as_of": TEXT_TIME,
    }
)


def _answer(name: str, description: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/{name}.json",
        "title": f"GET /api/v1/{name}",
        "description": description,
        **_object({"status": {"const": "success"}, "data": data}),
    }


def api_schemas() -> dict[str, dict[str, Any]]:
    """Each endpoint's answer, and the error every endpoint may answer, by name."""
    return {
        "summary": _answer(
            "summary",
            "Every figure of the wall display now, with breakdown, colour and thresholds.",
            _object(
                {
                    "now": {"type": "number"},
                    "watermark": _object(
                        {"timestamp": NUMBER_OR_NULL, "lag_seconds": NUMBER_OR_NULL}
                    ),
                    "kafka_up": {
                        "type": ["boolean", "null"],
                        "description": "Kafka answers every reader (null: no Kafka is read).",
                    },
                    "figures": {"type": "array", "items": FIGURE},
                    "tiles": {
                        "type": "array",
                        "items": _object(
                            {
                                "title": {"type": "string"},
                                "figures": {"type": "array", "items": {"type": "string"}},
                                "kind": {"enum": ["figures", "stages", "items", "alerts"]},
                            }
                        ),
                    },
                    "sample": {"oneOf": [{"type": "null"}, POINT]},
                }
            ),
        ),
        "history": _answer(
            "history",
            "The network value of every figure, sampled every `step` seconds, oldest first.",
            _object({"step": {"type": "number"}, "points": {"type": "array", "items": POINT}}),
        ),
        "items": _answer(
            "items",
            "Items (fc, sku) at their latest close, worst first, one page of them.",
            _object(
                {
                    "total": {"type": "integer", "minimum": 0},
                    "offset": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1},
                    "items": {"type": "array", "items": ITEM},
                }
            ),
        ),
        "alerts": _answer(
            "alerts",
            "The latest alert records of this process (contract §5), newest first.",
            _object(
                {
                    "total": {"type": "integer", "minimum": 0},
                    "alerts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["alert", "decided_ts"],
                            "properties": {"alert": {"type": "string"}, "decided_ts": TEXT_TIME},
                        },
                    },
                }
            ),
        ),
        "settings": _answer(
            "settings",
            "The settings in force (durations in seconds) and how the port is served.",
            _object(
                {
                    "settings": {
                        "type": "object",
                        "properties": {
                            "kpi": {
                                "type": "object",
                                "properties": {
                                    "shifts": TABLE,
                                    "fcs": {
                                        **TABLE,
                                        "additionalProperties": {
                                            "type": "object",
                                            "properties": {"shifts": {"type": ["object", "null"]}},
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "web": _object({"tls": {"type": "boolean"}, "basic_auth": {"type": "boolean"}}),
                }
            ),
        ),
        "error": {
            "$schema": DRAFT,
            "$id": f"{BASE}/error.json",
            "title": "An /api/v1/ error (4xx or 5xx)",
            "description": "As Prometheus' API answers errors.",
            **_object(
                {
                    "status": {"const": "error"},
                    "errorType": {"type": "string"},
                    "error": {"type": "string"},
                }
            ),
        },
    }
