"""The JSON API under /api/v1/ and the probes, served in-process on the board of a
replayed simulated day: every endpoint against its JSON Schema, the figures
against the exposition, items paging and filters, bad parameters, thresholds."""

from __future__ import annotations

import gzip
import http.client
import json
import operator
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flows.cli import build_parser
from flows.cockpit import rules
from flows.exposition import ALERTS_KEPT, Board, render
from flows.kpisettings import KpiSettings
from flows.ledger import Ledger
from flows.live import end_grace, kafka_cluster
from flows.metrics import BY_NAME
from flows.published import ITEM_STATES, Item, RecentAlerts
from flows.replay import replay
from flows.runtime.pipeline import SOURCE_METRICS
from flows.settings import Settings
from flows.web import server as server_module
from flows.web.api import MAX_LIMIT
from flows.web.figures import BY_ID, TILES, WORST
from flows.web.schemas import api_schemas
from flows.web.server import serve
from tests.kafka_broker import free_port
from tests.processes import opscockpit, stderr_lines, wait_for
from tests.reference import parse_exposition
from tests.web import (
    TRICKLE_BYTES,
    api,
    exchange,
    expected_figures,
    fetch,
    figure_differences,
    trickled,
)

NOW = 1_800_000_000.0
KINDS = ("ship_sla_breach", "late_delivery")  # the alerts the shards write to the sink
SETTINGS = Settings(kpi=KpiSettings(service_level=Fraction(9, 10)))
# Metrics of contract §4 the lead's families will declare; the page reads them by name.
EXPECTED = {
    "cockpit_stage_backlog",
    "cockpit_bottleneck",
    "cockpit_skus_out_of_stock",
    "cockpit_skus_at_risk",
    "cockpit_cancellation_ratio",
    "cockpit_return_ratio",
    "cockpit_recommendation_click_through_ratio",
    "cockpit_recommendations_conversions_total",
}


def item(fc: str, sku: str, on_hand: int, demand: float, *states: str) -> Item:
    cover = on_hand / demand if demand else None
    return Item(fc, sku, on_hand, demand, cover, 3.0, tuple(sorted(states)), 0, {"0-90": on_hand})


ITEMS = [
    item("FC-A", "excess-1", 500, 0.0, "excess"),
    item("FC-A", "risk-slow", 6, 1.0, "at_risk"),
    item("FC-B", "oos-high", 0, 9.0, "out_of_stock", "below_safety_stock"),
    item("FC-B", "risk-fast", 2, 1.0, "at_risk", "below_safety_stock"),
    item("FC-A", "oos-low", -1, 2.0, "out_of_stock"),
    item("FC-B", "healthy", 50, 1.0),
    item("FC-A", "oos-zero", 0, 2.0, "out_of_stock"),
]
# Worst first: out of stock by least cover, then most demand; then at risk by cover; ...
WORST_FIRST = ["oos-low", "oos-high", "oos-zero", "risk-fast", "risk-slow", "excess-1", "healthy"]


@dataclass
class Served:
    board: Board
    base: str
    alerts_file: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A replayed simulated day on a board served in-process, its clock stopped."""
    directory = tmp_path_factory.mktemp("web-api")
    events, alerts = directory / "day.jsonl", directory / "alerts.jsonl"
    opscockpit("simulate", "--out", str(events), "--hours", "30", "--seed", "3")
    board = replay(Settings(), str(events), alerts=alerts)
    port = free_port()
    server = serve(board, "127.0.0.1", port, settings=SETTINGS, clock=lambda: NOW)
    yield Served(board, f"http://127.0.0.1:{port}", alerts)
    server.shutdown()


def validate(name: str, answer: object) -> None:
    Draft202012Validator(api_schemas()[name]).validate(answer)


@pytest.mark.parametrize(
    "path",
    [
        *("summary", "history", "items", "alerts", "settings", "history?since=0"),
        *("history?since=1796197000.25", "history?since=-1"),
        "items?limit=0100&offset=0000000000",
        "items?limit=00001&offset=00000000001",  # leading zeros, as 01 was: were refused
        # Empty fields are nothing, as in Prometheus' API.
        *("items?limit=5&", "items?&limit=5&&offset=0", "alerts?&", "summary?&&"),
    ],
)
def test_every_endpoint_answers_by_its_schema(served, path):
    status, headers, body = fetch(f"{served.base}/api/v1/{path}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    validate(path.split("?")[0], json.loads(body))


@pytest.mark.parametrize(
    "path", ["/api/v1/summary", "/api/v1/items?limit=100", "/static/cockpit.js", "/metrics"]
)
def test_an_answer_is_gzipped_for_a_client_that_accepts_it(served, path):
    """The page's poll went out as it was (a scrape was gzipped): ~20 KB a summary."""
    url = served.base + path
    status, plain_headers, plain = fetch(url, headers={"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in plain_headers
    status, headers, packed = fetch(url, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == plain_headers["Vary"] == "Accept-Encoding"
    assert headers["Content-Type"] == plain_headers["Content-Type"]
    assert len(packed) < len(plain) / 2 and int(headers["Content-Length"]) == len(packed)
    assert gzip.decompress(packed) == plain  # the board's clock is stopped
    _status, head_headers, nothing = fetch(url, method="HEAD", headers={"Accept-Encoding": "gzip"})
    assert nothing == b"" and head_headers["Content-Encoding"] == "gzip"
    assert head_headers["Content-Length"] == headers["Content-Length"]


def test_a_short_answer_is_not_gzipped(served):
    status, headers, body = fetch(f"{served.base}/-/healthy", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "Content-Encoding" not in headers
    assert body == b"opscockpit is healthy\n"


def test_the_summary_is_the_exposition(served):
    summary = api(served.base, "summary")
    samples = parse_exposition(render(served.board).decode())
    assert figure_differences(summary, samples) == []
    compared = {f["id"] for f in summary["figures"] if f["since"] is None}
    assert compared >= set(expected_figures(samples)), "the clock stands still: nothing started"
    by_id = {f["id"]: f for f in summary["figures"]}
    assert by_id["ship_sla_compliance"]["value"] is not None
    assert by_id["dock_to_stock_p90"]["by"], "a day has completed receipts"
    assert summary["watermark"]["lag_seconds"] == NOW - summary["watermark"]["timestamp"]


def test_figures_not_declared_yet_say_no_data_and_every_name_is_known(served):
    summary = api(served.base, "summary")
    for figure in summary["figures"]:
        declared = all(name in BY_NAME for name in figure["metrics"])
        assert declared or set(figure["metrics"]) & EXPECTED, figure["metrics"]
        if not declared:
            assert figure["value"] is None and figure["by"] == [] and figure["status"] == "none"
    assert {f for t in TILES for f in t.figures} <= set(BY_ID)


def test_every_figure_says_which_way_is_worse_and_its_value_s_unit(served):
    """So that the page lists every breakdown worst first (the SKUs tile listed its
    fcs alphabetically, and cut the rest: an fc with 9 stockouts shown, those with
    10 hidden), and a reader of the API knows what a value is (days of cover was
    labelled days and valued in seconds)."""
    figures = {f["id"]: f for f in api(served.base, "summary")["figures"]}
    for name in ("skus_out_of_stock", "skus_at_risk", "page_load_p90", "stage_backlog"):
        assert figures[name]["higher_is_worse"] is True, name
    for name in ("stock_cover", "click_through", "conversion", "ship_sla_compliance"):
        assert figures[name]["higher_is_worse"] is False, name
    for name in ("units_on_hand", "sell_through", "events", "watermark"):
        assert figures[name]["higher_is_worse"] is None, name
    cover = figures["stock_cover"]
    assert cover["unit"] == "seconds" and cover["metrics"] == ["cockpit_stock_cover_seconds"]
    assert {f["unit"] for f in figures.values()} == {"ratio", "seconds", "count", "timestamp"}


def test_a_figure_with_an_alert_takes_which_way_is_worse_from_its_limit_alone():
    """Declared once: a second `higher_is_worse` beside the limit could disagree."""
    with pytest.raises(ValueError, match="ship_sla_compliance: its alert's limit says"):
        replace(BY_ID["ship_sla_compliance"], higher_is_worse=True)


def test_every_threshold_is_the_one_of_the_alert_rules(served):
    """The page colours by the `Limit` of the generated alert rule: same numbers,
    same comparison (>= for higher-is-worse, < otherwise) at the very levels."""
    summary = api(served.base, "summary")
    by_alert = {alert.name: alert for alert in rules.ALERTS}
    limited = [f for f in summary["figures"] if f["limit"] is not None]
    assert {f["limit"]["alert"] for f in limited} >= {
        "ShipSlaBreachRateHigh",
        "LateDeliveryRateHigh",
        "DockToStockSlow",
        "OrdersPastShipPromise",
    }
    for figure in limited:
        limit = by_alert[figure["limit"]["alert"]].limit
        assert limit is not None and BY_ID[figure["id"]].alert is by_alert[figure["limit"]["alert"]]
        assert (figure["limit"]["warning"], figure["limit"]["critical"]) == (
            limit.warning,
            limit.critical,
        )
        assert figure["limit"]["higher_is_worse"] == limit.higher_is_worse
        assert figure["higher_is_worse"] == limit.higher_is_worse  # one way for every figure
        for row in figure["by"]:
            assert row["status"] == limit.severity(row["value"])
        # Per fc (region), the rule fires where one of them is over: the worst of theirs.
        worst = min((row["status"] for row in figure["by"]), key=WORST.index, default="none")
        if figure["labels"]:
            assert figure["status"] == worst
        elif figure["value"] is not None:
            assert figure["status"] == limit.severity(figure["value"])
        for value in (limit.warning, limit.critical):
            for near in (value - 1e-9, value, value + 1e-9):
                assert limit.severity(near) == rule_severity(limit, near)


def rule_severity(limit: rules.Limit, value: float) -> str:
    """The severity whose generated PromQL condition (`v >= 25`, `v < 0.95`) holds."""
    compare = {">=": operator.ge, "<": operator.lt}
    for severity, level in (("critical", limit.critical), ("warning", limit.warning)):
        _value, op, _level = limit.condition("v", level).split()
        if compare[op](value, level):
            return severity
    return "ok"


def test_recent_alerts_are_the_replay_s_alert_records_newest_first(served):
    written = [json.loads(line) for line in served.alerts_file.read_text().splitlines()]
    data = api(served.base, "alerts?limit=1000")
    shown = data["alerts"]
    # The shards' alerts as the alerts sink gets them, and the combine stage's too.
    assert {"ship_sla_breach", "late_delivery", "stockout"} <= {a["alert"] for a in shown}
    orders = {kind: [a for a in written if a["alert"] == kind][-ALERTS_KEPT:] for kind in KINDS}
    for kind in KINDS:
        assert [a for a in shown if a["alert"] == kind] == orders[kind][::-1]
    assert data["total"] == len(shown) == sum(min(n, ALERTS_KEPT) for n in alert_counts(served))
    late = api(served.base, "alerts?alert=late_delivery&limit=3")
    assert late["alerts"] == orders["late_delivery"][::-1][:3]
    fc = written[-1]["fc"]
    at_fc = api(served.base, f"alerts?fc={fc}&alert=stockout&alert=ship_sla_breach&limit=1000")
    assert at_fc["alerts"] and {a["fc"] for a in at_fc["alerts"]} == {fc}
    assert {a["alert"] for a in at_fc["alerts"]} == {"stockout", "ship_sla_breach"}


def alert_counts(served: Served) -> list[float]:
    """Alerts of each kind, as the board's counters have them."""
    samples = parse_exposition(render(served.board).decode())
    names = ["cockpit_ship_sla_breaches_total", "cockpit_late_deliveries_total"]
    names += ["cockpit_stockouts_total", "cockpit_demand_spikes_total", "cockpit_bottlenecks_total"]
    return [sum(samples.get(name, {}).values()) for name in names]


def test_an_alert_written_again_is_kept_once():
    alerts = RecentAlerts(2)
    for key, kind in (("a|1", "x"), ("a|2", "x"), ("b|1", "y"), ("a|1", "x"), ("a|3", "x")):
        alerts.add(key, {"alert": kind, "key": key})
    assert [r["key"] for r in alerts.newest_first()] == ["a|3", "a|1", "b|1"]


@pytest.fixture(scope="module")
def items_only() -> Iterator[str]:
    """A board with the hand-made ITEMS alone."""
    board = Board()
    board.ready.set()
    board.publish_items("test", lambda: list(ITEMS))
    port = free_port()
    server = serve(board, "127.0.0.1", port, settings=SETTINGS, clock=lambda: NOW)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_the_replayed_items_are_the_sku_gauges(served):
    """Items the inventory family publishes: one per tracked item, states as counted."""
    samples = parse_exposition(render(served.board).decode())
    total = api(served.base, "items?limit=1")["total"]
    assert total == sum(samples["cockpit_skus_tracked"].values()) > 0
    shown = [
        item
        for offset in range(0, total, MAX_LIMIT)
        for item in api(served.base, f"items?limit={MAX_LIMIT}&offset={offset}")["items"]
    ]
    assert len({(i["fc"], i["sku"]) for i in shown}) == total
    for state in ITEM_STATES:
        by_fc: dict[tuple[tuple[str, str], ...], int] = {}
        for i in shown:
            if state in i["states"]:
                key = (("fc", i["fc"]),)
                by_fc[key] = by_fc.get(key, 0) + 1
        gauge = samples[f"cockpit_skus_{state}"]
        assert by_fc == {k: v for k, v in gauge.items() if v}, state
    assert sum(i["states"] == ["out_of_stock"] for i in shown) > 0


def test_items_are_paged_worst_first(items_only):
    base = items_only
    everything = api(base, "items")
    assert everything["total"] == len(ITEMS)
    assert [i["sku"] for i in everything["items"]] == WORST_FIRST
    pages = [api(base, f"items?limit=3&offset={o}") for o in (0, 3, 6, 9)]
    assert [i["sku"] for p in pages for i in p["items"]] == WORST_FIRST
    assert [len(p["items"]) for p in pages] == [3, 3, 1, 0]
    assert api(base, "items?limit=3&offset=0&") == pages[0]  # a trailing & is nothing
    assert all(p["total"] == len(ITEMS) and p["limit"] == 3 for p in pages)
    oos_at_b = api(base, "items?fc=FC-B&state=out_of_stock&state=at_risk")
    assert [i["sku"] for i in oos_at_b["items"]] == ["oos-high", "risk-fast"]
    first = everything["items"][0]
    assert first == {
        "fc": "FC-A",
        "sku": "oos-low",
        "on_hand": -1,
        "demand_per_day": 2.0,
        "cover_days": -0.5,
        "safety_stock": 3.0,
        "states": ["out_of_stock"],
        "units_by_age": {"0-90": -1},
        "as_of": "1970-01-01T00:00:00Z",
    }
    assert set(ITEM_STATES) == {s for i in ITEMS for s in i.states}
    # An item's states worst first (records list them sorted, as the contract says).
    states = {i["sku"]: i["states"] for i in everything["items"]}
    assert states["oos-high"] == ["out_of_stock", "below_safety_stock"]
    assert states["risk-fast"] == ["at_risk", "below_safety_stock"]


def test_the_board_sorts_items_again_only_when_a_source_gives_another_list():
    """Each poll of each wall display sorted every item: now only a new list is."""
    board = Board()
    first, second = list(ITEMS[:4]), list(ITEMS[4:])
    board.publish_items("a", lambda: first)
    board.publish_items("b", lambda: second)
    ranked = board.items()
    assert [i.sku for i in ranked] == WORST_FIRST
    assert board.items() is ranked
    second = [*second, item("FC-C", "oos-new", -9, 1.0, "out_of_stock")]  # the least cover
    assert [i.sku for i in board.items()] == ["oos-new", *WORST_FIRST]


@pytest.fixture
def empty():
    """A server of an empty board, ready: the server and its port."""
    board = Board()
    board.ready.set()
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    yield server, port
    server.shutdown()


def test_no_published_items_is_an_empty_page(empty):
    _server, port = empty
    data = api(f"http://127.0.0.1:{port}", "items?state=at_risk")
    assert data == {"total": 0, "offset": 0, "limit": 100, "items": []}
    summary = api(f"http://127.0.0.1:{port}", "summary")
    assert all(f["value"] is None and f["by"] == [] for f in summary["figures"])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("items?limit=0", 400),
        ("items?limit=1001", 400),
        ("items?limit=ten", 400),
        ("items?limit=-1", 400),
        ("items?offset=-1", 400),
        ("items?offset=1.5", 400),
        ("items?limit=1&limit=2", 400),
        ("items?state=sold_out", 400),
        ("items?colour=red", 400),
        ("items?&&=", 400),
        ("alerts?limit=0", 400),
        ("alerts?limit=1001", 400),
        # Digits str.isdigit() takes: superscript two, Arabic-Indic three, full-width five.
        ("items?limit=%C2%B2", 400),
        ("items?offset=%C2%B2", 400),
        ("alerts?limit=%C2%B2", 400),
        ("items?limit=%D9%A3", 400),
        ("items?offset=%EF%BC%95", 400),
        ("alerts?limit=%EF%BC%95", 400),
        ("items?offset=" + "9" * 5000, 400),  # beyond int()'s digits
        ("alerts?limit=+5", 400),
        ("history?since=yesterday", 400),
        ("history?since=nan", 400),
        ("history?since=inf", 400),
        ("history?since=1_796_525_000", 400),
        ("history?since=%D9%A3", 400),
        ("history?since=1e9", 400),
        ("history?since=+1", 400),
        ("history?since=" + "9" * 400, 400),
        ("summary?verbose=1", 400),
        ("settings?x", 400),
        ("items?limit=5&x", 400),
        ("items?limit=5&&=", 400),
        ("alerts?alert=ship_sla_breach&alert=stock_out", 400),  # a misspelt kind
        ("nothing", 404),
        ("", 404),
    ],
)
def test_bad_requests_get_a_json_error(served, path, status):
    code, headers, body = fetch(f"{served.base}/api/v1/{path}")
    assert code == status and headers["Content-Type"] == "application/json"
    assert headers["Server"] == "opscockpit"  # once: joined, a second would show
    answer = json.loads(body)
    validate("error", answer)
    assert answer["errorType"] == ("bad_data" if status == 400 else "not_found")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-A: " + b"b" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + (b"X-A: " + b"b" * 1000 + b"\r\n") * 66 + b"\r\n", 431),
        (b'GET / HTTP/9"x\r\n\r\n', 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /nope\r\n\r\n", 400),  # HTTP/0.9: answered with a bare body, no status
        (b"GET /nope\r\n", 400),  # HTTP/0.9 has no headers: the server waited for them
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),  # HTTP Version Not Supported
        (b"GET /metrics HTTP/2\r\n\r\n", 505),  # as HTTP/2 is written: was a 400
        (b"GET /metrics HTTP/0.9\r\n\r\n", 400),  # was answered with a bare body
        (b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\nX-A: b\r\n\r\n", 400),  # was served
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 3.2): was served
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\x1f\r\n\r\n", 400),  # str.strip() took it off
        (b"GET / HTTP/1.1\r\nHost: \xa0a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-A: b\rHost: h\r\n\r\n", 400),  # a bare CR ended a line
        (b"GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n", 400),
        # RFC 9112 5.2 and 6: an obs-fold was refused as a second Host, and what
        # follows was answered 200 (no route reads a body)
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0, 5\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
        ),
    ],
)
def test_requests_the_server_cannot_read_get_a_json_error(served, request_bytes, status):
    """Refused before the app sees them, yet answered like every other error, and
    with no software versions (wsgiref's Server header named Python's)."""
    answer = exchange(served.base, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert status_line.split()[1] == str(status), status_line
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(body))
    assert [line for line in lines if line.startswith("Server:")] == ["Server: opscockpit"]
    error = json.loads(body)
    validate("error", error)
    assert error["errorType"] == "bad_data"


def test_a_server_shut_down_ends_its_kept_alive_connections():
    """A page's kept-alive connection went on getting answers from a server shut
    down (socketserver stops accepting, not serving), so the page never went stale."""
    board = Board()
    board.ready.set()
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/-/healthy")
        assert conn.getresponse().read() == b"opscockpit is healthy\n"
        server.shutdown()
        conn.request("GET", "/-/healthy")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()
        server.server_close()


def test_one_connection_carries_request_after_request(served):
    """HTTP/1.1 keep-alive: the page's three requests a poll, and scrapes, reuse one
    connection (wsgiref answered HTTP/1.0 and closed each)."""
    host, port = served.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        answers, sockets = [], set()
        for method, path in [
            ("GET", "/api/v1/summary"),
            ("GET", "/api/v1/alerts?limit=8"),
            ("HEAD", "/metrics"),
            ("GET", "/metrics"),
            ("GET", "/api/v1/nope"),
            ("GET", "/"),
        ]:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            assert len(body) == (0 if method == "HEAD" else int(response.headers["Content-Length"]))
            answers.append((response.version, response.status, response.headers["Connection"]))
            sockets.add(id(conn.sock))
        assert answers == [(11, 200, None)] * 4 + [(11, 404, None), (11, 200, None)]
        assert len(sockets) == 1 and conn.sock is not None
    finally:
        conn.close()


HEALTHY = b"GET /-/healthy HTTP/1.1\r\nHost: h\r\n"  # a request's line and Host


@pytest.mark.parametrize(
    ("middle", "answers"),
    [
        (HEALTHY + b"Connection: close\r\n\r\n", 3),
        (HEALTHY + b"Connection: TE, close\r\nTE: trailers\r\n\r\n", 3),
        (HEALTHY + b"Connection: keep-alive\r\nConnection: close\r\n\r\n", 3),
        (b"GET /-/healthy HTTP/1.0\r\n\r\n", 3),
        (b"POST /-/healthy HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", 3),  # a 405
        (HEALTHY + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 3),
        (b"GET /-/healthy HTTP/1.1 x\r\n\r\n", 3),  # a 400
        (HEALTHY + b"Content-Length: 0\r\n\r\n", 5),  # no body: goes on
        (HEALTHY + b"Connection: keep-alive\r\n\r\n", 5),
    ],
)
def test_a_connection_ends_where_its_client_or_its_last_request_says(served, middle, answers):
    """Pipelined requests are answered in turn; the connection closes after one that
    asks to (`close` among the Connection options, in any of its headers), one of
    HTTP/1.0, one with a body (which nothing reads), or a bad one."""
    healthy, closing = HEALTHY + b"\r\n", HEALTHY + b"Connection: close\r\n\r\n"
    stream = exchange(served.base, healthy + healthy + middle + healthy + closing)
    assert stream.count(b"HTTP/1.") == answers
    assert stream.count(b"HTTP/1.1 200 OK\r\n") >= answers - 1  # but the middle one
    assert stream.count(b"\r\nConnection: close\r\n") == 1


def listen_overflows() -> int:
    """Connections this host's kernel dropped for a full accept queue (TcpExt)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    raise AssertionError("no TcpExt counters")


def test_a_burst_of_new_connections_fits_the_accept_queue(empty):
    """socketserver's queue held 5: a burst (a room of displays reloading, scrapers
    after a restart) overflowed it, and each dropped connection waited a second or
    more for the kernel to retry."""
    _server, port = empty
    before = listen_overflows()
    with ThreadPoolExecutor(100) as pool:
        opened = list(
            pool.map(lambda _: socket.create_connection(("127.0.0.1", port), 10), range(100))
        )
    for conn in opened:
        conn.close()
    assert listen_overflows() == before


def waiting(server: server_module.Server, settled: float = 0.0) -> tuple[int, int]:
    """Connections waiting on their client that may lose their place now (and have
    for `settled` s), and those that may later (mid-request or mid-answer, within
    SLOW_CLIENT_S)."""
    now = time.monotonic()
    sinces = [since for _client, since, _idle in list(server.waiting.values())]
    return sum(since <= now - settled for since in sinces), sum(since > now for since in sinces)


def started_requests(
    server: server_module.Server, count: int, source: str = "127.0.0.1"
) -> list[socket.socket]:
    """Connections from `source` that each began a request and never end it, once
    the server reads them."""
    before = waiting(server)[1]
    opened = []
    for _ in range(count):
        conn = socket.create_connection(server.server_address, 10, source_address=(source, 0))
        conn.sendall(b"GET /-/healthy HTTP/1.1\r\n")
        opened.append(conn)
    wait_for(lambda: waiting(server)[1] == before + count, 30, "the requests read", 0.01)
    return opened


def idle_from(server: server_module.Server, *sources: str) -> list[socket.socket]:
    """Connections from `sources` that send nothing, once the server waits on each."""
    opened: list[socket.socket] = []
    for source in sources:
        opened.append(socket.create_connection(server.server_address, 10, (source, 0)))
        wait_for(lambda: waiting(server)[0] == len(opened), 30, "the connection idle", 0.01)
    return opened


def answer_from(port: int, source: str = "127.0.0.1") -> bytes:
    """The start of the answer to a request on a new connection from `source`;
    b"" when the connection is closed without one."""
    with socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0)) as conn:
        conn.sendall(HEALTHY + b"\r\n")
        return received(conn)


def received(conn: socket.socket) -> bytes:
    """What the server sends next; b"" once it closed the connection."""
    try:
        return conn.recv(65536)
    except ConnectionResetError:  # closed, the request unread
        return b""


def ended(conn: socket.socket) -> bool:
    """Whether the server closed the connection without (more of) an answer."""
    return received(conn) == b""


@pytest.fixture
def capped(empty, monkeypatch):
    """A server that serves 3 connections at once, 2 from one address, and lets a
    slow client keep its place for a minute: the server and its port."""
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(server_module, "MAX_PER_ADDRESS", 2)
    monkeypatch.setattr(server_module, "SLOW_CLIENT_S", 60.0)
    return empty


def test_connections_past_the_cap_are_closed_and_the_rest_served(capped):
    """Each open connection holds a thread, and nothing bounded them: past
    MAX_CONNECTIONS, with every connection busy, a new one is closed at once."""
    server, port = capped
    busy = started_requests(server, 1) + started_requests(server, 2, "127.0.0.2")
    try:
        assert server.connections == 3
        assert answer_from(port, "127.0.0.3") == b""
        busy.pop().close()
        wait_for(lambda: server.connections == 2, 30, "the closed one counted out", 0.01)
        assert fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    finally:
        for conn in busy:
            conn.close()


def test_a_new_connection_takes_the_place_of_the_longest_idle(capped):
    """Connections that only wait for a request (kept alive, or never used) locked
    every other client out for 30 s: past the cap, the one idle longest is closed
    for a client that holds fewer."""
    server, port = capped
    idle = idle_from(server, "127.0.0.1", "127.0.0.1", "127.0.0.2")
    try:
        assert answer_from(port, "127.0.0.3").startswith(b"HTTP/1.1 200 ")
        assert ended(idle[0])  # the oldest was closed for it
        assert_served(idle[1:])  # the others wait on
    finally:
        for conn in idle:
            conn.close()


def assert_served(connections: list[socket.socket]) -> None:
    """Each connection is still open and answers a request."""
    for conn in connections:
        conn.sendall(HEALTHY + b"\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_clients_holding_one_connection_each_do_not_take_each_other_s(capped):
    """Taking the place of a client's only connection for one that holds none only
    swapped which client was locked out (a kept-alive display lost its connection
    to each passer-by under a flood)."""
    server, port = capped
    idle = idle_from(server, "127.0.0.1", "127.0.0.2", "127.0.0.3")
    try:
        assert answer_from(port, "127.0.0.4") == b""
        assert_served(idle)
    finally:
        for conn in idle:
            conn.close()


def test_one_address_cannot_take_every_connection(capped):
    """Past its share of the connections, an address's new connection takes the place
    of its own longest idle one, or is closed; other addresses are still served."""
    server, port = capped
    idle = idle_from(server, "127.0.0.2")
    busy = started_requests(server, 1, "127.0.0.2")
    try:
        assert server.by_client["127.0.0.2"] == 2
        busy += started_requests(server, 1, "127.0.0.2")  # its own idle one made room
        assert ended(idle[0])
        wait_for(lambda: server.connections == 2, 30, "the idle one counted out", 0.01)
        assert answer_from(port, "127.0.0.2") == b""  # at its share, none idle
        assert fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200  # the third connection
    finally:
        for conn in idle + busy:
            conn.close()


def test_a_client_slow_to_send_its_request_loses_its_place(capped, monkeypatch):
    """Connections that sent a byte of a request and stopped were never closed for a
    new one: a few addresses trickling bytes locked every other client out. The
    place taken is that of the client holding the most connections."""
    server, port = capped
    monkeypatch.setattr(server_module, "SLOW_CLIENT_S", 0.5)
    busy = started_requests(server, 1) + started_requests(server, 2, "127.0.0.2")
    try:
        wait_for(lambda: waiting(server)[0] == 3, 30, "the requests slow", 0.01)
        assert answer_from(port, "127.0.0.3").startswith(b"HTTP/1.1 200 ")
        assert ended(busy[1])  # the older of 127.0.0.2's two was closed for it
        wait_for(lambda: server.connections == 2, 30, "it counted out", 0.01)
        assert server.by_client == {"127.0.0.1": 1, "127.0.0.2": 1}
    finally:
        for conn in busy:
            conn.close()


def test_a_client_with_many_connections_never_takes_the_few_of_another(capped, monkeypatch):
    """The place was taken from the client holding the most connections that had one
    to give: with its own all mid-request, a flooding client took another's only
    (kept-alive) connection."""
    server, port = capped
    monkeypatch.setattr(server_module, "MAX_PER_ADDRESS", 3)
    kept = idle_from(server, "127.0.0.9")
    busy = started_requests(server, 2, "127.0.0.2")
    try:
        assert answer_from(port, "127.0.0.2") == b""  # its own are all busy
        assert_served(kept)
        assert server.by_client == {"127.0.0.9": 1, "127.0.0.2": 2}
    finally:
        for conn in kept + busy:
            conn.close()


def test_answers_are_not_held_back_for_the_client_s_acknowledgement(empty, monkeypatch):
    """An answer goes out in two writes: under Nagle's algorithm the second waited
    for the client's delayed ACK, ~40 ms for each request on a kept-alive connection."""
    server, port = empty
    nodelay: list[int] = []  # of each connection accepted
    get_request = server.get_request

    def recorded() -> tuple[socket.socket, Any]:
        connection, address = get_request()
        nodelay.append(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return connection, address

    monkeypatch.setattr(server, "get_request", recorded)
    assert fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    assert nodelay == [1]


def pipelined_unread(port: int, count: int = 20_000) -> socket.socket:
    """A connection that sends `count` requests for the page and reads no answer."""
    conn = socket.create_connection(("127.0.0.1", port), 10)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * count)
    return conn


def test_a_client_slow_to_take_its_answers_loses_its_place(capped, monkeypatch):
    """A client that pipelined thousands of requests and read an answer now and then
    held its connection (and thread) for as long as it liked."""
    server, port = capped
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(server_module, "SLOW_CLIENT_S", 0.5)
    with pipelined_unread(port):
        # Until the client's buffers are full, each answer's write ends and the next
        # one waits anew: on a busy machine a write could still end after 0.5 s.
        wait_for(lambda: waiting(server, 2.0)[0] == 1, 30, "an answer waiting to be read", 0.01)
        assert fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200
        wait_for(lambda: server.connections == 0, 30, "the slow reader closed", 0.01)


def test_a_client_that_stops_reading_prints_no_traceback(empty, monkeypatch, capfd):
    """Each connection whose answer timed out printed a whole traceback: any client
    could fill the log."""
    server, port = empty
    monkeypatch.setattr(server_module, "TIMEOUT_S", 0.5)
    with pipelined_unread(port):
        wait_for(lambda: server.connections == 1, 30, "the connection served", 0.01)
        wait_for(lambda: server.connections == 0, 30, "its answer timed out", 0.01)
    assert "Traceback" not in capfd.readouterr().err


def test_empty_lines_before_a_request_are_skipped(served):
    """RFC 9112 2.2: a server should ignore at least one empty line before a request
    line (some clients send one after a request's body); the connection was closed."""
    answer = exchange(
        served.base, b"\r\n\nGET /-/healthy HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


@pytest.mark.parametrize(
    ("host", "client"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),  # IPv4 on a dual-stack socket
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_an_ipv6_client_is_its_64(host, client):
    """A host commonly has a whole IPv6 /64 to pick addresses from: counted per
    address, one client had as many shares of the connections as it liked."""
    assert server_module.client_key(host) == client


def test_a_connection_with_bytes_unread_or_closed_meanwhile_keeps_its_place():
    """`_make_room` skips an idle connection whose request has come (or whose thread
    closed it meanwhile: polling a closed socket raised in the accept loop)."""
    mine, theirs = socket.socketpair()
    with theirs:
        assert not server_module.unread(mine)
        theirs.sendall(b"G")
        assert server_module.unread(mine)
        mine.close()
        assert server_module.unread(mine)


OUT_OF_FILES = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from flows.exposition import Board
from flows.web.server import serve
board = Board()
board.ready.set()
serve(board, "127.0.0.1", int(sys.argv[1]))
print("serving", flush=True)
time.sleep(60)
"""


def test_a_server_out_of_file_descriptors_waits_instead_of_spinning():
    """With every descriptor in use, accept fails at once while connections wait:
    the accept loop used a whole core until one was freed."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_FILES, str(port)], stdout=subprocess.PIPE, text=True
    )
    held: list[socket.socket] = []
    try:
        assert child.stdout is not None and child.stdout.readline() == "serving\n"
        for _ in range(80):  # more than its 64 descriptors
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(HEALTHY + b"\r\n")
            held.append(conn)
        stat = Path(f"/proc/{child.pid}/stat")
        used = lambda: sum(map(int, stat.read_text().rsplit(")", 1)[1].split()[11:13]))  # noqa: E731
        before = used()
        time.sleep(2)
        ticks = used() - before
        assert ticks < 0.25 * os.sysconf("SC_CLK_TCK") * 2, f"{ticks} ticks of CPU in 2 s"
    finally:
        for conn in held:
            conn.close()
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"http://h/-/healthy", 200),
        (b"HTTPS://h:9108/api/v1/items?limit=1", 200),
        (b"http://h", 200),  # the page
        (b"http://h?x=1", 200),
        (b"http://h/nowhere", 404),
    ],
)
def test_a_target_in_absolute_form_is_its_path(served, target, status):
    """Every server must take `GET http://host/path` (RFC 9112 3.2.2): it was a 404."""
    answer = exchange(
        served.base, b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert answer.split(b" ", 2)[1] == str(status).encode(), answer[:200]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1\r\nHost: h",
        b"HTTP/1.1\r\nhost: 127.0.0.1:9108 ",
        b"HTTP/1.1\r\nHost: [::1]:9108",
        b"HTTP/1.1\r\nHost: [fe80::1%eth0]:9108",  # urllib's, for an address with a zone
        b"HTTP/1.1\r\nHost: \th \t",
        b"HTTP/1.1\r\nHost: opscockpit.example-fc.internal:",
        b"HTTP/1.1\r\nHost:",  # empty: a target without an authority
        b"HTTP/1.0",  # Host is HTTP/1.1's
    ],
)
def test_a_request_naming_one_host_is_served(served, head):
    answer = exchange(served.base, b"GET /-/healthy " + head + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


@pytest.mark.parametrize("host", [b"Host: h\r\n", b""])
def test_a_request_expecting_100_continue_gets_its_answer_at_once(served, host):
    """No route reads a body: the answer (405, or 400 without Host) comes first and
    alone. A 100 (Continue) came before it, even before a refusal: the client was
    told to send a body that nothing would read."""
    head = b"POST /-/healthy HTTP/1.1\r\n" + host + b"Expect: 100-continue\r\n"
    answer = exchange(served.base, head + b"Content-Length: 5\r\n\r\n")  # no body sent
    assert b"100 Continue" not in answer, answer[:300]
    assert answer.startswith(b"HTTP/1.1 405 " if host else b"HTTP/1.1 400 "), answer[:300]


def test_a_request_that_trickles_in_is_dropped_at_its_deadline(empty, monkeypatch):
    """Each read had 30 s: a byte every few seconds held a request, and its thread,
    for as long as the client liked. Now its line and headers have 30 s in all."""
    _server, port = empty
    monkeypatch.setattr(server_module, "TIMEOUT_S", 1.0)
    answer, sent = trickled(port, HEALTHY + b"X-A: ")
    assert answer == b"" and sent < TRICKLE_BYTES, (answer, sent)
    assert fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200


@pytest.mark.parametrize(
    ("target", "said"),
    [
        (b"/api/v1/items?\xc3\xa9=1", "unknown parameter '\u00e9'"),  # raw UTF-8
        (b"/api/v1/items?%C3%A9=1", "unknown parameter '\u00e9'"),
        (b"/api/v1/noth%C3%A9", "nothing at /api/v1/noth\u00e9"),  # was "nothÃ©"
        (b"/api/v1/noth\xff", "nothing at /api/v1/noth\ufffd"),  # no UTF-8
    ],
)
def test_a_url_is_read_as_utf_8(served, target, said):
    answer = exchange(served.base, b"GET " + target + b" HTTP/1.0\r\n\r\n")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"].startswith(said)


def test_the_server_listens_on_an_ipv6_address(served):
    """`--metrics-host ::1` failed: "Address family for hostname not supported". On a
    machine without IPv6, the bind fails as any bind does (an OSError, one line)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        with pytest.raises(OSError):
            serve(served.board, "::1", 0)
        return
    server = serve(served.board, "::1", 0)
    try:
        code, _headers, body = fetch(f"http://[::1]:{server.server_port}/-/healthy")
        assert (code, body) == (200, b"opscockpit is healthy\n")
    finally:
        server.shutdown()


def test_other_methods_are_refused_where_something_is(served):
    for path in ("/", "/metrics", "/api/v1/summary", "/-/ready", "/static/cockpit.js"):
        for method in ("POST", "PUT", "DELETE"):
            code, headers, body = fetch(served.base + path, method=method)
            assert code == 405 and headers["Allow"] == "GET, HEAD", (path, method)
            assert json.loads(body)["errorType"] == "bad_data", (path, method)
    for path in ("/nope", "/api/v1/nothing", "/static/../app.py"):
        code, headers, body = fetch(served.base + path, method="POST")
        assert code == 404, path
        assert headers["Content-Type"] == "application/json", path
        validate("error", json.loads(body))


@pytest.mark.parametrize(
    "path",
    [
        *("/", "/metrics", "/api/v1/settings", "/api/v1/items?limit=x", "/-/ready"),
        *("/-/healthy", "/static/cockpit.js", "/nowhere", "/api/v1/nothing"),
    ],
)
def test_head_is_get_without_the_body(served, path):
    """RFC 9110 9.3.2: the status and headers of GET, no body."""
    get_code, get_headers, get_body = fetch(served.base + path)
    code, headers, body = fetch(served.base + path, method="HEAD")
    assert (code, body) == (get_code, b"")
    assert {**headers, "Date": ""} == {**get_headers, "Date": ""}
    assert headers["Content-Length"] == str(len(get_body))


def test_settings_in_force(served):
    data = api(served.base, "settings")
    settings = data["settings"]
    assert settings["lateness_seconds"] == 60 and settings["window_seconds"] == 3600
    assert "lateness" not in settings and settings["max_label_values"] == 1000
    assert settings["max_future_seconds"] == 3600 and "max_future" not in settings  # was in µs
    assert settings["kpi"]["service_level"] == 0.9
    assert settings["kpi"]["shifts"] == {"early": "06:00", "late": "14:00", "night": "22:00"}
    assert settings["kpi"]["fcs"] == {}  # a table is an object, also when empty
    assert data["web"] == {"tls": False, "basic_auth": False}


def test_the_page_and_its_files_are_served_with_a_strict_policy(served):
    status, headers, body = fetch(served.base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b"/static/cockpit.js" in body and b"<script>" not in body  # no inline script
    for name, kind in (("cockpit.js", "text/javascript"), ("cockpit.css", "text/css")):
        status, headers, body = fetch(f"{served.base}/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    status, _headers, body = fetch(served.base + "/static/../app.py")
    assert status == 404


def test_probes_and_pages_before_and_after_ready():
    board = Board()
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert fetch(base + "/-/healthy")[0] == 200
        assert fetch(base + "/-/ready")[0] == 503
        assert fetch(base + "/metrics")[0] == 503
        for endpoint in ("summary", "history", "items", "alerts"):
            code, _headers, body = fetch(f"{base}/api/v1/{endpoint}")
            assert code == 503 and json.loads(body)["errorType"] == "unavailable", endpoint
        assert fetch(base + "/api/v1/settings")[0] == 200  # known before restoring
        assert fetch(base + "/")[0] == 200  # the page says it is restoring
        board.ready.set()
        assert fetch(base + "/-/ready")[0] == 200
        assert api(base, "summary")["kafka_up"] is None  # no Kafka read
        kafka = Ledger(SOURCE_METRICS)
        kafka["cockpit_kafka_up"][()] = 0
        board.publish("kafka:t:0", kafka)
        code, _headers, body = fetch(base + "/-/ready")
        assert code == 503 and b"Kafka" in body
        assert api(base, "summary")["kafka_up"] is False  # the page says so
        kafka["cockpit_kafka_up"][()] = 1
        assert fetch(base + "/-/ready")[0] == 200
        assert api(base, "summary")["kafka_up"] is True
    finally:
        server.shutdown()


def test_only_a_process_that_may_hold_no_shard_is_ready_after_the_grace():
    """A shard's first batch makes its process ready once restored: the grace must
    not, however long restoring takes (a single process holds every shard, and each
    process of a cluster on the simulator its partition's; in a Kafka cluster, a
    process reading a partition holds its shard)."""
    alone, simulated, reader, idle = Board(), Board(), Board(), Board()
    kafka = Ledger(SOURCE_METRICS)
    kafka["cockpit_kafka_up"][()] = 1
    reader.publish("kafka:t:0", kafka)

    def cluster(*argv: str) -> bool:
        return kafka_cluster(build_parser().parse_args(["run", *argv]))

    end_grace(alone, kafka_cluster=cluster())
    end_grace(simulated, kafka_cluster=cluster("--processes", "2"))
    end_grace(reader, kafka_cluster=cluster("--kafka", "h:9092", "--processes", "2"))
    end_grace(
        idle,
        kafka_cluster=cluster("--kafka", "h:9092", "--addresses", "a:1;b:1", "--process-id", "1"),
    )
    assert not any(board.ready.is_set() for board in (alone, simulated, reader))
    assert idle.ready.is_set()


@pytest.mark.parametrize("processes", [1, 2])
def test_the_startup_line_names_the_bound_port_when_asked_for_any(processes):
    """Every process of a local cluster binds a free port of its own (the second took
    port 0 + 1)."""
    command = ["run", "--metrics-port", "0", "--processes", str(processes), "--scale", "0.05"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ports = []
        for line in stderr_lines(process, "serving metrics", processes):
            found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
            assert found and int(found[1]) > 1024, line
            ports.append(found[1])
        assert len(set(ports)) == processes
        for bound in ports:
            assert fetch(f"http://127.0.0.1:{bound}/-/healthy")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
