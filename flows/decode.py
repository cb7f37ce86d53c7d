"""Raw message bytes to a validated event, or a reject with a reason (contract §2).

Errors are data: `decode` never raises for bad input. An accepted event is the
parsed JSON object itself, with its times replaced by integer microseconds
(`ts`, and the promises of `order.placed`), so nothing is copied on the hot path.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
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
from flows.timeutil import TimeError, integral, parse_time

INVALID_JSON = "invalid_json"
UNKNOWN_TYPE = "unknown_type"
INVALID_EVENT = "invalid_event"
TOO_LARGE = "too_large"
REJECT_REASONS = (INVALID_JSON, UNKNOWN_TYPE, INVALID_EVENT, TOO_LARGE)

Event = dict[str, Any]


@dataclass(slots=True)
class Reject:
    """An input that cannot be processed, kept whole for the dead-letter output."""

    reason: str
    error: str
    payload: bytes
    origin: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The dead-letter record: reason, error, payload as text or base64, origin."""
        try:
            text, encoding = self.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.payload).decode("ascii"), "base64"
        return {
            "reason": self.reason,
            "error": self.error,
            "payload": text,
            "payload_encoding": encoding,
            **self.origin,
        }


def _describe(value: object) -> str:
    text = orjson.dumps(value).decode() if _jsonable(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _check(obj: Event, name: str, kind: str) -> str | None:
    """Check (and normalise in place) one field; return an error or None."""
    value = obj.get(name)
    if value is None:
        return f"missing field {name!r}" if name not in obj else f"field {name!r} is null"
    if kind is STRING:
        if type(value) is str:
            return None
        return f"field {name!r} must be a string, got {_describe(value)}"
    if kind is TIME:
        try:
            obj[name] = parse_time(value)
        except TimeError as exc:
            return f"field {name!r}: {exc}"
        return None
    if kind is QTY or kind is COUNT or kind is INT:
        number = integral(value)
        if number is None:
            return f"field {name!r} must be an integer, got {_describe(value)}"
        if (kind is QTY and number <= 0) or (kind is COUNT and number < 0):
            bound = "> 0" if kind is QTY else ">= 0"
            return f"field {name!r} must be an integer {bound}, got {number}"
        obj[name] = number
        return None
    if kind is NUMBER:
        if (type(value) is int or type(value) is float) and value >= 0:
            return None
        return f"field {name!r} must be a number >= 0, got {_describe(value)}"
    if kind is STATUS:
        if value in DELIVERY_STATUSES and type(value) is str:
            return None
        return (
            f"field {name!r} must be one of {', '.join(DELIVERY_STATUSES)}, got {_describe(value)}"
        )
    if kind is LINES:
        return _check_lines(obj, name, value)
    raise AssertionError(f"unknown field kind {kind}")


def _check_lines(obj: Event, name: str, value: object) -> str | None:
    if type(value) is not list or not value:
        return f"field {name!r} must be a non-empty list of {{sku, qty}}"
    for index, line in enumerate(value):
        if type(line) is not dict:
            return f"{name}[{index}] must be an object with sku and qty"
        for part, kind in (("sku", STRING), ("qty", QTY)):
            error = _check(line, part, kind)
            if error is not None:
                return f"{name}[{index}]: {error}"
    obj[name] = value
    return None


def _validator(spec: EventType) -> Callable[[Event], str | None]:
    required = (("event_id", STRING), ("ts", TIME), *spec.required)
    optional = spec.optional

    def validate(obj: Event) -> str | None:
        for name, kind in required:
            value = obj.get(name)
            # Fast path for the common case: a present string field.
            if kind is STRING and type(value) is str:
                continue
            error = _check(obj, name, kind)
            if error is not None:
                return error
        for name, _kind in optional:
            value = obj.get(name)
            if value is not None and type(value) is not str:
                return f"optional field {name!r} must be a string or null, got {_describe(value)}"
        return None

    return validate


_VALIDATORS = {name: _validator(spec) for name, spec in EVENT_TYPES.items()}
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def decode(payload: bytes, max_bytes: int = 0) -> Event | Reject:
    """Decode and validate one message, in the contract's order of checks."""
    if max_bytes and len(payload) > max_bytes:
        return Reject(TOO_LARGE, f"payload of {len(payload)} bytes exceeds {max_bytes}", payload)
    try:
        obj = _loads(payload)
    except _JSONDecodeError as exc:
        return Reject(INVALID_JSON, f"not UTF-8 JSON: {exc}", payload)
    if type(obj) is not dict:
        return Reject(INVALID_JSON, f"not a JSON object but {type(obj).__name__}", payload)
    kind = obj.get("type")
    validate = _VALIDATORS.get(kind) if type(kind) is str else None
    if validate is None:
        if kind is None:
            return Reject(INVALID_EVENT, "missing field 'type'", payload)
        return Reject(UNKNOWN_TYPE, f"unknown event type {_describe(kind)}", payload)
    error = validate(obj)
    if error is not None:
        return Reject(INVALID_EVENT, f"{kind}: {error}", payload)
    return obj
