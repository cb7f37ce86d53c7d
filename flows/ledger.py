"""Metric values as plain data: what the engines count, read by the exposition.

A series key is the label value for one-label metrics, a tuple of values for
several labels, and `()` for none. Histograms hold one count per bucket, the
+Inf count and the sum, not cumulated. Plain dicts pickle with the state, so
counters survive a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flows.declare import HISTOGRAM, Metric

SeriesKey = Any  # str | tuple[str, ...]


class Ledger:
    """The values of the metrics one owner (a shard, the combine stage, a source)
    counts."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        # Labels with a closed set of values start at 0: dashboards show 0, not "no data".
        self.metrics = {m.name: m for m in metrics}
        self.series: dict[str, dict[SeriesKey, Any]] = {
            m.name: dict.fromkeys(m.known, 0) for m in self.metrics.values()
        }

    def __getitem__(self, name: str) -> dict[SeriesKey, Any]:
        return self.series[name]


def label_tuple(key: SeriesKey) -> tuple[str, ...]:
    """The label values of a series key, as a tuple."""
    return (key,) if isinstance(key, str) else tuple(key)


def merge_into(total: dict[str, dict[SeriesKey, Any]], ledger: Ledger) -> None:
    """Sum one ledger into a running total (histograms bucket by bucket, and their
    sums in whole µs: exactly)."""
    for name, metric in ledger.metrics.items():
        target = total.setdefault(name, {})
        # dict(...) copies atomically under the GIL while a worker thread writes.
        for key, value in dict(ledger.series[name]).items():
            if metric.kind == HISTOGRAM:
                known = target.get(key)
                target[key] = (
                    list(value)
                    if known is None
                    else [a + b for a, b in zip(known, value, strict=True)]
                )
            elif metric.merge == "min":
                target[key] = min(target.get(key, value), value)
            else:
                target[key] = target.get(key, 0) + value
