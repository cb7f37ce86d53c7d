"""Helpers of the web tests: HTTP(S) requests with basic auth, and the wall
display's figures worked out again from a /metrics exposition, independently
of flows.web (sums of the samples, and Prometheus' histogram_quantile)."""

from __future__ import annotations

import base64
import json
import math
import socket
import ssl
import threading
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

from tests.reference import Samples

Expected = dict[str, tuple[float | None, dict[tuple[str, ...], float]]]


TRICKLE_BYTES = 50  # sent a byte every 0.2 s by `trickled`: 10 s


def trickled(port: int, start: bytes) -> tuple[bytes, int]:
    """Send `start` to a loopback port, then a byte every 0.2 s; what came back
    before the server closed (b"": nothing) and how many bytes had trickled by
    then (TRICKLE_BYTES: the server waited for all of them)."""
    sent = 0
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(start)

        def trickle() -> None:
            nonlocal sent
            while not stop.wait(0.2) and sent < TRICKLE_BYTES:
                try:
                    conn.send(b"a")
                except OSError:
                    return
                sent += 1

        threading.Thread(target=trickle, daemon=True).start()
        try:
            answer = conn.recv(65536)
        except ConnectionResetError:
            answer = b""
        stop.set()
    return answer, sent


def exchange(base: str, data: bytes, context: ssl.SSLContext | None = None) -> bytes:
    """All the server at `base` (http(s)://host:port) sends back for `data` sent on a
    new connection, until it closes the connection. Over TLS (with `context`), a
    close without TLS's close_notify raises SSLEOFError."""
    host, port = base.partition("://")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        conn = raw
        if context is not None:
            conn = context.wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=False)
        with conn:
            conn.sendall(data)
            return b"".join(iter(lambda: conn.recv(65536), b""))


def fetch(
    url: str,
    user: str | None = None,
    password: str = "",
    context: ssl.SSLContext | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (errors are answers too); a header
    sent twice is one, its values joined by ", " (so that a test sees it)."""
    data = b"x" if method == "POST" else None
    request = urllib.request.Request(url, data, headers or {}, method=method)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as answer:
            return answer.status, _joined(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, _joined(error.headers), error.read()


def _joined(headers: Message) -> dict[str, str]:
    return {name: ", ".join(headers.get_all(name, [])) for name in headers}


def api(base: str, path: str, **auth: Any) -> Any:
    """The `data` of a successful /api/v1/ answer."""
    status, _headers, body = fetch(f"{base}/api/v1/{path}", **auth)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success"
    return answer["data"]


def _by(samples: Samples, name: str, label: str, **where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        named = dict(labels)
        if all(named.get(k) == v for k, v in where.items()):
            out[named[label]] = out.get(named[label], 0.0) + value
    return out


def _total(samples: Samples, name: str) -> float | None:
    series = samples.get(name)
    return sum(series.values()) if series else None


def _ratio(part: dict[str, float], rest: dict[str, float], rest_is_total: bool = False) -> Any:
    def divide(p: float, r: float) -> float | None:
        d = r if rest_is_total else p + r
        return p / d if d > 0 else None

    by = {
        (k,): v
        for k in part.keys() | rest.keys()
        if (v := divide(part.get(k, 0.0), rest.get(k, 0.0))) is not None
    }
    return divide(sum(part.values()), sum(rest.values())), by


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile on (le, cumulative count) pairs, as Prometheus computes it."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    for i, (bound, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(bound):
                return buckets[-2][0]
            low, below = (0.0, 0.0) if i == 0 else buckets[i - 1]
            return low + (bound - low) * (rank - below) / (count - below)
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def _quantile(samples: Samples, name: str, label: str) -> Any:
    rows: dict[str, dict[float, float]] = {}
    for labels, value in samples.get(f"{name}_bucket", {}).items():
        named = dict(labels)
        row = rows.setdefault(named[label], {})
        le = float(named["le"])
        row[le] = row.get(le, 0.0) + value
    network: dict[float, float] = {}
    for row in rows.values():
        for le, count in row.items():
            network[le] = network.get(le, 0.0) + count
    by = {(k,): v for k, row in rows.items() if (v := quantile(0.9, list(row.items()))) is not None}
    return (quantile(0.9, list(network.items())) if network else None), by


def _gauge(samples: Samples, name: str, label: str, total: bool = True) -> Any:
    by = {(k,): v for k, v in _by(samples, name, label).items()}
    return (_total(samples, name) if total else None), by


def _none_is_0(value: float | None, counting: bool) -> float | None:
    """A counter without a series: no data, as Prometheus has none, until the job has
    accepted an event; then 0 (its labels are an open set: no series until counted)."""
    return 0.0 if value is None and counting else value


def _count(by: dict[str, float], counting: bool) -> Any:
    """A counter's total and values."""
    total = sum(by.values()) if by else None
    return _none_is_0(total, counting), {(k,): v for k, v in by.items()}


def expected_figures(samples: Samples) -> Expected:
    """The figures of a process younger than every window (values since the start)."""
    on_time = _by(samples, "cockpit_orders_shipped_total", "fc", on_time="true")
    breaches = _by(samples, "cockpit_ship_sla_breaches_total", "fc")
    late = _by(samples, "cockpit_late_deliveries_total", "region")
    delivered = _by(samples, "cockpit_deliveries_total", "region", on_time="true")
    rejected = {"": _total(samples, "cockpit_events_rejected_total") or 0.0}
    events = _total(samples, "cockpit_events_total")
    accepted = {"": events or 0.0}
    counting = bool(events)
    stages = {
        (dict(k)["fc"], dict(k)["stage"]): v
        for k, v in samples.get("cockpit_orders_in_stage", {}).items()
    }
    watermark = samples.get("cockpit_watermark_timestamp_seconds", {}).get(())
    return {
        "ship_sla_compliance": _ratio(on_time, breaches),
        "ship_sla_breaches": _count(breaches, counting),
        "orders_past_ship_promise": _gauge(samples, "cockpit_orders_past_ship_promise", "fc"),
        "orders_awaiting_shipment": _gauge(samples, "cockpit_orders_awaiting_shipment", "fc"),
        "late_deliveries": _ratio(late, delivered),
        "late_delivery_count": _count(late, counting),
        "orders_past_delivery_promise": _gauge(
            samples, "cockpit_orders_past_delivery_promise", "region"
        ),
        "dock_to_stock_p90": _quantile(samples, "cockpit_dock_to_stock_seconds", "fc"),
        "receipts_awaiting_stow": _gauge(samples, "cockpit_receipts_awaiting_stow", "fc"),
        "sell_through": _gauge(samples, "cockpit_sell_through_ratio", "fc", total=False),
        "stock_cover": _gauge(samples, "cockpit_stock_cover_seconds", "fc", total=False),
        "units_on_hand": _gauge(samples, "cockpit_units_on_hand", "fc"),
        "orders_in_stage": (sum(stages.values()) if stages else None, stages),
        "page_load_p90": _quantile(samples, "cockpit_page_load_seconds", "page"),
        "dead_letters": (_ratio(rejected, accepted)[0], {}),
        "events": (events, {}),
        "late_events": (_none_is_0(_total(samples, "cockpit_events_late_total"), counting), {}),
        "duplicate_events": (
            _none_is_0(_total(samples, "cockpit_events_duplicate_total"), counting),
            {},
        ),
        "watermark": (watermark, {}),
    }


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def figure_differences(summary: dict[str, Any], samples: Samples) -> list[str]:
    """Where the summary's figures differ from the ones the exposition gives (figures
    whose window has started, and the lead's not yet declared ones, are not compared)."""
    figures = {figure["id"]: figure for figure in summary["figures"]}
    differences = []
    for name, (value, by) in expected_figures(samples).items():
        figure = figures[name]
        if figure["since"] is not None:
            continue
        shown = {tuple(row["key"]): row["value"] for row in figure["by"]}
        if not _close(figure["value"], value):
            differences.append(f"{name}: {figure['value']} != {value}")
        if shown.keys() != by.keys() or not all(_close(shown[k], by[k]) for k in by):
            differences.append(f"{name} by {figure['labels']}: {shown} != {by}")
    return differences
