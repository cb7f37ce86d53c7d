"""The /metrics text must be what prometheus_client's `generate_latest` writes for
the same values, byte for byte; the server must answer like a Prometheus target."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from flows.exposition import Board, render
from flows.ledger import Ledger, label_tuple
from flows.metrics import BY_NAME, COUNTER, GAUGE, METRICS
from flows.replay import replay
from flows.settings import Settings
from flows.web.server import serve
from tests.kafka_broker import free_port
from tests.processes import opscockpit
from tests.web import fetch


class Oracle:
    """The same totals as prometheus_client metric families."""

    def __init__(self, totals: dict[str, dict[Any, Any]]) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        for metric in METRICS:
            kind = {COUNTER: CounterMetricFamily, GAUGE: GaugeMetricFamily}
            family = kind.get(metric.kind, HistogramMetricFamily)(
                metric.family, metric.help, labels=metric.labels
            )
            series = self.totals.get(metric.name, {})
            for key in sorted(series):
                value, labels = series[key], label_tuple(key)
                if isinstance(family, HistogramMetricFamily):
                    bounds = (*metric.buckets, math.inf)
                    running, buckets = 0.0, []
                    for bound, count in zip(bounds, value[:-1], strict=True):
                        running += count
                        buckets.append((floatToGoString(bound), running))
                    family.add_metric(labels, buckets, value[-1] / 1e6)  # kept in whole µs
                else:
                    family.add_metric(labels, value)
            yield family


def expected(board: Board) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Oracle(board.totals()))
    return generate_latest(registry)


def board_of(series: dict[str, dict[Any, Any]]) -> Board:
    ledger = Ledger(METRICS)
    for name, values in series.items():
        ledger[name].update(values)
    board = Board()
    board.publish("test", ledger)
    return board


def test_a_simulated_day_renders_as_prometheus_client_does(tmp_path):
    events = tmp_path / "day.jsonl"
    opscockpit("simulate", "--out", str(events), "--hours", "6", "--seed", "5")
    board = replay(Settings(), str(events))
    assert render(board) == expected(board)
    assert render(board) == expected(board)  # again, from the kept label text


BINS = len(BY_NAME["cockpit_page_load_seconds"].buckets) + 1  # and +Inf
label_values = st.text(alphabet=st.sampled_from('a"\\\n\tü€ {}=,'), max_size=6)
numbers = st.one_of(
    st.integers(min_value=0, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=200, deadline=None)
@given(
    fc=st.lists(label_values, min_size=1, max_size=4, unique=True),
    value=numbers,
    counts=st.lists(st.integers(min_value=0, max_value=10**6), min_size=BINS, max_size=BINS),
    total=st.integers(min_value=-(2**70), max_value=2**70),  # whole µs
)
def test_any_label_text_and_value_renders_as_prometheus_client_does(fc, value, counts, total):
    board = board_of(
        {
            "cockpit_units_on_hand": {name: value for name in fc},
            "cockpit_orders_shipped_total": {(name, "true"): value for name in fc},
            "cockpit_watermark_timestamp_seconds": {(): value},
            "cockpit_page_load_seconds": {name: [*counts, total] for name in fc},
        }
    )
    assert render(board) == expected(board)


@pytest.fixture
def server() -> Iterator[tuple[Board, str]]:
    board = board_of({"cockpit_units_on_hand": {"FC1": 5}})
    port = free_port()
    running = serve(board, "127.0.0.1", port)
    yield board, f"http://127.0.0.1:{port}/metrics"
    running.shutdown()


def test_the_server_answers_503_until_ready_then_the_text_format(server):
    board, url = server
    status, _headers, body = fetch(url)
    assert status == 503 and b"restoring" in body
    board.ready.set()
    status, headers, body = fetch(url)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body == render(board) and b'cockpit_units_on_hand{fc="FC1"} 5.0\n' in body


def test_the_server_compresses_for_a_scraper_that_accepts_gzip(server):
    board, url = server
    board.ready.set()
    status, headers, body = fetch(url, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == "Accept-Encoding"  # a cache keeps both answers apart
    assert gzip.decompress(body) == render(board)
    refusing_codings = ("gzip;q=0", "identity, gzip; q=0.0", "*;q=0", "br")
    # RFC 9110: a parameter name is case-insensitive, and a coding named with q=0 is
    # refused even where `*` would accept it.
    for refusing in (*refusing_codings, "gzip;Q=0", "gzip;q=0, *", "*, x-gzip;q=0"):
        status, headers, body = fetch(url, headers={"Accept-Encoding": refusing})
        assert "Content-Encoding" not in headers and body == render(board), refusing
    for accepting in ("deflate, gzip;q=0.5", "*", "GZIP", "x-gzip"):
        status, headers, body = fetch(url, headers={"Accept-Encoding": accepting})
        assert headers["Content-Encoding"] == "gzip", accepting


def test_the_server_refuses_other_methods(server):
    board, url = server
    board.ready.set()
    status, headers, _body = fetch(url, method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
