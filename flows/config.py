"""`--config FILE.toml` (contract §6): KPI settings, shift calendars and event-time
options from a TOML file, each value checked, so that a bad one is a one-line error
naming its key and the file before anything runs."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from flows.calendar import check_shifts, load_zone, parse_start
from flows.commands import EXIT_USAGE, CliError
from flows.kpisettings import FcSettings, KpiSettings
from flows.timeutil import US_PER_SECOND, parse_duration, whole_microseconds

DAY_US = 86_400 * US_PER_SECOND
# Durations and numbers of days up to 100 years: event-time arithmetic in µs stays
# within 64 bits, as the compiled runtime needs.
MAX_DAYS = 36_500
MAX_DURATION_US = MAX_DAYS * DAY_US
MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True)
class Config:
    """What a file sets: event-time options (as the command line parses them, durations
    in µs) and the KPI settings, defaults where the file is silent."""

    options: Mapping[str, int] = field(default_factory=dict)
    kpi: KpiSettings = field(default_factory=KpiSettings)


class ConfigError(Exception):
    """A bad key or value: the dotted key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")


MIN_WINDOW_US = 60 * 1_000_000


def check_window(window_us: int) -> int:
    """A window size: windows are aligned to the epoch and must tile each UTC day.
    At least a minute: every window from the first event to the last closes, and a
    year of opening stock in windows of 1 ms was hours of empty closes."""
    if window_us < MIN_WINDOW_US or DAY_US % window_us:
        raise ValueError("must divide 24h and be at least 1m (e.g. 5m, 15m, 1h, 6h, 24h)")
    return window_us


def check_duration(duration_us: int) -> int:
    """A duration within what event-time arithmetic holds."""
    if duration_us > MAX_DURATION_US:
        raise ValueError("must be at most 36500d (100 years)")
    return duration_us


def check_count(value: int, least: int, most: int = MAX_INTEGER) -> int:
    """An integer setting within its bounds (64 bits at most)."""
    if not least <= value <= most:
        raise ValueError(f"must be an integer from {least} to {most}, not {value}")
    return value


def _integer(least: int, most: int = MAX_INTEGER) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_shown(value)}")
        return check_count(value, least, most)

    return check


def _exact(value: object) -> Fraction:
    """A TOML number as the exact rational its decimal text says (0.95 is 19/20):
    floats are read as Decimals, so no digit is lost to a double on the way."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"must be a number, not {_shown(value)}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"must be a finite number, not {_shown(value)}")
    return Fraction(value)


def _positive(most: int | None = None) -> Callable[[object], Fraction]:
    def check(value: object) -> Fraction:
        number = _exact(value)
        if number <= 0 or (most is not None and number > most):
            bound = "" if most is None else f" and at most {most}"
            raise ValueError(f"must be greater than 0{bound}, not {value}")
        return number

    return check


def _probability(value: object) -> Fraction:
    """Strictly between 0 and 1, also as the double z is computed from."""
    number = _exact(value)
    if not 0 < number < 1:
        raise ValueError(f"must be between 0 and 1 (exclusive), not {value}")
    if not 0 < float(number) < 1:
        raise ValueError(f"must be between 0 and 1 (exclusive) as a double too, not {value}")
    return number


def _duration(value: object) -> int:
    """A duration as the command line reads it ("60s", "1h", "30d", "250ms", "60"),
    or a TOML number of seconds."""
    if isinstance(value, str):
        return check_duration(parse_duration(value))
    seconds = _exact(value)
    if seconds < 0:
        raise ValueError(f"must not be negative, not {value}")
    return check_duration(whole_microseconds(seconds * US_PER_SECOND, _shown(value)))


def _window(value: object) -> int:
    return check_window(_duration(value))


def _time_zone(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f'must be an IANA time zone name such as "Europe/Berlin", not {_shown(value)}'
        )
    load_zone(value)
    return value


def _shift_name(name: str, key: tuple[str, ...]) -> str:
    """A shift's name is a label value: an empty one is, to Prometheus, no label."""
    if not name.strip():
        raise ConfigError(_dotted((*key, name)), "a shift needs a name that is not blank")
    return name


def _start(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'must be a local start time "HH:MM" (in quotes), not {_shown(value)}')
    parse_start(value)
    return value


# What each table holds; "shifts" and "fc" are tables of their own. OPTIONS are the
# event-time options of run and replay, by their long option name with _ for -.
OPTIONS: dict[str, Callable[[object], int]] = {
    "lateness": _duration,
    "window": _window,
    "retention": _duration,
    "max_label_values": _integer(1),
    "max_event_bytes": _integer(1),
    "batch_size": _integer(1),
}
KPI_SETTINGS: dict[str, Callable[[object], object]] = {
    "demand_days": _integer(1, MAX_DAYS),
    "lead_time_days": _positive(MAX_DAYS),
    "excess_days": _positive(MAX_DAYS),
    "safety_days": _integer(1, MAX_DAYS),
    "service_level": _probability,
    "spike_days": _integer(1, MAX_DAYS),
    "spike_min_units": _integer(1),
    "spike_factor": _positive(),
    "bottleneck_windows": _integer(1),
    "bottleneck_min": _integer(0),
    "conversion_minutes": _positive(MAX_DAYS * 1440),
    "time_zone": _time_zone,
}
FC_SETTINGS: dict[str, Callable[[object], object]] = {
    "lead_time_days": KPI_SETTINGS["lead_time_days"],
    "time_zone": _time_zone,
}


def load_config(path: Path) -> Config:
    """The settings of a TOML file; CliError (exit status 2) naming the file and the
    key for anything wrong with it."""
    try:
        # A byte order mark, as Windows editors write one, is not TOML: tomllib refused
        # its first line.
        text = path.read_bytes().decode().removeprefix("\ufeff")
        document = tomllib.loads(text, parse_float=Decimal)
    except OSError as exc:
        raise CliError(f"cannot read config {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except UnicodeDecodeError:
        raise CliError(f"config {path}: not UTF-8 text", EXIT_USAGE) from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config {path}: invalid TOML: {_one_line(str(exc))}", EXIT_USAGE) from None
    try:
        return _config(document)
    except ConfigError as exc:
        raise CliError(f"config {path}: {exc}", EXIT_USAGE) from None


def _config(document: dict[str, Any]) -> Config:
    shifts = document.pop("shifts", None)
    fcs = document.pop("fc", {})
    values = _values(document, {**OPTIONS, **KPI_SETTINGS}, ())
    options = {name: values.pop(name) for name in OPTIONS if name in values}
    if shifts is not None:
        values["shifts"] = _shifts(shifts, ("shifts",))
    return Config(options, KpiSettings(**values, fcs=_fcs(fcs)))


def _fcs(table: object) -> tuple[tuple[str, FcSettings], ...]:
    fcs = []
    for fc, settings in _table(table, ("fc",)).items():
        key = ("fc", fc)
        own = dict(_table(settings, key))
        shifts = own.pop("shifts", None)
        values = _values(own, FC_SETTINGS, key)
        if shifts is not None:
            values["shifts"] = _shifts(shifts, (*key, "shifts"))
        fcs.append((fc, FcSettings(**values)))
    return tuple(fcs)


def _shifts(table: object, key: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A table of name = "HH:MM" local starts, in the file's order."""
    shifts = tuple(
        (_shift_name(name, key), _checked(_start, start, (*key, name)))
        for name, start in _table(table, key).items()
    )
    _checked(check_shifts, shifts, key)
    return shifts


def _values(
    table: dict[str, Any], checks: Mapping[str, Callable[[object], Any]], key: tuple[str, ...]
) -> dict[str, Any]:
    """Each value of a table, checked; an unknown key is an error."""
    values = {}
    for name, value in table.items():
        check = checks.get(name)
        if check is None:
            raise ConfigError(_dotted((*key, name)), "unknown key")
        values[name] = _checked(check, value, (*key, name))
    return values


def _table(value: object, key: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(_dotted(key), f"must be a table, not {_shown(value)}")
    return value


def _checked(check: Callable[[Any], Any], value: object, key: tuple[str, ...]) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(_dotted(key), str(exc)) from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(key: tuple[str, ...]) -> str:
    """A key as TOML writes it: fc."FC 1".shifts.early."""
    return ".".join(part if _BARE_KEY.fullmatch(part) else json.dumps(part) for part in key)


def _shown(value: object) -> str:
    """A value as TOML writes it (shortened), or its kind."""
    if isinstance(value, Decimal):  # a TOML float: inf and nan as TOML writes them
        return str(value if value.is_finite() else float(value))[:60]
    if isinstance(value, str | bool | int):
        return json.dumps(value)[:60]
    return "a table" if isinstance(value, dict) else f"a {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
