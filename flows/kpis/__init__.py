"""The KPI families, one module each, and the entities they share.

`FAMILIES` is every family and entity a shard runs, in the order the runtime
wires them (and hands them an event they share); `COMBINERS` the steps that
combine shards' window partials. Adding a family is one module here, its metric
declarations, and one table test under `tests/families/`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flows.entities.orders import OrderBook
from flows.kpis.conversions import Conversions
from flows.kpis.customer import Customer, CustomerRatios
from flows.kpis.deliveries import Deliveries
from flows.kpis.flow import Flow, FlowBacklog
from flows.kpis.inventory import Inventory, ItemHealth
from flows.kpis.orders import Orders
from flows.kpis.receipts import Receipts
from flows.kpis.shifts import Shifts, ShiftThroughput
from flows.kpis.stock import SellThrough, Stock
from flows.kpis.storefront import Storefront

FAMILIES = (
    OrderBook,
    Orders,
    Deliveries,
    Flow,  # before Receipts: it reads a receipt before the event changes it
    Receipts,
    Stock,
    Inventory,
    Storefront,
    Customer,
    Conversions,
    Shifts,
)
COMBINERS = (SellThrough, ItemHealth, CustomerRatios, ShiftThroughput, FlowBacklog)


class Families(NamedTuple):
    """The families a dataflow runs: its shards' families and entities, and the
    steps that combine their window partials."""

    shard: tuple[Any, ...]
    combine: tuple[Any, ...]

    def without(self, name: str) -> Families:
        """These without the family `name` and its combine step (benchmarks measure
        what a family costs this way)."""
        return Families(
            tuple(family for family in self.shard if name != family.NAME),
            tuple(combiner for combiner in self.combine if name != combiner.NAME),
        )


ALL_FAMILIES = Families(FAMILIES, COMBINERS)
