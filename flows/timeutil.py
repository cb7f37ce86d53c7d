"""Event time as integer microseconds since the Unix epoch, UTC.

Integers keep comparisons exact (a shipment at the promise is on time) and
cheap; every conversion to and from text happens here.
"""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, datetime, timedelta
from fractions import Fraction

US_PER_SECOND = 1_000_000
US_PER_MS = 1_000

# RFC 3339 with a mandatory offset, upper-case T and Z (what datetime parses).
RFC3339_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339_PATTERN.replace("$", r"\Z"))

# Event times lie in [0001-01-02, 9999-12-31) UTC, so that every window, day and
# shift instance that holds one lies within years 0001-9999, which RFC 3339 (and so
# a record, §5) can write: a day holding 9999-12-31T23:30:00Z ends in year 10000.
FIRST_EVENT_US = -62_135_510_400_000_000  # 0001-01-02T00:00:00Z
END_EVENT_US = 253_402_214_400_000_000  # 9999-12-31T00:00:00Z
# Integer epoch milliseconds from 1970 up to the last before END_EVENT_US.
MAX_EPOCH_MS = END_EVENT_US // 1000 - 1

_fromisoformat = datetime.fromisoformat
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


class TimeError(ValueError):
    """A value that is not an event time."""


def integral(value: object) -> int | None:
    """JSON Schema integers: ints, and numbers with a zero fraction; never booleans."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_time(value: object) -> int:
    """Return microseconds for an RFC 3339 string or integer epoch milliseconds."""
    if type(value) is str:
        # Fast path for UTC times: the minute and the fraction (".fffZ") were each
        # validated by a full parse before, and any second 00-59 is valid within a
        # valid minute; three lookups instead of a parse.
        base = _MINUTES.get(value[:17])
        if base is not None:
            second = _SECONDS.get(value[17:19])
            fraction = _FRACTIONS.get(value[19:])
            if second is not None and fraction is not None:
                return base + second + fraction
        return _parse_text(value)
    if type(value) is int and 0 <= value <= MAX_EPOCH_MS:
        return value * US_PER_MS
    ms = integral(value)
    if ms is not None:
        if 0 <= ms <= MAX_EPOCH_MS:
            return ms * US_PER_MS
        raise TimeError(f"epoch milliseconds out of range: {ms}")
    raise TimeError(
        "a time must be an RFC 3339 string or integer epoch milliseconds, "
        f"not {reprlib.repr(value)}"
    )


# Parts of UTC times that passed a full parse: "YYYY-MM-DDTHH:MM:" -> microseconds of
# that minute, and "[.fraction]Z" -> microseconds into a second. Bounded caches: a
# day of millisecond times needs 1,440 minutes and 1,000 fractions.
_MINUTES: dict[str, int] = {}
_SECONDS = {f"{second:02d}": second * US_PER_SECOND for second in range(60)}
_FRACTIONS: dict[str, int] = {}
_CACHE_MAX = 100_000


def _parse_text(text: str) -> int:
    """Full RFC 3339 validation and parsing; remembers the parts of UTC times."""
    if _RFC3339.match(text) is None:
        raise TimeError(f"not an RFC 3339 time with offset: {text[:64]!r}")
    try:
        moment = _fromisoformat(text)
    except ValueError as exc:
        raise TimeError(f"not a valid time: {text[:64]!r} ({exc})") from None
    # Integer arithmetic: a float timestamp is a second off for some times with
    # fractions close to 1 far from 1970 (0193-09-25T00:51:00.999999Z, say).
    us = (moment - EPOCH) // ONE_US
    if not FIRST_EVENT_US <= us < END_EVENT_US:
        raise TimeError(
            f"not from 0001-01-02 to 9999-12-30 in UTC: {text[:64]!r} (a window or day "
            "holding it would lie beyond the years RFC 3339 writes)"
        )
    if text[-1] == "Z":
        within = moment.second * US_PER_SECOND + moment.microsecond
        minute, fraction = (text[:17], us - within), (text[19:], moment.microsecond)
        for cache, (key, value) in ((_MINUTES, minute), (_FRACTIONS, fraction)):
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = value
    return us


def format_time(us: int) -> str:
    """Exact RFC 3339 in UTC, e.g. 2026-11-21T10:15:00Z or ...:00.250000Z.

    Every alert and KPI record carries a few: the minute's text is made once (by
    datetime) and kept, the seconds and fraction added by arithmetic."""
    minute, within = divmod(us, US_PER_MINUTE)
    text = _MINUTE_TEXT.get(minute)
    if text is None:
        if len(_MINUTE_TEXT) >= _CACHE_MAX:
            _MINUTE_TEXT.clear()
        text = _MINUTE_TEXT[minute] = _minute_text(minute)
    second, fraction = divmod(within, US_PER_SECOND)
    if fraction:
        return f"{text}{second:02d}.{fraction:06d}Z"
    return f"{text}{second:02d}Z"


def _minute_text(minute: int) -> str:
    """The text "YYYY-MM-DDTHH:MM:" of a minute since the epoch, for any minute, where
    datetime stops at 9999-12-31: records' times lie within years 0001-9999 (event
    times are bounded so), but a message about a time need not fail. The Gregorian
    calendar repeats every 400 years, so the minute is rendered from its place in
    2000-2399 and the year moved back (ISO 8601's signed and five-digit years)."""
    cycles = (minute - _Y2000_MINUTE) // _CYCLE_MINUTES
    moment = EPOCH + timedelta(minutes=minute - cycles * _CYCLE_MINUTES)
    year = moment.year + 400 * cycles
    digits = f"{year:04d}" if year >= 0 else f"-{-year:04d}"
    return f"{digits}{moment.isoformat()[4:17]}"


US_PER_MINUTE = 60 * US_PER_SECOND
_MINUTE_TEXT: dict[int, str] = {}  # minute since the epoch -> "YYYY-MM-DDTHH:MM:"
_CYCLE_MINUTES = 146_097 * 24 * 60  # 400 Gregorian years
_Y2000_MINUTE = 10_957 * 24 * 60  # 2000-01-01T00:00Z


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_US = {
    "ms": US_PER_MS,
    "s": US_PER_SECOND,
    "m": 60 * US_PER_SECOND,
    "h": 3600 * US_PER_SECOND,
    "d": 86400 * US_PER_SECOND,
}


def parse_duration(text: str) -> int:
    """Parse '60s', '1h', '30d', '250ms' or bare seconds into microseconds."""
    match = _DURATION.match(text)
    if match is None:
        if _DURATION.match(text.strip().removeprefix("-")):  # say what is wrong with "-5s"
            raise ValueError(f"must not be negative, not {text!r}")
        raise ValueError(f"not a duration: {text!r} (use e.g. 60s, 5m, 1h, 30d)")
    number, unit = match.groups()
    return whole_microseconds(Fraction(number) * _UNIT_US[unit or "s"], repr(text))


def whole_microseconds(us: Fraction, shown: str) -> int:
    """A duration in µs, exactly: rounded, 900.0000001 s would pass as a window
    that divides 24 h."""
    if us.denominator != 1:
        raise ValueError(f"finer than a microsecond: {shown}")
    return int(us)
