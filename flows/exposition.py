"""Prometheus exposition of the ledgers that live in this process.

Engines count into plain-data ledgers; a custom collector sums them at scrape
time, so the hot path never touches prometheus_client and a scrape costs one
pass over the series, whatever the event rate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.utils import floatToGoString

from flows.ledger import Ledger, label_tuple, merge_into
from flows.metrics import COUNTER, GAUGE, METRICS


class Board:
    """The ledgers of this process, by owner (a shard, the window stage, a source).

    Not `ready` until the dataflow has restored its state and processed input, so
    that a scrape right after a restart never shows counters at zero.
    """

    def __init__(self) -> None:
        self._ledgers: dict[str, Ledger] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()

    def publish(self, owner: str, ledger: Ledger) -> None:
        """Show this ledger under `owner`, replacing an earlier one (after a restore)."""
        with self._lock:
            self._ledgers[owner] = ledger

    def totals(self) -> dict[str, dict[Any, Any]]:
        """Every series summed over the ledgers of this process."""
        with self._lock:
            ledgers = list(self._ledgers.values())
        total: dict[str, dict[Any, Any]] = {}
        for ledger in ledgers:
            merge_into(total, ledger)
        return total


class BoardCollector:
    """A prometheus_client collector over a Board."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        totals = self.board.totals()
        for metric in METRICS:
            series = totals.get(metric.name, {})
            family: Any
            if metric.kind == COUNTER:
                family = CounterMetricFamily(metric.family, metric.help, labels=metric.labels)
            elif metric.kind == GAUGE:
                family = GaugeMetricFamily(metric.family, metric.help, labels=metric.labels)
            else:
                family = HistogramMetricFamily(metric.family, metric.help, labels=metric.labels)
            for key in sorted(series):
                value = series[key]
                labels = label_tuple(key)
                if metric.kind in {COUNTER, GAUGE}:
                    family.add_metric(labels, value)
                else:
                    family.add_metric(labels, _cumulative(metric.buckets, value), value[-1])
            yield family


def _cumulative(bounds: tuple[float, ...], counts: list[float]) -> list[tuple[str, float]]:
    buckets, running = [], 0.0
    for bound, count in zip((*bounds, float("inf")), counts[:-1], strict=True):
        running += count
        buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
    return buckets


def registry_for(board: Board) -> CollectorRegistry:
    """A registry exposing the board (and nothing process-global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board))
    return registry


def render(board: Board) -> bytes:
    """The Prometheus text exposition of a board."""
    return generate_latest(registry_for(board))


def write_metrics_file(board: Board, path: Path) -> None:
    """Write the exposition atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(render(board))
    tmp.replace(path)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def serve(board: Board, host: str, port: int) -> WSGIServer:
    """Serve /metrics for this board on host:port in a daemon thread.

    Until the board is ready the answer is 503: Prometheus records a failed scrape
    instead of counters that look reset while state is being restored.
    """
    metrics = make_wsgi_app(registry_for(board))

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if not board.ready.is_set():
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"opscockpit is restoring its state\n"]
        return metrics(environ, start_response)

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
