"""How a metric is declared: once, by the family that counts it.

The Prometheus exposition, the README's metric table, the Grafana dashboards
and the alert rules are all generated from these declarations (collected in
`flows.metrics.METRICS`).
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

CAPPED_LABELS = ("fc", "region", "page", "widget", "reason")  # label values taken from events
DOCK_TO_STOCK_BUCKETS = (900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800)
CYCLE_BUCKETS = (3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600)
WEB_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Metric:
    """A metric's name (with `_total` for counters), type, help, labels and unit."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    unit: str = "short"  # Grafana unit id for panels
    buckets: tuple[float, ...] = ()
    group: str = "pipeline"  # which dashboard family it belongs to
    contract: bool = False  # listed in contract §4 from the start
    merge: str = "sum"  # how values of several shards or processes combine: sum or min
    known: tuple[str, ...] = ()  # every value of its one label: series start at 0

    @property
    def family(self) -> str:
        """The name prometheus_client families use (counters without `_total`)."""
        return self.name.removesuffix("_total") if self.kind == COUNTER else self.name


def metric(*args: object, **kwargs: object) -> Metric:
    """A declaration, positional as in `Metric`."""
    return Metric(*args, **kwargs)  # type: ignore[arg-type]
