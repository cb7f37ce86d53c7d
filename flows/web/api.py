"""The JSON API under /api/v1/: what the page shows, for scripts too.

Answers are `{"status": "success", "data": ...}`, and errors
`{"status": "error", "errorType": ..., "error": ...}` with a 4xx or 5xx code,
as Prometheus' own API does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs

from flows.exposition import Board
from flows.published import ITEM_STATES, Item
from flows.schemas import ALERT_KINDS
from flows.settings import Settings
from flows.timeutil import format_time
from flows.web.figures import BY_ID, FIGURES, TILES, Figure, Totals, View
from flows.web.history import History

MAX_LIMIT = 1000
# Unix seconds as the page sends them: no exponent, no `_`, ASCII digits only.
DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Settings in microseconds, shown in seconds as `<name>_seconds`.
DURATIONS = tuple(f.name for f in dataclasses.fields(Settings) if f.metadata.get("duration"))
# A settings field of (name, value) pairs, as its annotation reads.
TABLE = "tuple[tuple[str, "


class ApiError(Exception):
    """An answer other than success: HTTP status, Prometheus' error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def bad(message: str) -> ApiError:
    return ApiError(400, "bad_data", message)


class Query:
    """The query string of a request, checked against the parameters an endpoint takes."""

    def __init__(self, text: str, allowed: set[str]) -> None:
        # Empty fields (`a=1&`, `&&`) are nothing, as in Prometheus' API; a field
        # without `=` is malformed.
        fields = "&".join(field for field in text.split("&") if field)
        try:
            self.values = parse_qs(fields, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise bad(f"malformed query string: {text!r}") from None
        for name in self.values:
            if name not in allowed:
                takes = ", ".join(sorted(allowed)) if allowed else "none"
                raise bad(f"unknown parameter {name!r}; this endpoint takes {takes}")

    def many(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def one(self, name: str) -> str | None:
        values = self.many(name)
        if len(values) > 1:
            raise bad(f"parameter {name!r} given {len(values)} times")
        return values[0] if values else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.one(name)
        if text is None:
            return default
        # ASCII digits only (isdigit() alone takes "²" and "٣", which int() refuses or
        # reads), leading zeros aside no more of them than `high` has (int() refuses
        # 5,000 digits).
        value = text.lstrip("0") or "0"
        digits = text.isascii() and text.isdigit() and len(value) <= len(str(high))
        if not digits or not low <= int(value) <= high:
            raise bad(f"{name} must be an integer from {low} to {high}, not {text!r}")
        return int(value)

    def number(self, name: str, default: float) -> float:
        text = self.one(name)
        if text is None:
            return default
        value = float(text) if DECIMAL.fullmatch(text) else math.nan
        if not math.isfinite(value):  # and 400 digits are infinite
            raise bad(f"{name} must be a decimal number, not {text!r}")
        return value

    def choices(self, name: str, allowed: tuple[str, ...]) -> list[str]:
        values = self.many(name)
        for value in values:
            if value not in allowed:
                raise bad(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return values


def _figure(figure: Figure, view: View) -> dict[str, Any]:
    reading = figure.source.read(view)
    limit = figure.limit
    window = figure.source.window
    return {
        "id": figure.id,
        "title": figure.title,
        "description": figure.description,
        "unit": figure.unit,
        "labels": list(figure.source.labels),
        "window": window or None,
        "since": view.start(window) if window else None,
        "value": reading.value,
        "status": figure.overall(reading),
        "higher_is_worse": figure.worse_when_higher,
        "limit": None
        if limit is None or figure.alert is None
        else {
            "alert": figure.alert.name,
            "warning": limit.warning,
            "critical": limit.critical,
            "higher_is_worse": limit.higher_is_worse,
        },
        "metrics": list(figure.metrics()),
        "by": [
            {"key": list(key), "value": value, "status": figure.status(value)}
            for key, value in reading.by.items()
        ],
    }


def kafka_up(totals: Totals) -> bool | None:
    """Whether Kafka answers every reader of this process (None: it reads no Kafka),
    from the board's totals."""
    up = totals.get("cockpit_kafka_up", {})
    return None if not up else min(up.values()) >= 1


class Api:
    """The endpoints, each a function of the query string to the `data` it answers."""

    def __init__(self, board: Board, history: History, settings: Settings, web: dict[str, Any]):
        self.board, self.history, self.settings, self.web = board, history, settings, web
        self.routes: dict[str, tuple[set[str], Callable[[Query], Any]]] = {
            "summary": (set(), self.summary),
            "history": ({"since"}, self.trend),
            "items": ({"fc", "state", "limit", "offset"}, self.items),
            "alerts": ({"alert", "fc", "limit"}, self.alerts),
            "settings": (set(), self.settings_in_force),
        }

    def answer(self, endpoint: str, query_string: str) -> Any:
        """The data of one endpoint; raises ApiError."""
        if endpoint not in self.routes:
            raise ApiError(404, "not_found", f"no endpoint /api/v1/{endpoint}")
        allowed, handler = self.routes[endpoint]
        return handler(Query(query_string, allowed))

    def _ready(self) -> None:
        if not self.board.ready.is_set():
            raise ApiError(503, "unavailable", "opscockpit is restoring its state")

    def summary(self, _query: Query) -> dict[str, Any]:
        """Every figure now, with its breakdown, colour and thresholds, and the layout."""
        self._ready()
        view = self.history.view()
        figures = [_figure(figure, view) for figure in FIGURES]
        watermark = BY_ID["watermark"].source.read(view).value
        return {
            "now": view.now,
            "watermark": {
                "timestamp": watermark,
                "lag_seconds": None if watermark is None else view.now - watermark,
            },
            "kafka_up": kafka_up(view.totals),
            "figures": figures,
            "tiles": [dataclasses.asdict(tile) for tile in TILES],
            "sample": self.history.latest(),
        }

    def trend(self, query: Query) -> dict[str, Any]:
        """The sampled network value of every figure after `since`, oldest first."""
        self._ready()
        since = query.number("since", 0.0)
        return {"step": self.history.step, "points": self.history.points(since)}

    def items(self, query: Query) -> dict[str, Any]:
        """Items (fc, sku), worst first, narrowed by fc and state, a page of them."""
        self._ready()
        fcs = set(query.many("fc"))
        states = set(query.choices("state", ITEM_STATES))
        limit = query.integer("limit", 100, 1, MAX_LIMIT)
        offset = query.integer("offset", 0, 0, 10**9)
        chosen = [
            item
            for item in self.board.items()
            if (not fcs or item.fc in fcs) and (not states or states.intersection(item.states))
        ]
        return {
            "total": len(chosen),
            "offset": offset,
            "limit": limit,
            "items": [_item(item) for item in chosen[offset : offset + limit]],
        }

    def alerts(self, query: Query) -> dict[str, Any]:
        """The latest alert records of this process, newest first."""
        self._ready()
        names = set(query.choices("alert", ALERT_KINDS))
        fcs = set(query.many("fc"))
        limit = query.integer("limit", 50, 1, MAX_LIMIT)
        chosen = [
            record
            for record in self.board.alerts.newest_first()
            if (not names or record.get("alert") in names) and (not fcs or record.get("fc") in fcs)
        ]
        return {"total": len(chosen), "alerts": chosen[:limit]}

    def settings_in_force(self, _query: Query) -> dict[str, Any]:
        """Settings of this process (durations in seconds) and how it serves HTTP."""
        fields = _plain(self.settings)
        for name in DURATIONS:
            if name in fields:
                fields[f"{name}_seconds"] = fields.pop(name) / 1e6
        return {"settings": fields, "web": self.web}


def _item(item: Item) -> dict[str, Any]:
    return {
        "fc": item.fc,
        "sku": item.sku,
        "on_hand": item.on_hand,
        "demand_per_day": item.demand_per_day,
        "cover_days": item.cover_days,
        "safety_stock": item.safety_stock,
        "states": sorted(item.states, key=ITEM_STATES.index),  # worst first
        "units_by_age": dict(item.units_by_age),
        "as_of": format_time(item.as_of),
    }


def _plain(value: Any, table: bool = False) -> Any:
    """Settings as JSON: dataclasses as objects, fractions as numbers, and tables (fields
    of (name, value) pairs: shifts, per-fc settings) as objects, also when empty."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), str(f.type).startswith(TABLE))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Fraction):
        return float(value)
    if isinstance(value, tuple):
        return {k: _plain(v) for k, v in value} if table else [_plain(v) for v in value]
    return value
