"""Window KPIs that need every shard: sell-through and days of cover per fc.

Shards report, per closed tumbling window, their units ordered, units stowed
and on-hand change per fc, and how far they have closed. A window is combined
once every shard has closed it, in window order, so "on hand before the window"
is exact whatever the number of shards.
"""

from __future__ import annotations

from typing import Any

from flows.ledger import Ledger
from flows.timeutil import US_PER_SECOND, format_time

MIN_TS = -(1 << 62)
DAY = 86400 * US_PER_SECOND

WindowRow = tuple[int, str, int, int, int]  # start, fc, ordered, stowed, on-hand delta
KpiRecord = tuple[str, str, dict[str, Any]]  # ("kpi", key, record)


class WindowAggregator:
    """Combines the closed-window partials of all shards. Picklable plain data."""

    def __init__(self, shards: tuple[str, ...], window: int) -> None:
        self.window = window
        self.progress: dict[str, int] = dict.fromkeys(shards, MIN_TS)
        self.pending: dict[int, dict[str, list[int]]] = {}
        self.on_hand: dict[str, int] = {}  # from every window combined so far
        self.latest: dict[str, tuple[int, float | None, float | None]] = {}
        self.combined_through = MIN_TS
        self.ledger = Ledger()
        self.out: list[KpiRecord] = []

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "out"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.out = []

    def drain(self) -> list[KpiRecord]:
        """Take the KPI records produced so far."""
        out, self.out = self.out, []
        return out

    def add(self, shard: str, closed_through: int, rows: list[WindowRow]) -> None:
        """One shard closed its windows up to `closed_through` with these partials."""
        for start, fc, ordered, stowed, delta in rows:
            part = self.pending.setdefault(start, {}).setdefault(fc, [0, 0, 0])
            part[0] += ordered
            part[1] += stowed
            part[2] += delta
        if closed_through > self.progress.get(shard, MIN_TS):
            self.progress[shard] = closed_through
        closed = min(self.progress.values())
        if closed <= self.combined_through:
            return
        for start in sorted(s for s in self.pending if s + self.window <= closed):
            self._combine(start, self.pending.pop(start))
        self.combined_through = closed
        self._publish(closed - self.window)

    def _combine(self, start: int, parts: dict[str, list[int]]) -> None:
        end = start + self.window
        for fc in sorted(self.on_hand.keys() | parts.keys()):
            ordered, stowed, delta = parts.get(fc, (0, 0, 0))
            before = self.on_hand.get(fc, 0)
            divisor = before + stowed
            sell_through = ordered / divisor if divisor else None
            on_hand_end = before + delta
            per_day = ordered * DAY / self.window
            cover = on_hand_end / per_day if ordered else None  # days
            self.on_hand[fc] = on_hand_end
            self.latest[fc] = (start, sell_through, cover)
            if sell_through is not None:
                self._record("sell_through", fc, start, end, sell_through, ordered, divisor)
            if cover is not None:
                self._record("days_of_cover", fc, start, end, cover, on_hand_end, per_day)

    def _record(
        self,
        kpi: str,
        fc: str,
        start: int,
        end: int,
        value: float,
        numerator: float,
        divisor: float,
    ) -> None:
        window_start = format_time(start)
        self.out.append(
            (
                "kpi",
                f"{kpi}|{fc}|{window_start}",
                {
                    "kpi": kpi,
                    "fc": fc,
                    "window_start": window_start,
                    "window_end": format_time(end),
                    "value": value,
                    "numerator": numerator,
                    "divisor": divisor,
                },
            )
        )

    def _publish(self, latest_start: int) -> None:
        """Gauges show the latest closed window; a quiet window sells 0 of its stock."""
        sell_through: dict[str, float] = {}
        cover: dict[str, float] = {}
        for fc, on_hand in self.on_hand.items():
            start, ratio, days = self.latest[fc]
            if start != latest_start:
                ratio, days = (0.0 if on_hand else None), None
            if ratio is not None:
                sell_through[fc] = ratio
            if days is not None:
                cover[fc] = days * DAY / US_PER_SECOND
        self.ledger.series["cockpit_sell_through_ratio"] = sell_through
        self.ledger.series["cockpit_stock_cover_seconds"] = cover
