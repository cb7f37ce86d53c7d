"""What a shard and the combine stage emit, as types: the dataflow splits them
with `branch` by type, and each sink takes `(message key, record)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input (contract §2), keyed `topic|partition|offset` or `file|line`."""

    key: str
    record: Record


@dataclass(frozen=True, slots=True)
class Alert:
    """A detection record for `cockpit.alerts` (contract §5)."""

    key: str
    record: Record


@dataclass(frozen=True, slots=True)
class KpiRecord:
    """A KPI record for `cockpit.kpis` (contract §5)."""

    key: str
    record: Record


@dataclass(frozen=True, slots=True)
class Partials:
    """A shard's contribution to closed windows: the shard has closed every window
    ending at or before `closed_through`, and `rows` holds each family's partial
    rows for them (and what a family reports as of `watermark`), for the combine
    stage that needs every shard."""

    shard: str
    closed_through: int
    watermark: int  # the shard's W when it closed them
    rows: dict[str, list[Any]]


Output = DeadLetter | Alert | KpiRecord | Partials
