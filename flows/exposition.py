"""Prometheus exposition of the ledgers that live in this process.

Engines count into plain-data ledgers; a scrape sums them and writes the text
format, so the hot path never touches prometheus_client and a scrape costs one
pass over the series, whatever the event rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from flows.commands import replaced_at
from flows.ledger import Ledger, SeriesKey, label_tuple, merge_into
from flows.metrics import HISTOGRAM, METRICS, Metric
from flows.published import Item, ItemSource, RecentAlerts

ALERTS_KEPT = 200  # alert records of each kind kept for the web API and page


class Board:
    """The ledgers of this process, by owner (a shard, the window stage, a source),
    with the items and recent alerts the web API shows.

    Not `ready` until the dataflow has restored its state and processed input, so
    that a scrape right after a restart never shows counters at zero.
    """

    def __init__(self) -> None:
        self._ledgers: dict[str, Ledger] = {}
        self._items: dict[str, ItemSource] = {}
        self._lock = threading.Lock()
        # The sources' latest lists, and their items worst first.
        self._ranked: tuple[list[Iterable[Item]], list[Item]] = ([], [])
        self._ranking = threading.Lock()
        self.ready = threading.Event()
        self.exposition = Exposition()
        self.alerts = RecentAlerts(ALERTS_KEPT)

    def publish(self, owner: str, ledger: Ledger) -> None:
        """Show this ledger under `owner`, replacing an earlier one (after a restore)."""
        with self._lock:
            self._ledgers[owner] = ledger

    def publish_items(self, owner: str, source: ItemSource) -> None:
        """Show the items `source` returns under `owner`, replacing an earlier source.
        Each item is published by one owner only."""
        with self._lock:
            self._items[owner] = source

    def items(self) -> list[Item]:
        """Every published item of this process, worst first (`Item.severity`).
        Sorted again only when a source returns another list: each poll of each
        wall display sorted them all (18k items: 43 ms)."""
        with self._lock:
            sources = list(self._items.values())
        lists = [source() for source in sources]
        with self._ranking:
            known, ranked = self._ranked
            if list(map(id, known)) != list(map(id, lists)):  # `known` keeps its ids taken
                ranked = sorted((item for items in lists for item in items), key=Item.severity)
                self._ranked = lists, ranked
        return ranked

    def totals(self) -> dict[str, dict[Any, Any]]:
        """Every series summed over the ledgers of this process."""
        with self._lock:
            ledgers = list(self._ledgers.values())
        total: dict[str, dict[Any, Any]] = {}
        for ledger in ledgers:
            merge_into(total, ledger)
        return total


class Exposition:
    """The text format (0.0.4) of a board's totals.

    Written here, not by prometheus_client's `generate_latest`, which checks and
    escapes every label of every sample on every scrape (0.5 s for the 59k series
    at the label cap, holding the GIL the dataflow needs). The label text of a
    series is made once and kept; labels are capped, so this cache is bounded.
    Tests hold the output byte for byte equal to `generate_latest`.
    """

    def __init__(self) -> None:
        self._labels: dict[tuple[str, SeriesKey], Any] = {}

    def render(self, totals: dict[str, dict[SeriesKey, Any]]) -> bytes:
        number = _go_float()
        out: list[str] = []
        for metric in METRICS:
            name = metric.name
            out.append(_HEADERS[name])
            series = totals.get(name, {})
            for key in sorted(series):
                labels = self._labels.get((name, key))
                if labels is None:
                    labels = self._labels[name, key] = _label_text(metric, key, number)
                value = series[key]
                if metric.kind != HISTOGRAM:
                    out.append(f"{name}{labels} {number(value)}\n")
                    continue
                buckets, plain = labels
                running = 0.0
                for bucket, count in zip(buckets, value[:-1], strict=True):
                    running += count
                    out.append(f"{name}_bucket{bucket} {number(running)}\n")
                out.append(f"{name}_count{plain} {number(running)}\n")
                out.append(f"{name}_sum{plain} {number(value[-1] / 1e6)}\n")  # whole µs
        return "".join(out).encode()


def _escape(text: str) -> str:
    """Backslashes and line feeds escaped, as in HELP lines and label values."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _braces(pairs: list[tuple[str, str]]) -> str:
    """Labels sorted by name, values escaped, as the text format writes them."""
    if not pairs:
        return ""
    quoted = [(name, _escape(value).replace('"', r"\"")) for name, value in sorted(pairs)]
    return "{" + ",".join(f'{name}="{value}"' for name, value in quoted) + "}"


def _label_text(metric: Metric, key: SeriesKey, number: Callable[[float], str]) -> Any:
    """A series' label text; for a histogram, one per bucket and one without `le`."""
    pairs = list(zip(metric.labels, label_tuple(key), strict=True))
    if metric.kind != HISTOGRAM:
        return _braces(pairs)
    bounds = (*metric.buckets, float("inf"))
    return [_braces([*pairs, ("le", number(b))]) for b in bounds], _braces(pairs)


def _header(metric: Metric) -> str:
    return f"# HELP {metric.name} {_escape(metric.help)}\n# TYPE {metric.name} {metric.kind}\n"


def _go_float() -> Callable[[float], str]:
    """A sample value's text as Go writes it (+Inf, 1.7e+09), like every Prometheus
    client: prometheus_client's, imported at the first use, since importing that
    package (its HTTP server and more) took 20 ms of every command's start."""
    from prometheus_client.utils import floatToGoString

    return cast(Callable[[float], str], floatToGoString)


GZIP_LEVEL = 1  # a scrape is compressed on the GIL too: 1 is several times faster than 9
_HEADERS = {metric.name: _header(metric) for metric in METRICS}


def render(board: Board) -> bytes:
    """The Prometheus text exposition of a board."""
    return board.exposition.render(board.totals())


def write_metrics_file(board: Board, path: Path) -> None:
    """Write the exposition atomically (a reader never sees half a file) where the
    path is a file; through a link, to its target; into a pipe or a device as it is
    (renaming over one would replace it with a file)."""
    target = replaced_at(path)
    if target is None:
        path.write_bytes(render(board))
        return
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(render(board))
    tmp.replace(target)
