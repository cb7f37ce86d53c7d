"""What a shard and the combine stage emit, as types: the dataflow splits them
with `branch` by type, and each sink writes `(message key, record as JSON)`.

msgspec Structs, not dataclasses: they are built in C (a frozen dataclass runs
Python code per instance, a twentieth of a replay's instructions when a day's
close makes a `sku_health` record per item), and they hold no reference back,
so the collector need not track them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import msgspec
import orjson

Record = dict[str, Any]


def key_part(text: str) -> str:
    """A field in a record's message key, `%` written `%25` and `|` written `%7C`:
    the keys of two records never read the same, so a compacted topic (and the
    API's recent alerts) keeps both, whatever an fc, sku or order id holds."""
    if "%" in text or "|" in text:
        return text.replace("%", "%25").replace("|", "%7C")
    return text


class Keyed(msgspec.Struct, frozen=True, gc=False):
    """A record with its message key, written as orjson writes its dict."""

    key: str
    record: Record

    @property
    def value(self) -> bytes:
        return orjson.dumps(self.record)


class DeadLetter(Keyed, frozen=True, gc=False):
    """A rejected input (contract §2), keyed `topic|partition|offset` or `file|line`."""


class Alert(Keyed, frozen=True, gc=False):
    """A detection record for `cockpit.alerts` (contract §5)."""


class KpiRecord(Keyed, frozen=True, gc=False):
    """A KPI record for `cockpit.kpis` (contract §5)."""


class KpiRecords(msgspec.Struct, frozen=True, gc=False):
    """KPI records made together (the windows a combine step closed at once, a year
    of them in a backfill): a Batch, one output through the dataflow."""

    records: list[KpiRecord]


class Partials(msgspec.Struct, frozen=True, gc=False):
    """A shard's contribution to closed windows: the shard has closed every window
    ending at or before `closed_through`, and `rows` holds each family's partial
    rows for them (and what a family reports as of `watermark`), for the combine
    stage that needs every shard."""

    shard: str
    closed_through: int
    watermark: int  # the shard's W when it closed them
    rows: dict[str, list[Any]]


class Batch(Protocol):
    """Many records made together, as a family's own output type (every item's
    `sku_health` at a day's close): one output through the dataflow instead of
    one per record, made into its records only for a sink (`records_of`)."""

    @property
    def records(self) -> list[Any]: ...  # each Written, in order


Output = DeadLetter | Alert | KpiRecord | KpiRecords | Batch | Partials


class Written(Protocol):
    """What a sink writes: a message key and a record, as JSON (`value`). The
    outputs above, and a family's own record types (made into their record only
    where written)."""

    @property
    def key(self) -> str: ...

    @property
    def record(self) -> Record: ...

    @property
    def value(self) -> bytes: ...


# What goes to a sink: (bytewax routing key, output), one per output, not per
# record: a day's `sku_health` Batch crosses the dataflow as one item and the sink
# makes its records (bytewax's routing of each of 40k records cost as much as
# writing them). The sink is given the outputs.
Routed = tuple[str, Output]
SINK_KEY = ""  # every sink has one partition


def written(outputs: list[Output]) -> Iterator[Written]:
    """Every record of a sink's batch of outputs, in order."""
    for output in outputs:
        yield from records_of(output)


def records_of(output: Any) -> list[Any]:
    """The records an output carries, in order: a Batch's, else itself. (Not
    isinstance of a runtime-checkable Protocol: that inspects the class each time,
    ~20 µs an output.)"""
    records: list[Any] | None = getattr(output, "records", None)
    return [output] if records is None else records
