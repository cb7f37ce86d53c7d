"""Metric values as plain data: what the engines count, read by the exposition.

A series key is the label value for one-label metrics, a tuple of values for
several labels, and `()` for none. Histograms hold one count per bucket, the
+Inf count and the sum, not cumulated. Plain dicts pickle with the state, so
counters survive a restart.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from flows.metrics import HISTOGRAM, METRICS, Metric

SeriesKey = Any  # str | tuple[str, ...]


class Ledger:
    """The values of every declared metric for one engine."""

    def __init__(self) -> None:
        # Labels with a closed set of values start at 0: dashboards show 0, not "no data".
        self.series: dict[str, dict[SeriesKey, Any]] = {
            m.name: dict.fromkeys(m.known, 0) for m in METRICS
        }

    def __getitem__(self, name: str) -> dict[SeriesKey, Any]:
        return self.series[name]


def observe(series: dict[SeriesKey, Any], metric: Metric, key: SeriesKey, value: float) -> None:
    """Add one observation to a histogram series."""
    counts = series.get(key)
    if counts is None:
        counts = series[key] = [0] * (len(metric.buckets) + 2)
    counts[bisect_left(metric.buckets, value)] += 1
    counts[-1] += value


def add(series: dict[SeriesKey, Any], key: SeriesKey, amount: float = 1) -> None:
    """Add to a counter or gauge series."""
    series[key] = series.get(key, 0) + amount


def label_tuple(key: SeriesKey) -> tuple[str, ...]:
    """The label values of a series key, as a tuple."""
    return (key,) if isinstance(key, str) else tuple(key)


def merge_into(total: dict[str, dict[SeriesKey, Any]], ledger: Ledger) -> None:
    """Sum one ledger into a running total (histograms bucket by bucket)."""
    for metric in METRICS:
        target = total.setdefault(metric.name, {})
        # dict(...) copies atomically under the GIL while a worker thread writes.
        for key, value in dict(ledger.series[metric.name]).items():
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
