"""The KPI settings of contract §3.2-3.5 (`--config FILE.toml`, §6), with their
defaults: what the inventory-health, flow, shift, detection and storefront
families read. Numbers compared exactly (§2) are Fractions."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

DEFAULT_SHIFTS = (("early", "06:00"), ("late", "14:00"), ("night", "22:00"))


@dataclass(frozen=True)
class FcSettings:
    """What one fc sets for itself (`[fc."<fc>"]`); None: the default."""

    lead_time_days: Fraction | None = None
    time_zone: str | None = None
    shifts: tuple[tuple[str, str], ...] | None = None  # (name, "HH:MM" local start)


@dataclass(frozen=True)
class KpiSettings:
    """Every KPI setting; per-fc ones fall back to the top-level defaults."""

    demand_days: int = 7
    lead_time_days: Fraction = Fraction(7)
    excess_days: Fraction = Fraction(90)
    safety_days: int = 28
    service_level: Fraction = Fraction(95, 100)
    spike_days: int = 7
    spike_min_units: int = 10
    spike_factor: Fraction = Fraction(3)
    bottleneck_windows: int = 3
    bottleneck_min: int = 25
    conversion_minutes: Fraction = Fraction(30)
    time_zone: str = "UTC"
    shifts: tuple[tuple[str, str], ...] = DEFAULT_SHIFTS
    fcs: tuple[tuple[str, FcSettings], ...] = field(default=())

    def fc(self, fc: str) -> FcSettings:
        """The settings an fc set for itself (all None when it has no table)."""
        for name, settings in self.fcs:
            if name == fc:
                return settings
        return FcSettings()

    def lead_time(self, fc: str) -> Fraction:
        """Lead time in days of an fc."""
        own = self.fc(fc).lead_time_days
        return self.lead_time_days if own is None else own

    def calendar(self, fc: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """(IANA time zone, shifts) of an fc: its own table replaces the defaults."""
        own = self.fc(fc)
        return (
            self.time_zone if own.time_zone is None else own.time_zone,
            self.shifts if own.shifts is None else own.shifts,
        )
