"""Shift calendars (contract §3.3): named shift starts in local time in an IANA time
zone, and the shift instances they make in event time (integer µs since the epoch, UTC).

An instance runs from its shift's local start to the next shift's local start (the
next day's first after the day's last). A local start that does not exist (spring
forward) moves forward to the first instant that does; one that occurs twice (fall
back) takes the first; an instance left with no length does not exist. Instances
are worked out once per day and kept, so that a family may ask once per event.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from itertools import pairwise
from operator import attrgetter
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.kpisettings import KpiSettings
from flows.timeutil import EPOCH, ONE_US, US_PER_MINUTE, US_PER_SECOND

HOUR_US = 3600 * US_PER_SECOND
DAY_US = 24 * HOUR_US
CACHED_DAYS = 1000  # days of instances kept per calendar before starting afresh

# Local wall-clock times are µs since 1970-01-01 00:00 local. datetime covers years
# 1-9999; beyond these bounds (two days in, for any UTC offset) a zone keeps the
# offset it has at the bound, so that no time an event can carry fails.
_NAIVE_EPOCH = datetime(1970, 1, 1)
_LOW = (datetime(1, 1, 3, tzinfo=UTC) - EPOCH) // ONE_US
_HIGH = (datetime(9999, 12, 29, tzinfo=UTC) - EPOCH) // ONE_US
_ZERO = timedelta(0)

_END = attrgetter("end_us")
_START = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift instance, [start_us, end_us) in UTC."""

    name: str
    start_us: int
    end_us: int

    @property
    def hours(self) -> float:
        """Real length in hours: 7 or 9 for an 8-hour shift across a daylight-saving change."""
        return (self.end_us - self.start_us) / HOUR_US


@cache
def iana_zones() -> frozenset[str]:
    """The tz database's zone and link names, as the tzdata package lists them. The
    system's zoneinfo directory, which ZoneInfo also reads, holds files that are no
    zone name: `localtime` (each host's own zone: a cluster's would differ),
    `posixrules`, and the `posix/` and `right/` (leap-second) copies."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())


def load_zone(name: str) -> ZoneInfo:
    """An IANA time zone; ValueError for a name that is none."""
    if name not in iana_zones():
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def parse_start(text: str) -> int:
    """A local start 'HH:MM' (00:00-23:59) as minutes after local midnight."""
    match = _START.fullmatch(text)
    if match is None:
        raise ValueError(f"not a local start time HH:MM (00:00-23:59): {text!r}")
    return int(match[1]) * 60 + int(match[2])


def check_shifts(shifts: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
    """(minute of start, name) of each shift in order of start: at least one shift,
    no two starting at the same time."""
    if not shifts:
        raise ValueError("a calendar needs at least one shift")
    starts = sorted((parse_start(start), name) for name, start in shifts)
    for (minute, first), (next_minute, second) in pairwise(starts):
        if minute == next_minute:
            raise ValueError(
                f"shifts {first!r} and {second!r} start at the same time "
                f"{minute // 60:02d}:{minute % 60:02d}"
            )
    return starts


class Calendar:
    """The shift instances of one time zone and set of shift starts."""

    def __init__(self, zone: ZoneInfo, starts: Sequence[tuple[int, str]]) -> None:
        """`starts`: (minute after local midnight, name), in order of start, as from
        `check_shifts`."""
        self.zone = zone
        self._starts = [(minute * US_PER_MINUTE, name) for minute, name in starts]
        self._local_days: dict[int, tuple[Shift, ...]] = {}
        self._utc_days: dict[int, tuple[Shift, ...]] = {}
        self._last = Shift("", 0, 0)  # the latest instance found: events mostly come in order

    @classmethod
    def from_settings(cls, time_zone: str, shifts: Sequence[tuple[str, str]]) -> Calendar:
        """A calendar from an IANA zone name and (name, "HH:MM") shift starts in any order."""
        return cls(load_zone(time_zone), check_shifts(shifts))

    def instance_at(self, ts: int) -> Shift:
        """The instance holding ts. Instances tile time, so there is always one, and its
        end is the first instance end after ts."""
        last = self._last
        if last.start_us <= ts < last.end_us:
            return last
        day = ts // DAY_US
        shifts = self._utc_days.get(day)
        if shifts is None:
            shifts = _remember(self._utc_days, day, self._overlapping(day))
        self._last = shift = shifts[bisect_right(shifts, ts, key=_END)]
        return shift

    def instances(self, start_us: int, end_us: int) -> list[Shift]:
        """Every instance that ends in (start_us, end_us], in order."""
        found = []
        shift = self.instance_at(start_us)
        while shift.end_us <= end_us:
            found.append(shift)
            shift = self.instance_at(shift.end_us)
        return found

    def _overlapping(self, day: int) -> tuple[Shift, ...]:
        """The instances that overlap a UTC day, in order (kept per UTC day, so that
        finding an instance takes a zone conversion once per day, not per event)."""
        end = (day + 1) * DAY_US
        found = [self._holding(day * DAY_US)]
        while found[-1].end_us < end:
            found.append(self._holding(found[-1].end_us))
        return tuple(found)

    def _holding(self, ts: int) -> Shift:
        """The instance holding ts, from the local days around it: the one with the
        latest start at or before ts. Starts never go back from one local day to the
        next, and a start of the day after ts's next one would need a fall back of
        more than a day to precede ts."""
        day = self._wall(ts) // DAY_US + 1
        while True:
            shifts = self._local_days.get(day)
            if shifts is None:
                shifts = _remember(self._local_days, day, self._local_day(day))
            for shift in reversed(shifts):
                if shift.start_us <= ts:
                    return shift
            day -= 1

    def _local_day(self, day: int) -> tuple[Shift, ...]:
        """The instances whose shifts start on a local day (days since 1970-01-01 local).
        One of no length may be among them: no instant lies in it, so it is never found."""
        midnight = day * DAY_US
        starts = [self._utc(midnight + offset) for offset, _ in self._starts]
        starts.append(self._utc(midnight + DAY_US + self._starts[0][0]))
        return tuple(
            Shift(name, start, end)
            for (_, name), (start, end) in zip(self._starts, pairwise(starts), strict=True)
        )

    def _offset(self, ts: int) -> int:
        """The zone's UTC offset in µs at an instant."""
        moment = EPOCH + timedelta(microseconds=min(max(ts, _LOW), _HIGH))
        return (moment.astimezone(self.zone).utcoffset() or _ZERO) // ONE_US

    def _wall(self, ts: int) -> int:
        """The local wall-clock time of an instant."""
        return ts + self._offset(ts)

    def _utc(self, wall: int) -> int:
        """The first instant whose local time is `wall`; for a time skipped by a spring
        forward, the first instant after the gap."""
        if not _LOW <= wall <= _HIGH:
            return wall - self._offset(wall)
        local = (_NAIVE_EPOCH + timedelta(microseconds=wall)).replace(tzinfo=self.zone)
        # fold=0 reads a repeated time with the offset before the change (the first of
        # the two), and a skipped time too: an instant after the gap.
        first = (local - EPOCH) // ONE_US
        if self._wall(first) == wall:
            return first
        return self._gap_end((local.replace(fold=1) - EPOCH) // ONE_US, first)

    def _gap_end(self, before: int, after: int) -> int:
        """The change of offset in (before, after]: the first instant after a gap."""
        offset_after = self._offset(after)
        while after - before > 1:
            middle = (before + after) // 2
            if self._offset(middle) == offset_after:
                after = middle
            else:
                before = middle
        return after


def _remember(
    cache: dict[int, tuple[Shift, ...]], day: int, shifts: tuple[Shift, ...]
) -> tuple[Shift, ...]:
    """Keep a day's instances; a full cache starts afresh, so that state stays bounded."""
    if len(cache) >= CACHED_DAYS:
        cache.clear()
    cache[day] = shifts
    return shifts


class Calendars(dict[str, Calendar]):
    """Each fc's calendar, made on first use: its own settings, else the default."""

    def __init__(self, settings: KpiSettings) -> None:
        super().__init__()
        self.settings = settings

    def __missing__(self, fc: str) -> Calendar:
        calendar = self[fc] = Calendar.from_settings(*self.settings.calendar(fc))
        return calendar
