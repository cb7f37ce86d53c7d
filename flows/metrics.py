"""Every metric opscockpit exports, collected from where each is declared: the
runtime's pipeline metrics, each KPI family's and entity's, and each combine
step's.

The Prometheus exposition, the README's metric table, the Grafana dashboards
and the alert rules are all generated from `METRICS`; nothing else names a
metric by hand without a test checking it against this table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flows.declare import (
    CAPPED_LABELS,
    COUNTER,
    CYCLE_BUCKETS,
    DOCK_TO_STOCK_BUCKETS,
    GAUGE,
    HISTOGRAM,
    WEB_LATENCY_BUCKETS,
    Metric,
)
from flows.kpis import COMBINERS, FAMILIES
from flows.runtime.pipeline import SHARD_METRICS, SINK_METRICS, SOURCE_METRICS

__all__ = [
    "BY_NAME",
    "CAPPED_LABELS",
    "COUNTER",
    "CYCLE_BUCKETS",
    "DOCK_TO_STOCK_BUCKETS",
    "GAUGE",
    "HISTOGRAM",
    "METRICS",
    "WEB_LATENCY_BUCKETS",
    "Metric",
    "markdown_table",
]


def _collect() -> tuple[Metric, ...]:
    declared = [
        *SHARD_METRICS,
        *(m for family in FAMILIES for m in family.METRICS),
        *(m for combiner in COMBINERS for m in combiner.METRICS),
        *SOURCE_METRICS,
        *SINK_METRICS,
    ]
    return tuple({m.name: m for m in declared}.values())  # in order, once each


METRICS: tuple[Metric, ...] = _collect()
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def markdown_table() -> str:
    """The metric table of the README (a test keeps the two equal)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in METRICS:
        labels = ", ".join(f"`{label}`" for label in metric.labels)
        buckets = (
            f" Buckets {', '.join(f'{b:g}' for b in metric.buckets)}." if metric.buckets else ""
        )
        rows.append(f"| `{metric.name}` | {metric.kind} | {labels} | {metric.help}{buckets} |")
    return "\n".join(rows)


def between_markers(readme: str, name: str, body: str) -> str:
    """`readme` with the text between its `<!-- name:start -->` and `<!-- name:end -->`
    markers replaced by `body`."""
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    head, rest = readme.split(start, 1)
    return f"{head}{start}{body}\n{end}{rest.split(end, 1)[1]}"


def with_table(readme: str) -> str:
    """`readme` with the text between its metric-table markers replaced by the table."""
    return between_markers(readme, "metrics", markdown_table())


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(with_table(readme.read_text()))
