"""What a process shows beside its metrics, for the web API (contract §7): the
per-item detail that Prometheus must not hold, and the latest alert records.

A combine step with per-item detail (inventory health) publishes it through its
`published` method (`Board.publish_items`); the dataflow passes every alert
record to `RecentAlerts.add`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Worst first: the order in which `/api/v1/items` sorts and the page lists items.
ITEM_STATES = ("out_of_stock", "at_risk", "below_safety_stock", "excess")


@dataclass(frozen=True, slots=True)
class Item:
    """An item (fc, sku) at its latest close, with the fields of a `sku_health`
    record (contract §5); `as_of` is that close, in microseconds."""

    fc: str
    sku: str
    on_hand: int
    demand_per_day: float
    cover_days: float | None  # None when demand_per_day is 0
    safety_stock: float
    states: tuple[str, ...]  # a sorted subset of ITEM_STATES
    as_of: int
    units_by_age: Mapping[str, int] = field(default_factory=dict)

    def severity(self) -> tuple[int, float, float, str, str]:
        """Sort key, worst first: the worst state, then the least cover (an item
        out of stock has none or less), then the highest demand."""
        rank = min((ITEM_STATES.index(s) for s in self.states), default=len(ITEM_STATES))
        cover = float("inf") if self.cover_days is None else self.cover_days
        return (rank, cover, -self.demand_per_day, self.fc, self.sku)


# Called from the HTTP server's threads: it must return a snapshot, never a view the
# dataflow goes on changing; the same snapshot while nothing changed (`Board.items`
# sorts again only what is new).
ItemSource = Callable[[], Iterable[Item]]


class RecentAlerts:
    """The latest alert records of this process, at most `per_kind` of each kind
    (so that a day close's thousands of stockouts do not push out the orders' few).

    Keyed by the record's message key, so an alert written again after a restore
    (outputs are at-least-once) is kept once.
    """

    def __init__(self, per_kind: int) -> None:
        self.per_kind = per_kind
        self._kinds: dict[str, OrderedDict[str, tuple[int, dict[str, Any]]]] = {}
        self._added = 0
        self._lock = threading.Lock()

    def add(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            kept = self._kinds.setdefault(str(record.get("alert")), OrderedDict())
            kept.pop(key, None)
            self._added += 1
            kept[key] = (self._added, record)
            if len(kept) > self.per_kind:
                kept.popitem(last=False)

    def newest_first(self) -> list[dict[str, Any]]:
        with self._lock:
            kept = [entry for kind in self._kinds.values() for entry in kind.values()]
        return [record for _added, record in sorted(kept, key=lambda e: e[0], reverse=True)]
