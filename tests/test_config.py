"""`--config FILE.toml` (contract §6): every setting from the file, the command line
over it, defaults where neither says, and a one-line error for every bad value."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from flows.calendar import Calendars
from flows.cli import build_parser, settings_from
from flows.commands import EXIT_USAGE, CliError
from flows.config import load_config
from flows.kpisettings import DEFAULT_SHIFTS, FcSettings, KpiSettings
from flows.settings import Settings
from flows.timeutil import parse_time

SECOND = 10**6
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

FULL = """
demand_days = 14
lead_time_days = 3.5
excess_days = 60
safety_days = 21
service_level = 0.99
spike_days = 5
spike_min_units = 20
spike_factor = 2.5
bottleneck_windows = 4
bottleneck_min = 0
conversion_minutes = 45

lateness = "5m"
window = "15m"
retention = "2d"
max_label_values = 50
max_event_bytes = 4096
batch_size = 200

time_zone = "Europe/Berlin"

[shifts]
night = "22:00"
day = "07:30"

[fc."FC-NYC"]
lead_time_days = 0.1
time_zone = "America/New_York"

[fc."FC-NYC".shifts]
single = "08:00"

[fc."FC-DEL"]
time_zone = "Asia/Kolkata"

[fc."FC-BER"]
lead_time_days = 10
"""

FULL_KPI = KpiSettings(
    demand_days=14,
    lead_time_days=Fraction(7, 2),
    excess_days=Fraction(60),
    safety_days=21,
    service_level=Fraction(99, 100),
    spike_days=5,
    spike_min_units=20,
    spike_factor=Fraction(5, 2),
    bottleneck_windows=4,
    bottleneck_min=0,
    conversion_minutes=Fraction(45),
    time_zone="Europe/Berlin",
    shifts=(("night", "22:00"), ("day", "07:30")),
    fcs=(
        (
            "FC-NYC",
            FcSettings(
                lead_time_days=Fraction(1, 10),
                time_zone="America/New_York",
                shifts=(("single", "08:00"),),
            ),
        ),
        ("FC-DEL", FcSettings(time_zone="Asia/Kolkata")),
        ("FC-BER", FcSettings(lead_time_days=Fraction(10))),
    ),
)


def config_file(tmp_path: Path, text: str, name: str = "cockpit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def settings_of(*argv: str) -> Settings:
    settings: Settings = settings_from(build_parser().parse_args(argv))
    return settings


def test_a_full_file_reaches_kpi_settings_and_settings(tmp_path):
    path = config_file(tmp_path, FULL)
    assert load_config(path).kpi == FULL_KPI
    settings = settings_of("replay", "events.jsonl", "--config", str(path))
    assert settings == Settings(
        lateness=5 * MINUTE,
        window=15 * MINUTE,
        retention=2 * DAY,
        max_label_values=50,
        max_event_bytes=4096,
        batch_size=200,
        kpi=FULL_KPI,
    )
    assert settings.engine(("input",)).kpi == FULL_KPI, "what the KPI families read"


def test_fractional_settings_are_the_exact_decimals_of_the_file(tmp_path):
    kpi = load_config(config_file(tmp_path, "lead_time_days = 0.1\nservice_level = 0.95")).kpi
    assert kpi.lead_time_days == Fraction(1, 10) != Fraction(0.1)
    assert kpi.service_level == Fraction(19, 20)
    assert kpi.lead_time_days * 30 == 3, "exact, as contract §2 compares"


def test_the_command_line_overrides_the_file_and_defaults_fill_the_rest(tmp_path):
    path = config_file(tmp_path, 'window = "15m"\nbatch_size = 10\nlateness = 30\ndemand_days = 3')
    settings = settings_of(
        "replay", "events.jsonl", "--config", str(path), "--window", "30m", "--batch-size", "5"
    )
    assert (settings.window, settings.batch_size) == (30 * MINUTE, 5), "the command line wins"
    assert settings.lateness == 30 * SECOND, "a number of seconds, as --lateness 30 reads"
    assert settings.kpi.demand_days == 3
    assert (settings.retention, settings.max_label_values) == (0, 1000), "set nowhere"
    assert settings.kpi.lead_time_days == 7


def test_settings_given_nowhere_keep_their_defaults(tmp_path):
    empty = str(config_file(tmp_path, ""))
    assert settings_of("replay", "events.jsonl", "--config", empty) == Settings()
    assert settings_of("replay", "events.jsonl") == Settings()
    assert settings_of("run", "--config", empty) == settings_of("run")
    assert settings_of("run").retention == 30 * DAY, "run keeps open entities 30 days"
    retention = config_file(tmp_path, 'retention = "2d"', "retention.toml")
    assert settings_of("run", "--config", str(retention)).retention == 2 * DAY


def test_the_default_calendar_and_a_per_fc_calendar(tmp_path):
    kpi = load_config(config_file(tmp_path, FULL)).kpi
    calendars = Calendars(kpi)
    noon = parse_time("2026-07-01T12:00:00Z")
    # FC-NYC: its own zone and shifts; FC-DEL: its zone, the default shifts;
    # FC-BER (a table without a calendar) and FC-XYZ (no table): the defaults.
    assert calendars["FC-NYC"].instance_at(noon).name == "single"
    assert calendars["FC-NYC"].instance_at(noon).start_us == parse_time("2026-07-01T12:00:00Z")
    assert calendars["FC-DEL"].instance_at(noon).start_us == parse_time("2026-07-01T02:00:00Z")
    for fc in ("FC-BER", "FC-XYZ"):
        assert kpi.calendar(fc) == ("Europe/Berlin", (("night", "22:00"), ("day", "07:30")))
        assert calendars[fc].instance_at(noon).start_us == parse_time("2026-07-01T05:30:00Z")
    assert [kpi.lead_time(fc) for fc in ("FC-NYC", "FC-DEL", "FC-BER", "FC-XYZ")] == [
        Fraction(1, 10),
        Fraction(7, 2),
        Fraction(10),
        Fraction(7, 2),
    ]
    assert KpiSettings().calendar("FC-NYC") == ("UTC", DEFAULT_SHIFTS), "without a file"


def test_an_fc_with_only_its_own_shifts_keeps_the_default_time_zone(tmp_path):
    text = 'time_zone = "Europe/Berlin"\n[fc.X.shifts]\nday = "08:00"\n'
    kpi = load_config(config_file(tmp_path, text)).kpi
    assert kpi.calendar("X") == ("Europe/Berlin", (("day", "08:00"),))
    assert kpi.calendar("Y") == ("Europe/Berlin", DEFAULT_SHIFTS)


BAD = [
    # unknown keys, at every level
    ("demand_dayz = 7", "demand_dayz: unknown key"),
    ("idle_timeout = '30s'", "idle_timeout: unknown key"),
    ('[fc."FC-1"]\nlead_time = 3', "fc.FC-1.lead_time: unknown key"),
    ('[fc."FC 1"]\nspike_days = 3', 'fc."FC 1".spike_days: unknown key'),
    ("[fc.X]\ndemand_days = 3", "fc.X.demand_days: unknown key"),
    ('[fc.X.shifts]\nearly = "06:00"\ntime_zone = "UTC"', "fc.X.shifts.time_zone: not a local"),
    ("[shifts.early]\nstart = '06:00'", "shifts.early: must be a local start time"),
    # wrong types
    ('demand_days = "7"', 'demand_days: must be an integer, not "7"'),
    ("batch_size = true", "batch_size: must be an integer, not true"),
    ('service_level = "high"', 'service_level: must be a number, not "high"'),
    ("lead_time_days = [7]", "lead_time_days: must be a number, not a list"),
    ("time_zone = 1", "time_zone: must be an IANA time zone name"),
    ("lateness = true", "lateness: must be a number, not true"),
    ("shifts = 3", "shifts: must be a table, not 3"),
    ("fc = 'FC-1'", 'fc: must be a table, not "FC-1"'),
    ("[fc]\nX = 3", "fc.X: must be a table, not 3"),
    ("[shifts]\nearly = 600", "shifts.early: must be a local start time"),
    ("[shifts]\nearly = 06:00:00", 'shifts.early: must be a local start time "HH:MM" (in quotes)'),
    # days that must be positive
    ("lead_time_days = 0", "lead_time_days: must be greater than 0"),
    ("excess_days = -1.5", "excess_days: must be greater than 0"),
    ("[fc.X]\nlead_time_days = -2", "fc.X.lead_time_days: must be greater than 0"),
    ("demand_days = 0", "demand_days: must be an integer from 1 to 36500, not 0"),
    ("safety_days = -3", "safety_days: must be an integer from 1"),
    ("spike_days = 36501", "spike_days: must be an integer from 1 to 36500"),
    ("demand_days = 36501", "demand_days: must be an integer from 1 to 36500"),
    ("safety_days = 36501", "safety_days: must be an integer from 1 to 36500"),
    ("excess_days = 36500.5", "excess_days: must be greater than 0 and at most 36500"),
    ("lead_time_days = 1e9", "lead_time_days: must be greater than 0 and at most 36500"),
    # integers where integers are required
    ("demand_days = 7.5", "demand_days: must be an integer, not 7.5"),
    ("spike_days = 7.0", "spike_days: must be an integer, not 7.0"),
    ("bottleneck_windows = 0", "bottleneck_windows: must be an integer from 1"),
    ("spike_min_units = 0", "spike_min_units: must be an integer from 1"),
    ("bottleneck_min = -1", "bottleneck_min: must be an integer from 0"),
    ("max_label_values = 0", "max_label_values: must be an integer from 1"),
    ("batch_size = 0", "batch_size: must be an integer from 1"),
    ("max_event_bytes = 9223372036854775808", "max_event_bytes: must be an integer from 1"),
    ("batch_size = 1.5", "batch_size: must be an integer, not 1.5"),
    # other numbers
    ("service_level = 1", "service_level: must be between 0 and 1 (exclusive), not 1"),
    ("service_level = 0.0", "service_level: must be between 0 and 1 (exclusive), not 0.0"),
    ("service_level = 1.5", "service_level: must be between 0 and 1"),
    ("spike_factor = inf", "spike_factor: must be a finite number, not inf"),
    ("conversion_minutes = nan", "conversion_minutes: must be a finite number"),
    ("conversion_minutes = 0", "conversion_minutes: must be greater than 0"),
    # 36500 days of minutes, as every duration
    ("conversion_minutes = 52560001", "conversion_minutes: must be greater than 0 and at most"),
    # time zones
    ('time_zone = "Mars/Olympus_Mons"', "time_zone: unknown time zone 'Mars/Olympus_Mons'"),
    ('time_zone = "utc"', "time_zone: unknown time zone 'utc'"),
    ('time_zone = "/etc/localtime"', "time_zone: unknown time zone"),
    ('time_zone = "Europe"', "time_zone: unknown time zone 'Europe'"),
    ('[fc.X]\ntime_zone = "Europe/Berlyn"', "fc.X.time_zone: unknown time zone 'Europe/Berlyn'"),
    # files of the system's zoneinfo directory that name no zone: this host's own
    # (each host of a cluster its own), POSIX rules, leap-second copies
    ('time_zone = "localtime"', "time_zone: unknown time zone 'localtime'"),
    ('time_zone = "posixrules"', "time_zone: unknown time zone 'posixrules'"),
    ('time_zone = "right/UTC"', "time_zone: unknown time zone 'right/UTC'"),
    ('[fc.X]\ntime_zone = "posix/Europe/Berlin"', "fc.X.time_zone: unknown time zone"),
    # shift starts and tables
    ('[shifts]\nearly = "24:00"', "shifts.early: not a local start time HH:MM (00:00-23:59)"),
    ('[shifts]\nearly = "6:00"', "shifts.early: not a local start time HH:MM"),
    ('[shifts]\nearly = "06:60"', "shifts.early: not a local start time HH:MM"),
    ('[shifts]\na = "06:00"\nb = "06:00"', "shifts: shifts 'a' and 'b' start at the same time"),
    ('[fc.X.shifts]\na = "22:00"\nb = "22:00"', "fc.X.shifts: shifts 'a' and 'b' start"),
    ("[shifts]", "shifts: a calendar needs at least one shift"),
    ("[fc.X.shifts]", "fc.X.shifts: a calendar needs at least one shift"),
    # a shift's name is its label value: an empty one is no label to Prometheus
    ('[shifts]\n"" = "06:00"\nlate = "14:00"', 'shifts."": a shift needs a name that is not blank'),
    ('[fc.X.shifts]\n" " = "06:00"', 'fc.X.shifts." ": a shift needs a name that is not blank'),
    # event-time options
    ('window = "7m"', "window: must divide 24h"),
    ("window = 420", "window: must divide 24h"),
    ('window = "0s"', "window: must divide 24h"),
    ('window = "25h"', "window: must divide 24h"),
    ('window = "30s"', "window: must divide 24h and be at least 1m"),
    ('window = "1ms"', "window: must divide 24h and be at least 1m"),
    # rounded to a microsecond, these passed as windows that divide 24 h
    ("window = 900.0000001", "window: finer than a microsecond: 900.0000001"),
    ('window = "15.0000000001m"', "window: finer than a microsecond: '15.0000000001m'"),
    ("lateness = 0.0000005", "lateness: finer than a microsecond: 5E-7"),
    ('lateness = "soon"', "lateness: not a duration: 'soon'"),
    ("lateness = -1", "lateness: must not be negative, not -1"),
    ('retention = "36501d"', "retention: must be at most 36500d"),
    ("retention = 3153600001", "retention: must be at most 36500d"),
    # not TOML
    ("demand_days = \nsafety_days = 3", "invalid TOML: Invalid value (at line 1, column 15)"),
    ("demand_days = 7\ndemand_days = 8", "invalid TOML: Cannot overwrite a value"),
]


@pytest.mark.parametrize(("text", "problem"), BAD, ids=[text for text, _ in BAD])
def test_a_bad_value_is_a_one_line_usage_error_naming_key_and_file(tmp_path, text, problem):
    path = config_file(tmp_path, text)
    with pytest.raises(CliError) as raised:
        load_config(path)
    message = str(raised.value)
    assert raised.value.status == EXIT_USAGE
    assert message.startswith(f"config {path}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_values_at_their_bounds_are_accepted(tmp_path):
    """The bounds are inclusive (README, Configuration): days up to 36,500,
    durations from 0 up to 36500d, integers up to 2^63 - 1."""
    text = (
        "demand_days = 36500\nlead_time_days = 36500\nexcess_days = 36500.0\n"
        'bottleneck_min = 0\nlateness = 0\nretention = "36500d"\n'
        "max_event_bytes = 9223372036854775807\n"
    )
    path = config_file(tmp_path, text)
    kpi = load_config(path).kpi
    assert (kpi.demand_days, kpi.lead_time_days, kpi.excess_days) == (36500, 36500, 36500)
    assert kpi.bottleneck_min == 0
    settings = settings_of("replay", "events.jsonl", "--config", str(path))
    assert (settings.lateness, settings.retention) == (0, 36500 * DAY)
    assert settings.max_event_bytes == 2**63 - 1
    assert settings_of("replay", "events.jsonl", "--lateness", "36500d").lateness == 36500 * DAY
    assert settings_of("replay", "events.jsonl", "--lateness", "0").lateness == 0


def test_a_byte_order_mark_before_the_first_key_is_ignored(tmp_path):
    """Windows editors write one; tomllib refused the file's first line."""
    path = tmp_path / "config.toml"
    path.write_bytes("\ufeffdemand_days = 9\n".encode())
    assert load_config(path).kpi.demand_days == 9


def test_an_unreadable_file_is_a_one_line_usage_error(tmp_path):
    for path, problem in [
        (tmp_path / "missing.toml", "No such file or directory"),
        (tmp_path, "Is a directory"),
    ]:
        with pytest.raises(
            CliError, match=re.escape(f"cannot read config {path}: {problem}")
        ) as raised:
            load_config(path)
        assert raised.value.status == EXIT_USAGE
    binary = tmp_path / "latin1.toml"
    binary.write_bytes(b'time_zone = "Europe/Z\xfcrich"\n')
    with pytest.raises(CliError, match=r"latin1\.toml: not UTF-8 text"):
        load_config(binary)


def opscockpit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("command", "text", "problem"),
    [
        ("replay", "service_level = 1.5", "service_level: must be between 0 and 1"),
        ("replay", '[fc."FC-1"]\ntime_zone = "Mars/Base"', "fc.FC-1.time_zone: unknown time zone"),
        ("replay", "demand_days = ", "invalid TOML"),
        ("run", "lead_time_days = -7", "lead_time_days: must be greater than 0"),
        ("run", "[shifts]\nearly = '25:00'", "shifts.early: not a local start time"),
    ],
)
def test_the_commands_report_a_bad_file_in_one_line_with_status_2(tmp_path, command, text, problem):
    path = config_file(tmp_path, text, "bad.toml")
    events = config_file(tmp_path, "", "events.jsonl")
    args = [str(events)] if command == "replay" else []
    result = opscockpit(command, *args, "--config", str(path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"opscockpit: error: config {path}: ") and problem in line, line


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--window", "7m", "argument --window: must divide 24h"),
        ("--window", "0", "argument --window: must divide 24h"),
        ("--window", "59s", "argument --window: must divide 24h and be at least 1m"),
        ("--lateness", "36501d", "argument --lateness: must be at most 36500d"),
        ("--batch-size", "0", "argument --batch-size: must be an integer from 1"),
    ],
)
def test_the_command_line_checks_values_as_the_file_does(option, value, problem):
    with pytest.raises(CliError, match=problem) as raised:
        build_parser().parse_args(["replay", "events.jsonl", option, value])
    assert raised.value.status == EXIT_USAGE


def test_time_zones_come_from_tzdata_where_the_system_has_none(tmp_path):
    """tzdata is a dependency: with no zone files on the search path, zones still load."""
    events = config_file(tmp_path, "", "events.jsonl")
    path = config_file(tmp_path, FULL)
    result = opscockpit(
        "replay", str(events), "--quiet", "--config", str(path), env={"PYTHONTZPATH": ""}
    )
    assert result.returncode == 0, result.stderr


def test_a_replay_runs_with_the_settings_of_its_file(tmp_path):
    events = tmp_path / "events.jsonl"
    simulated = opscockpit("simulate", "--out", str(events), "--hours", "1")
    assert simulated.returncode == 0, simulated.stderr
    path = config_file(tmp_path, 'window = "15m"\nmax_label_values = 2\ndemand_days = 3\n')

    def windows(*options: str) -> tuple[set[int], str]:
        kpis, metrics = tmp_path / "kpis.jsonl", tmp_path / "metrics.prom"
        result = opscockpit(
            "replay", str(events), "--config", str(path), "--quiet",
            "--kpis", str(kpis), "--metrics-file", str(metrics), *options,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in kpis.read_text().splitlines()]
        windowed = [r for r in records if r["kpi"] != "sku_health"]  # those are per day
        sizes = {parse_time(r["window_end"]) - parse_time(r["window_start"]) for r in windowed}
        return sizes, metrics.read_text()

    sizes, metrics = windows()
    assert sizes == {15 * MINUTE}, "the window of the file"
    assert 'cockpit_label_overflow_total{label="fc"}' in metrics, "at most 2 fcs, from the file"
    sizes, _ = windows("--window", "20m")
    assert sizes == {20 * MINUTE}, "the command line over the file"


def test_the_readme_example_is_a_valid_file(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    kpi = load_config(config_file(tmp_path, example)).kpi
    assert kpi.lead_time("FC-BER1") == Fraction(7, 2)
    assert kpi.calendar("FC-BER1") == ("Europe/Berlin", (("day", "06:00"), ("evening", "14:30")))
    assert kpi.calendar("FC-ATL1") == ("UTC", DEFAULT_SHIFTS)
    assert dataclasses.replace(kpi, fcs=()) == KpiSettings(), "the rest are the defaults"


def test_a_number_is_the_exact_rational_of_its_decimal_text_past_a_doubles_digits(tmp_path):
    """1e-400 is above 0 (a double makes it 0.0, which was refused as out of range),
    and 0.3000000000000000000001 is not 0.3. A service level below 1 that a double
    rounds to 1 is refused: z, computed in doubles, would be infinite."""
    text = "excess_days = 1e-400\nspike_factor = 0.3000000000000000000001\n"
    kpi = load_config(config_file(tmp_path, text)).kpi
    assert kpi.excess_days == Fraction(1, 10**400)
    assert kpi.spike_factor == Fraction(3, 10) + Fraction(1, 10**22)
    path = config_file(tmp_path, "service_level = 0.99999999999999999999\n")
    with pytest.raises(CliError, match=r"as a double too, not 0\.99999999999999999999$"):
        load_config(path)
