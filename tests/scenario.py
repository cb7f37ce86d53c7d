"""Small helpers to write test scenarios as events and run them through the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from flows.decode import decode
from flows.kpis import COMBINERS, FAMILIES
from flows.kpis.sku_health import SkuHealth
from flows.kpis.upgrade import upgrade
from flows.labels import LabelCap
from flows.runtime.combine import CombineStage
from flows.runtime.core import Shard
from flows.runtime.outputs import Alert, DeadLetter, KpiRecord, Partials, records_of
from flows.runtime.snapshot import dump_combine, dump_shard, load_combine, load_shard
from flows.settings import EngineConfig

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def at(minutes: float = 0, *, seconds: float = 0, ms: int = 0, days: float = 0, us: int = 0) -> str:
    """An RFC 3339 time `minutes` (and seconds, ms, days, µs) after 08:00 on 2026-11-21."""
    moment = T0 + timedelta(
        days=days, minutes=minutes, seconds=seconds, milliseconds=ms, microseconds=us
    )
    return moment.isoformat().replace("+00:00", "Z")


def us(text: str) -> int:
    """Microseconds of a time produced by `at`."""
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000


class Events:
    """Builds events with unique ids."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, kind: str, ts: str, event_id: str | None = None, **fields: Any) -> bytes:
        self.count += 1
        event = {
            "event_id": f"e{self.count}" if event_id is None else event_id,
            "type": kind,
            "ts": ts,
            **fields,
        }
        return orjson.dumps(event)

    def placed(
        self,
        order: str,
        ts: str,
        ship_by: str,
        deliver_by: str,
        *,
        fc: str = "FC1",
        region: str = "east",
        qty: int = 1,
        sku: str = "S1",
        lines: list[tuple[str, int]] | None = None,
        event_id: str | None = None,
    ) -> bytes:
        return self(
            "order.placed",
            ts,
            event_id,
            order_id=order,
            fc=fc,
            region=region,
            lines=[{"sku": s, "qty": q} for s, q in (lines or [(sku, qty)])],
            promised_ship_by=ship_by,
            promised_delivery_by=deliver_by,
        )

    def shipped(self, order: str, ts: str, *, fc: str = "FC1") -> bytes:
        return self("order.shipped", ts, order_id=order, fc=fc)

    def cancelled(self, order: str, ts: str, **reason: str | None) -> bytes:
        return self("order.cancelled", ts, order_id=order, **reason)

    def returned(
        self, order: str, ts: str, qty: int, *, fc: str = "FC1", **reason: str | None
    ) -> bytes:
        return self("return.received", ts, order_id=order, fc=fc, sku="S1", qty=qty, **reason)

    def shown(self, ts: str, widget: str = "w1", *, session: str = "s1", sku: str = "S1") -> bytes:
        return self("recommendation.shown", ts, session_id=session, widget=widget, sku=sku)

    def clicked(
        self, ts: str, widget: str = "w1", *, session: str = "s1", sku: str = "S1"
    ) -> bytes:
        return self("recommendation.clicked", ts, session_id=session, widget=widget, sku=sku)

    def cart(self, ts: str, sku: str = "S1", *, session: str = "s1") -> bytes:
        return self("cart.added", ts, session_id=session, sku=sku, qty=1)

    def delivered(self, order: str, ts: str, status: str = "delivered") -> bytes:
        return self("delivery.updated", ts, order_id=order, status=status)

    def received(self, receipt: str, ts: str, qty: int, *, fc: str = "FC1") -> bytes:
        return self("inventory.received", ts, receipt_id=receipt, fc=fc, sku="S1", qty=qty)

    def stowed(self, receipt: str, ts: str, qty: int, *, fc: str = "FC1", sku: str = "S1") -> bytes:
        return self("inventory.stowed", ts, receipt_id=receipt, fc=fc, sku=sku, qty=qty)

    def picked(
        self, order: str, ts: str, qty: int = 1, *, fc: str = "FC1", sku: str = "S1"
    ) -> bytes:
        return self("inventory.picked", ts, order_id=order, fc=fc, sku=sku, qty=qty)

    def adjusted(
        self, ts: str, delta: int, *, fc: str = "FC1", sku: str = "S1", event_id: str | None = None
    ) -> bytes:
        return self("inventory.adjusted", ts, event_id, fc=fc, sku=sku, delta=delta)

    def tick(self, ts: str) -> bytes:
        """An unrelated event that only moves the watermark."""
        return self("page.viewed", ts, session_id="s", page="home", load_ms=100)


KIND_OF = {DeadLetter: "dlq", Alert: "alert", KpiRecord: "kpi", SkuHealth: "kpi"}


@dataclass
class Run:
    """One shard (one source) plus the combine stage, fed batch by batch; or
    several shards (`shards`), each fed its own lines and W, as entities split
    over partitions."""

    config: EngineConfig = field(default_factory=EngineConfig)
    max_label_values: int = 1000
    shards: tuple[str, ...] = ("0",)
    takes_records: bool = True  # whether anything takes KPI records

    def __post_init__(self) -> None:
        labels = LabelCap(self.max_label_values)
        self.every = {name: Shard(name, self.config, labels, FAMILIES) for name in self.shards}
        self.shard = self.every[self.shards[0]]
        self.combine = CombineStage(
            self.shards, self.config.window, COMBINERS, labels, self.config.kpi, self.takes_records
        )
        self.outputs: list[tuple[str, str, Any]] = []

    def restored(self) -> Run:
        """This run from a snapshot of its first shard and its combine stage."""
        again = Run(self.config)
        again.shard = again.every[again.shards[0]] = load_shard(
            dump_shard(self.shard), self.config, again.shard.labels, FAMILIES, upgrade
        )
        load_combine(dump_combine(self.combine), again.combine, upgrade)
        again.outputs = list(self.outputs)
        return again

    def feed(self, *lines: bytes, shard: str | None = None) -> Run:
        """A batch for one shard (the first unless named)."""
        self.every[shard or self.shards[0]].process("input", [decode(line) for line in lines])
        self._collect()
        return self

    def finish(self) -> Run:
        for shard in self.every.values():
            shard.finish()
        self._collect()
        return self

    def _collect(self) -> None:
        for shard in self.every.values():
            for output in shard.drain():
                if type(output) is Partials:
                    self.combine.add(output)
                else:
                    self.outputs.append((KIND_OF[type(output)], output.key, output.record))
        for out in self.combine.drain():
            for written in records_of(out):
                self.outputs.append((KIND_OF[type(written)], written.key, written.record))

    def value(self, metric: str, key: Any = ()) -> Any:
        """A series value from the shard or the combine stage (0 when absent)."""
        for ledger in (self.shard.ledger, self.combine.ledger):
            series = ledger.series.get(metric, {})
            if key in series:
                return series[key]
        return 0

    def series(self, metric: str) -> dict[Any, Any]:
        """A shard metric's series."""
        return self.shard.ledger.series[metric]  # type: ignore[no-any-return]

    def orders(self) -> dict[str, Any]:
        """The orders the shard holds."""
        return self.shard.family("orders_entity").orders.to_dict()  # type: ignore[no-any-return]

    def orphans(self) -> dict[str, Any]:
        """Order events held for orders not placed yet."""
        return self.shard.family("orders_entity").orphans  # type: ignore[no-any-return]

    def alerts(self) -> set[tuple[str, str]]:
        """(alert, order id) of the per-order alerts."""
        return {
            (r["alert"], r["order_id"])
            for kind, _key, r in self.outputs
            if kind == "alert" and "order_id" in r
        }

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [record for k, _key, record in self.outputs if k == kind]
