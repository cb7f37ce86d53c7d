"""Settings shared by every command, and the per-process runtime objects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from flows.exposition import Board
from flows.kpisettings import KpiSettings
from flows.labels import LabelCap
from flows.timeutil import US_PER_SECOND

SECOND = US_PER_SECOND
HOUR = 3600 * SECOND


@dataclass(frozen=True)
class EngineConfig:
    """Event-time settings of a shard's runtime and families, durations in µs."""

    lateness: int = 60 * SECOND
    window: int = HOUR
    dedup_horizon: int = 24 * HOUR
    orphan_horizon: int = 24 * HOUR
    retention: int = 0  # 0 keeps open entities until they complete
    sources: tuple[str, ...] = ("input",)  # every source partition that feeds W
    kpi: KpiSettings = field(default_factory=KpiSettings)  # what the KPI families read


def duration(default: int) -> Any:
    """A setting in microseconds, so marked for those who show it in seconds."""
    return field(default=default, metadata={"duration": True})


@dataclass(frozen=True)
class Settings:
    """What the user chose; durations in microseconds."""

    lateness: int = duration(60 * SECOND)
    window: int = duration(3600 * SECOND)
    idle_timeout: int = duration(30 * SECOND)
    # Kafka events further ahead of the clock are rejected; 0: none
    max_future: int = duration(HOUR)
    dedup_horizon: int = duration(24 * 3600 * SECOND)
    orphan_horizon: int = duration(24 * 3600 * SECOND)
    retention: int = duration(0)
    max_label_values: int = 1000
    max_event_bytes: int = 1 << 20
    batch_size: int = 1000
    recovery: bool = False
    kpi: KpiSettings = field(default_factory=KpiSettings)

    def engine(self, sources: tuple[str, ...]) -> EngineConfig:
        """The engine configuration for a shard fed by these source partitions."""
        return EngineConfig(
            lateness=self.lateness,
            window=self.window,
            dedup_horizon=self.dedup_horizon,
            orphan_horizon=self.orphan_horizon,
            retention=self.retention,
            sources=sources,
            kpi=self.kpi,
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some settings changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def wall_clock_us() -> int:
    """Wall-clock time in microseconds; injected wherever it is read."""
    return time.time_ns() // 1000


@dataclass
class Runtime:
    """Per-process objects the dataflow steps share: metrics board, label cap, clock,
    and the stop request that endless sources honour (SIGTERM, Ctrl-C)."""

    settings: Settings
    board: Board = field(default_factory=Board)
    labels: LabelCap = field(init=False)
    clock: Callable[[], int] = wall_clock_us
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.labels = LabelCap(self.settings.max_label_values)
