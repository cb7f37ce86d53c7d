"""The `sku_health` record (contract §5) as the inventory family emits it: an
item's figures at a day's close, made into the record's JSON object only where
it is written. A day's close emits every item's figures at once, as one
SkuHealthDay in columns; its SkuHealth records, their floats and JSON objects
are made only for a sink, one day at a time (most replays write none)."""

from __future__ import annotations

from typing import Any

import msgspec

BANDS = ("0-90", "91-180", "181-270", "271-365", "365+")  # FIFO age bands, in days


class SkuHealth(msgspec.Struct, frozen=True, gc=False):
    """An item (fc, sku) at a close: what its record and the web API show."""

    fc: str
    sku: str
    window_start: str
    window_end: str
    on_hand: int
    ordered: int  # units ordered in the demand_days before window_end
    demand_days: int
    safety_stock: float
    states: tuple[str, ...]  # sorted
    bands: tuple[int, ...]  # units per age band, in the order of BANDS

    @property
    def demand_per_day(self) -> float:
        return self.ordered / self.demand_days

    @property
    def cover_days(self) -> float | None:
        """None when nothing was ordered."""
        return self.on_hand / self.demand_per_day if self.ordered else None

    @property
    def key(self) -> str:
        """The record's message key (compaction keeps one per item and day)."""
        return f"sku_health|{self.fc}|{self.sku}|{self.window_end}"

    def units_by_age(self) -> dict[str, int]:
        return dict(zip(BANDS, self.bands, strict=True))

    @property
    def record(self) -> dict[str, Any]:
        return {
            "kpi": "sku_health",
            "fc": self.fc,
            "sku": self.sku,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "on_hand": self.on_hand,
            "demand_per_day": self.demand_per_day,
            "cover_days": self.cover_days,
            "safety_stock": self.safety_stock,
            "states": list(self.states),
            "units_by_age": self.units_by_age(),
        }


class SkuHealthDay(msgspec.Struct, frozen=True, gc=False):
    """Every item's `sku_health` figures at one day's close, in columns (~56 B an
    item, where a SkuHealth is ~120 B): the records of the two or three day closes
    an input batch can span are alive at once. A Batch: made into SkuHealth
    records only for a sink."""

    window_start: str
    window_end: str
    demand_days: int
    fcs: list[str]
    skus: list[str]
    units: Any  # array('q'): on hand, units ordered, ... per item
    safety: Any  # array('d'): safety stock per item
    states: list[tuple[str, ...]]
    bands: list[tuple[int, ...]]

    @property
    def records(self) -> list[SkuHealth]:
        units = self.units
        return [
            SkuHealth(
                fc,
                sku,
                self.window_start,
                self.window_end,
                units[2 * index],
                units[2 * index + 1],
                self.demand_days,
                self.safety[index],
                self.states[index],
                self.bands[index],
            )
            for index, (fc, sku) in enumerate(zip(self.fcs, self.skus, strict=True))
        ]
