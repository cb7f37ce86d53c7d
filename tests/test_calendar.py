"""Shift calendars (contract §3.3): instances in UTC, checked against hand-computed
times across the daylight-saving changes of 2026, and tiling time without gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.calendar import CACHED_DAYS, Calendar, Calendars, Shift
from flows.kpisettings import DEFAULT_SHIFTS, FcSettings, KpiSettings
from flows.timeutil import EPOCH, format_time


def at(text: str) -> int:
    """An instant in µs; any, not only an event time (the calendar also serves the
    ends of shift instances beyond the last event time, and is tested past them)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def shift(name: str, start: str, end: str) -> Shift:
    return Shift(name, at(start), at(end))


def shown(shifts: list[Shift]) -> list[tuple[str, str, str]]:
    """Instances as readable text, for clear failures."""
    return [(s.name, format_time(s.start_us), format_time(s.end_us)) for s in shifts]


def instances(zone: str, shifts: tuple[tuple[str, str], ...], start: str, end: str) -> list:
    return shown(Calendar.from_settings(zone, shifts).instances(at(start), at(end)))


def test_the_default_calendar_is_utc_early_late_night():
    calendar = Calendar.from_settings("UTC", DEFAULT_SHIFTS)
    assert calendar.instance_at(at("2026-11-21T03:00:00Z")) == shift(
        "night", "2026-11-20T22:00:00Z", "2026-11-21T06:00:00Z"
    )
    assert calendar.instance_at(at("2026-11-21T13:59:59.999999Z")).name == "early"
    assert calendar.instance_at(at("2026-11-21T14:00:00Z")) == shift(
        "late", "2026-11-21T14:00:00Z", "2026-11-21T22:00:00Z"
    )
    assert instances("UTC", DEFAULT_SHIFTS, "2026-11-21T14:00:00Z", "2026-11-22T06:00:00Z") == [
        ("late", "2026-11-21T14:00:00Z", "2026-11-21T22:00:00Z"),
        ("night", "2026-11-21T22:00:00Z", "2026-11-22T06:00:00Z"),
    ], "instances that end in (start, end]: not early, which ends at 14:00"
    assert calendar.instance_at(at("2026-11-21T10:00:00Z")).hours == 8.0


# Night shifts 22:00-06:00 across the changes of 2026: Europe on 29 March (02:00 CET
# -> 03:00 CEST, at 01:00 UTC) and 25 October (03:00 CEST -> 02:00 CET, at 01:00
# UTC); New York on 8 March (02:00 EST -> 03:00 EDT, at 07:00 UTC) and 1 November
# (02:00 EDT -> 01:00 EST, at 06:00 UTC).
@pytest.mark.parametrize(
    ("zone", "inside", "start", "end", "hours"),
    [
        (
            "Europe/Berlin",
            "2026-03-29T00:00:00Z",
            "2026-03-28T21:00:00Z",
            "2026-03-29T04:00:00Z",
            7,
        ),
        (
            "Europe/Berlin",
            "2026-10-25T00:00:00Z",
            "2026-10-24T20:00:00Z",
            "2026-10-25T05:00:00Z",
            9,
        ),
        (
            "Europe/Berlin",
            "2026-07-01T00:00:00Z",
            "2026-06-30T20:00:00Z",
            "2026-07-01T04:00:00Z",
            8,
        ),
        (
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "2026-03-08T03:00:00Z",
            "2026-03-08T10:00:00Z",
            7,
        ),
        (
            "America/New_York",
            "2026-11-01T05:00:00Z",
            "2026-11-01T02:00:00Z",
            "2026-11-01T11:00:00Z",
            9,
        ),
    ],
)
def test_a_night_shift_across_a_daylight_saving_change(zone, inside, start, end, hours):
    found = Calendar.from_settings(zone, DEFAULT_SHIFTS).instance_at(at(inside))
    assert found == shift("night", start, end)
    assert found.hours == hours


def test_a_start_skipped_by_spring_forward_moves_to_the_first_instant_after_the_gap():
    berlin = (("a", "02:30"), ("b", "12:00"))
    assert instances("Europe/Berlin", berlin, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z") == [
        ("b", "2026-03-28T11:00:00Z", "2026-03-29T01:00:00Z"),  # 12:00 CET to 03:00 CEST
        ("a", "2026-03-29T01:00:00Z", "2026-03-29T10:00:00Z"),  # 03:00 CEST, not 02:30
        ("b", "2026-03-29T10:00:00Z", "2026-03-30T00:30:00Z"),
        ("a", "2026-03-30T00:30:00Z", "2026-03-30T10:00:00Z"),
    ]
    new_york = Calendar.from_settings("America/New_York", berlin)
    assert new_york.instance_at(at("2026-03-08T07:00:00Z")) == shift(
        "a", "2026-03-08T07:00:00Z", "2026-03-08T16:00:00Z"
    ), "02:30 on 8 March is 03:00 EDT"


def test_a_start_that_occurs_twice_at_fall_back_takes_the_first():
    new_york = (("a", "01:30"), ("b", "12:00"))
    assert instances(
        "America/New_York", new_york, "2026-11-01T00:00:00Z", "2026-11-01T18:00:00Z"
    ) == [
        ("b", "2026-10-31T16:00:00Z", "2026-11-01T05:30:00Z"),
        ("a", "2026-11-01T05:30:00Z", "2026-11-01T17:00:00Z"),  # 01:30 EDT, not 01:30 EST
    ]
    berlin = Calendar.from_settings("Europe/Berlin", (("a", "02:30"), ("b", "12:00")))
    assert berlin.instance_at(at("2026-10-25T01:00:00Z")) == shift(
        "a", "2026-10-25T00:30:00Z", "2026-10-25T11:00:00Z"
    ), "02:30 CEST, the first of the two"


def test_an_instance_left_without_length_does_not_exist():
    """02:00 and 02:30 both move to 03:00 CEST on 29 March: x has no length that day."""
    shifts = (("x", "02:00"), ("y", "02:30"), ("z", "12:00"))
    assert instances("Europe/Berlin", shifts, "2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z") == [
        ("z", "2026-03-28T11:00:00Z", "2026-03-29T01:00:00Z"),
        ("y", "2026-03-29T01:00:00Z", "2026-03-29T10:00:00Z"),
    ]
    calendar = Calendar.from_settings("Europe/Berlin", shifts)
    assert calendar.instance_at(at("2026-03-29T01:00:00Z")).name == "y"
    assert calendar.instance_at(at("2026-03-28T01:00:00Z")) == shift(
        "x", "2026-03-28T01:00:00Z", "2026-03-28T01:30:00Z"
    ), "a normal day has x, for half an hour"


def test_a_fall_back_across_midnight_keeps_the_next_days_first_start():
    """Goose Bay went back from 00:01 on 25 October 1987 (UTC-3) to 23:01 on the 24th
    (UTC-4): 00:00 on the 25th came first, then the 24th's last hour again."""
    calendar = Calendar.from_settings("America/Goose_Bay", (("a", "00:00"), ("b", "12:00")))
    second_23_30 = at("1987-10-25T03:30:00Z")
    holding = shift("a", "1987-10-25T03:00:00Z", "1987-10-25T16:00:00Z")
    assert calendar.instance_at(second_23_30) == holding
    # instance_at reaches such an instant from a start; the search from local days
    # must find it from the instant itself, whose local day is the 24th.
    assert calendar._holding(second_23_30) == holding


def test_one_shift_makes_instances_of_24_23_and_25_hours():
    calendar = Calendar.from_settings("Europe/Berlin", (("day", "06:00"),))
    spring = calendar.instances(at("2026-03-27T06:00:00Z"), at("2026-03-30T06:00:00Z"))
    autumn = calendar.instances(at("2026-10-23T06:00:00Z"), at("2026-10-26T06:00:00Z"))
    assert [s.hours for s in spring] == [24, 23, 24]
    assert [s.hours for s in autumn] == [24, 25, 24]
    assert shown(spring)[1] == ("day", "2026-03-28T05:00:00Z", "2026-03-29T04:00:00Z")
    assert shown(autumn)[1] == ("day", "2026-10-24T04:00:00Z", "2026-10-25T05:00:00Z")


def test_shifts_given_out_of_order_are_taken_in_order_of_start():
    shuffled = (("night", "22:00"), ("early", "06:00"), ("late", "14:00"))
    week = ("2026-03-25T00:00:00Z", "2026-04-01T00:00:00Z")
    assert instances("Europe/Berlin", shuffled, *week) == instances(
        "Europe/Berlin", DEFAULT_SHIFTS, *week
    )


@pytest.mark.parametrize(
    ("zone", "inside", "expected"),
    [
        (
            "Asia/Kolkata",
            "2026-11-21T00:20:00Z",
            ("night", "2026-11-20T16:30:00Z", "2026-11-21T00:30:00Z"),
        ),
        (
            "Asia/Kolkata",
            "2026-11-21T00:30:00Z",
            ("early", "2026-11-21T00:30:00Z", "2026-11-21T08:30:00Z"),
        ),
        (
            "Asia/Kathmandu",
            "2026-11-21T00:20:00Z",
            ("early", "2026-11-21T00:15:00Z", "2026-11-21T08:15:00Z"),
        ),
        (
            "Asia/Kathmandu",
            "2026-11-21T16:14:59Z",
            ("late", "2026-11-21T08:15:00Z", "2026-11-21T16:15:00Z"),
        ),
    ],
)
def test_zones_with_fractional_hour_offsets(zone, inside, expected):
    """Kolkata is UTC+05:30, Kathmandu UTC+05:45."""
    found = Calendar.from_settings(zone, DEFAULT_SHIFTS).instance_at(at(inside))
    assert shown([found]) == [expected]


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("Pacific/Kiritimati", "9999-12-31T23:59:59.999999Z"),  # local time in year 10000
        ("America/New_York", "0001-01-01T00:00:00Z"),  # local time in year 0
    ],
)
def test_times_at_the_ends_of_the_calendar_have_an_instance(zone, moment):
    calendar = Calendar.from_settings(zone, DEFAULT_SHIFTS)
    found = calendar.instance_at(at(moment))
    assert found.start_us <= at(moment) < found.end_us
    assert calendar.instance_at(found.end_us).start_us == found.end_us


def test_past_the_end_of_the_calendar_a_zone_keeps_its_offset():
    """Kiritimati is UTC+14 in year 9999 and stays so past it: at 12:00 UTC on
    31 December 9999 it is 02:00 on 1 January 10000 there, in the night shift."""
    calendar = Calendar.from_settings("Pacific/Kiritimati", DEFAULT_SHIFTS)
    assert calendar.instance_at(at("9999-12-31T12:00:00Z")) == shift(
        "night", "9999-12-31T08:00:00Z", "9999-12-31T16:00:00Z"
    )


def test_instances_over_more_days_than_are_kept_stay_right():
    calendar = Calendar.from_settings("Europe/Berlin", DEFAULT_SHIFTS)
    years = calendar.instances(at("2026-01-01T00:00:00Z"), at("2029-01-01T00:00:00Z"))
    assert len(years) == 3 * 365 * 3 + 3  # 2028 is a leap year
    assert all(a.end_us == b.start_us for a, b in pairwise(years))
    assert len(calendar._local_days) <= CACHED_DAYS and len(calendar._utc_days) <= CACHED_DAYS
    assert calendar.instance_at(at("2026-03-29T00:00:00Z")).hours == 7


def test_at_most_cached_days_are_kept():
    calendar = Calendar.from_settings("UTC", (("day", "00:00"),))
    noon = at("2026-01-01T12:00:00Z")
    for day in range(CACHED_DAYS + 1):
        calendar.instance_at(noon + day * 24 * 3600 * 10**6)
    assert len(calendar._utc_days) <= CACHED_DAYS
    assert len(calendar._local_days) <= CACHED_DAYS


def test_each_fc_has_its_own_calendar_or_the_default():
    settings = KpiSettings(
        time_zone="Europe/Berlin",
        fcs=(
            ("FC-NYC", FcSettings(time_zone="America/New_York", shifts=(("day", "08:00"),))),
            ("FC-DEL", FcSettings(time_zone="Asia/Kolkata")),
        ),
    )
    calendars = Calendars(settings)
    noon = at("2026-07-01T12:00:00Z")
    assert calendars["FC-NYC"].instance_at(noon) == shift(
        "day", "2026-07-01T12:00:00Z", "2026-07-02T12:00:00Z"
    )
    assert calendars["FC-DEL"].instance_at(noon) == shift(
        "late", "2026-07-01T08:30:00Z", "2026-07-01T16:30:00Z"
    ), "its own zone, the default shifts"
    assert calendars["FC-BER"].instance_at(noon) == shift(
        "late", "2026-07-01T12:00:00Z", "2026-07-01T20:00:00Z"
    ), "the default: Berlin, 14:00 CEST"
    assert calendars["FC-BER"] is calendars["FC-BER"], "made once per fc"


@pytest.mark.parametrize(
    ("zone", "shifts", "problem"),
    [
        ("Mars/Olympus_Mons", DEFAULT_SHIFTS, "unknown time zone 'Mars/Olympus_Mons'"),
        ("../../etc/passwd", DEFAULT_SHIFTS, "unknown time zone"),
        ("", DEFAULT_SHIFTS, "unknown time zone"),
        ("Europe", DEFAULT_SHIFTS, "unknown time zone 'Europe'"),  # a folder of zones
        ("UTC", (("early", "24:00"),), "not a local start time HH:MM"),
        ("UTC", (("early", "6:00"),), "not a local start time HH:MM"),
        ("UTC", (("early", "06:00:00"),), "not a local start time HH:MM"),
        (
            "UTC",
            (("a", "06:00"), ("b", "06:00")),
            "shifts 'a' and 'b' start at the same time 06:00",
        ),
        ("UTC", (), "at least one shift"),
    ],
)
def test_a_bad_calendar_is_a_value_error(zone, shifts, problem):
    with pytest.raises(ValueError, match=problem.replace(".", r"\.")):
        Calendar.from_settings(zone, shifts)


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving change
    "America/St_Johns",
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Pacific/Apia",  # skipped 30 December 2011 whole
    "America/Goose_Bay",  # fell back across midnight, in 1988 by two hours
    "America/Sitka",  # went back a whole day in 1867
]


def local_minute(zone: ZoneInfo, us: int) -> int:
    moment = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).astimezone(zone)
    return moment.hour * 60 + moment.minute


def offset_changes_at(zone: ZoneInfo, us: int) -> bool:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    before, now = (epoch + timedelta(microseconds=t) for t in (us - 1, us))
    return before.astimezone(zone).utcoffset() != now.astimezone(zone).utcoffset()


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=15, deadline=None)
@given(
    year=st.sampled_from([1867, 1988, 2011, 2026]),
    minutes=st.sets(st.integers(0, 1439), min_size=1, max_size=6),
    probes=st.lists(st.integers(0, 365 * 24 * 3600 * 10**6), max_size=20),
)
def test_instances_tile_a_year_without_gaps_or_overlaps(zone, year, minutes, probes):
    shifts = tuple((f"s{m}", f"{m // 60:02d}:{m % 60:02d}") for m in minutes)
    calendar = Calendar.from_settings(zone, shifts)
    start = at(f"{year}-01-01T00:00:00Z")
    year_shifts = calendar.instances(start, start + 365 * 24 * 3600 * 10**6)
    assert year_shifts[0].start_us <= start
    for earlier, later in pairwise(year_shifts):
        assert earlier.end_us == later.start_us, shown([earlier, later])
    zoneinfo = ZoneInfo(zone)
    for instance in year_shifts:
        assert instance.end_us > instance.start_us
        # Each starts at its local start, or at the end of a gap that skipped it.
        assert local_minute(zoneinfo, instance.start_us) == int(instance.name[1:]) or (
            offset_changes_at(zoneinfo, instance.start_us)
        ), shown([instance])
    for probe in probes:
        found = calendar.instance_at(start + probe)
        assert found.start_us <= start + probe < found.end_us
        assert found in year_shifts or found.end_us > year_shifts[-1].end_us
