"""Throughput per shift (contract §3.3): table tests through the shards and the
combine stage, values computed by hand.

Day 0 is Saturday 2026-11-21 (UTC). The default calendar is UTC with early
06:00, late 14:00 and night 22:00; lateness is 60 s, so a tick a minute after an
instance's end closes it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from flows.kpisettings import FcSettings, KpiSettings
from flows.settings import EngineConfig
from tests.scenario import Events, Run

KPI_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "outputs" / "kpi.json"
DAY0 = datetime(2026, 11, 21, tzinfo=UTC)
FAR = "2027-06-01T00:00:00Z"  # promises no case reaches
GAUGES = (
    "cockpit_shift_units_picked",
    "cockpit_shift_orders_shipped",
    "cockpit_shift_units_picked_per_hour",
)


def on(day: int, clock: str) -> str:
    """RFC 3339 of day `day` (0 = 2026-11-21) at "HH:MM" or "HH:MM:SS" UTC."""
    hours, minutes, *seconds = (int(part) for part in clock.split(":"))
    moment = DAY0 + timedelta(days=day, hours=hours, minutes=minutes, seconds=sum(seconds))
    return moment.isoformat().replace("+00:00", "Z")


def shifted(text: str, **delta: float) -> str:
    moment = datetime.fromisoformat(text) + timedelta(**delta)
    return moment.isoformat().replace("+00:00", "Z")


def order(e: Events, name: str, ts: str, fc: str = "FC1") -> bytes:
    return e.placed(name, ts, FAR, FAR, fc=fc)


def calendars(**zones: str) -> EngineConfig:
    """Each named fc in its own time zone, on the default shifts."""
    fcs = tuple((fc, FcSettings(time_zone=zone)) for fc, zone in zones.items())
    return replace(EngineConfig(), kpi=KpiSettings(fcs=fcs))


def shifts(run: Run, fc: str | None = None) -> list[tuple[Any, ...]]:
    """(fc, shift, start, end, hours, units picked, orders shipped, per hour) of
    each `shift` record, in the order written."""
    return [
        (
            r["fc"],
            r["shift"],
            r["window_start"],
            r["window_end"],
            r["hours"],
            r["units_picked"],
            r["orders_shipped"],
            r["value"],
        )
        for r in run.records("kpi")
        if r["kpi"] == "shift" and fc in (None, r["fc"])
    ]


def gauges(run: Run, fc: str, shift: str) -> tuple[Any, ...] | None:
    """(units picked, orders shipped, per hour) of the shift's gauges; None if unset."""
    series = [run.combine.ledger.series[name] for name in GAUGES]
    if (fc, shift) not in series[0]:
        return None
    return tuple(s[fc, shift] for s in series)


def test_a_plain_day_on_the_default_calendar() -> None:
    """o3 ships at 13:30, before it is placed at 14:30: it counts at 14:30 (§2),
    in the late shift. A shipment at 14:00 exactly starts the late shift. The
    night before the first pick has no record; the idle night after it does."""
    e = Events()
    run = Run().feed(
        order(e, "o1", on(0, "05:00")),
        e.picked("o1", on(0, "07:00"), 2),
        e.shipped("o1", on(0, "07:30")),
        order(e, "o2", on(0, "13:00")),
        e.shipped("o3", on(0, "13:30")),  # held until o3 is placed
        e.picked("o2", on(0, "13:59:59"), 3),
        e.shipped("o2", on(0, "14:00")),
        order(e, "o3", on(0, "14:30")),
        e.picked("ghost", on(0, "21:00"), 5),  # picks count, whether or not the order exists
        e.tick(on(0, "21:59")),
    )
    assert shifts(run) == [("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 5, 1, 0.625)]
    run.feed(e.tick(on(0, "22:01")))  # W = 22:00: the late shift closes
    assert shifts(run)[1:] == [("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 5, 2, 0.625)]
    assert gauges(run, "FC1", "early") == (5, 1, 0.625)
    assert gauges(run, "FC1", "late") == (5, 2, 0.625)
    assert gauges(run, "FC1", "night") is None
    run.feed(e.tick(on(1, "06:01")))
    assert shifts(run)[2:] == [("FC1", "night", on(0, "22:00"), on(1, "06:00"), 8.0, 0, 0, 0.0)]
    assert gauges(run, "FC1", "night") == (0, 0, 0.0)
    assert gauges(run, "FC1", "late") == (5, 2, 0.625)  # still the latest late shift
    schema = Draft202012Validator(
        json.loads(KPI_SCHEMA.read_text()), format_checker=FormatChecker()
    )
    for kind, key, record in run.outputs:
        if kind == "kpi" and record["kpi"] == "shift":
            schema.validate(record)
            assert key == f"shift|FC1|{record['window_start']}"


# Night shifts (22:00 -> 06:00 local) across the daylight-saving changes of 2026:
# Berlin 29 March (02:00 CET -> 03:00 CEST) and 25 October (03:00 CEST -> 02:00
# CET); New York 8 March (02:00 EST -> 03:00 EDT) and 1 November (02:00 EDT ->
# 01:00 EST).
@pytest.mark.parametrize(
    ("zone", "start", "end", "hours"),
    [
        ("Europe/Berlin", "2026-03-28T21:00:00Z", "2026-03-29T04:00:00Z", 7),
        ("Europe/Berlin", "2026-10-24T20:00:00Z", "2026-10-25T05:00:00Z", 9),
        ("America/New_York", "2026-03-08T03:00:00Z", "2026-03-08T10:00:00Z", 7),
        ("America/New_York", "2026-11-01T02:00:00Z", "2026-11-01T11:00:00Z", 9),
    ],
)
def test_a_night_across_a_daylight_saving_change_counts_its_real_hours(
    zone: str, start: str, end: str, hours: int
) -> None:
    """2 units an hour of the real length: 14 units over 7 h, 18 over 9 h."""
    e = Events()
    run = Run(calendars(X=zone)).feed(
        order(e, "o1", shifted(start, minutes=30), fc="X"),
        e.picked("o1", shifted(start, minutes=30), 3, fc="X"),
        e.shipped("o1", shifted(start, hours=1), fc="X"),
        e.picked("o1", shifted(end, seconds=-1), 2 * hours - 3, fc="X"),
        e.tick(shifted(end, seconds=59)),
    )
    assert shifts(run) == []  # W is a second before the end
    run.feed(e.tick(shifted(end, minutes=1)))
    assert shifts(run) == [("X", "night", start, end, float(hours), 2 * hours, 1, 2.0)]
    assert gauges(run, "X", "night") == (2 * hours, 1, 2.0)


def test_each_fc_starts_at_its_first_pick_or_shipment_and_idle_shifts_count_zeros() -> None:
    e = Events()
    run = Run().feed(
        e.picked("a", on(0, "07:00"), 4),
        e.tick(on(1, "12:00")),
        order(e, "o1", on(1, "12:00"), fc="FC2"),
        e.shipped("o1", on(1, "15:00"), fc="FC2"),
        e.tick(on(2, "06:01")),
    )
    assert shifts(run, "FC1") == [
        ("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 4, 0, 0.5),
        ("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 0, 0, 0.0),
        ("FC1", "night", on(0, "22:00"), on(1, "06:00"), 8.0, 0, 0, 0.0),
        ("FC1", "early", on(1, "06:00"), on(1, "14:00"), 8.0, 0, 0, 0.0),
        ("FC1", "late", on(1, "14:00"), on(1, "22:00"), 8.0, 0, 0, 0.0),
        ("FC1", "night", on(1, "22:00"), on(2, "06:00"), 8.0, 0, 0, 0.0),
    ]
    assert shifts(run, "FC2") == [  # its order placed in the early shift counts nothing
        ("FC2", "late", on(1, "14:00"), on(1, "22:00"), 8.0, 0, 1, 0.0),
        ("FC2", "night", on(1, "22:00"), on(2, "06:00"), 8.0, 0, 0, 0.0),
    ]
    assert gauges(run, "FC1", "early") == (0, 0, 0.0)
    assert gauges(run, "FC2", "early") is None
    assert gauges(run, "FC2", "late") == (0, 1, 0.0)


def test_an_earlier_shipment_moves_the_order_into_its_shift_and_fc() -> None:
    """o1 ships from FC1 in the late shift, then an earlier shipment from FC2 in
    the early shift arrives: o1 counts there only, and FC1 has no activity of
    its own before o2. o2's second shipment is earlier in the same shift."""
    e = Events()
    run = Run().feed(
        order(e, "o1", on(0, "10:00")),
        order(e, "o2", on(0, "10:00")),
        e.shipped("o1", on(0, "14:00:30")),
        e.shipped("o2", on(0, "14:00:40")),
        e.shipped("o1", on(0, "13:59:50"), fc="FC2"),  # W is 13:59:40: not late
        e.shipped("o2", on(0, "14:00:20")),
        e.tick(on(0, "22:01")),
    )
    assert shifts(run) == [
        ("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 0, 1, 0.0),
        ("FC2", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 0, 1, 0.0),
        ("FC2", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 0, 0, 0.0),
    ]
    assert run.value("cockpit_orders_shipped_total", ("FC2", "true")) == 1


def test_a_shipment_that_moves_away_leaves_no_activity_behind() -> None:
    e = Events()
    run = Run().feed(
        order(e, "o1", on(0, "10:00")),
        e.shipped("o1", on(0, "14:00:30"), fc="FC3"),
        e.shipped("o1", on(0, "13:59:50")),
        e.tick(on(0, "22:01")),
    )
    assert [(fc, name) for fc, name, *_ in shifts(run)] == [("FC1", "early"), ("FC1", "late")]
    assert gauges(run, "FC3", "late") is None


def test_a_shipment_of_an_order_gone_before_w_reaches_it_is_not_counted() -> None:
    """o1, cancelled, ships at 14:00:30 while in state; W then passes its promises
    and its cancellation, and it leaves state before W reaches its shipment: no
    shift counts it, as `cockpit_orders_shipped_total` does not. o2 ships then too."""
    e = Events()
    run = Run().feed(
        e.placed("o1", on(0, "10:00"), on(0, "13:00"), on(0, "14:00")),
        order(e, "o2", on(0, "10:00")),
        e.cancelled("o1", on(0, "10:30")),
        e.shipped("o1", on(0, "14:00:30")),  # W is 13:59:30: not late
        e.tick(on(0, "14:01:10")),  # W 14:00:10: o1 leaves state
        e.shipped("o2", on(0, "14:00:30")),
        e.tick(on(0, "22:01")),
    )
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0
    assert [shipped for *_, shipped, _rate in shifts(run)] == [1]


def test_the_end_of_the_input_closes_an_instance_ending_at_its_last_ts() -> None:
    """Kolkata (UTC+05:30): the early shift runs 00:30-08:30 UTC, ends that are no
    window close. At the end of the input W is the last ts, 08:30 exactly."""
    e = Events()
    run = Run(calendars(K="Asia/Kolkata")).feed(
        e.picked("a", on(0, "08:00"), 4, fc="K"),
        e.tick(on(0, "08:30")),
    )
    assert shifts(run) == []
    run.finish()
    assert shifts(run) == [("K", "early", on(0, "00:30"), on(0, "08:30"), 8.0, 4, 0, 0.5)]
    assert gauges(run, "K", "early") == (4, 0, 0.5)


def test_an_instance_closes_as_w_passes_its_end_not_at_the_next_window_close() -> None:
    e = Events()
    run = Run(calendars(K="Asia/Kolkata")).feed(
        e.picked("a", on(0, "08:00"), 4, fc="K"),
        e.tick(on(0, "08:02")),  # W = 08:01: the window of 07:00 closes
    )
    run.feed(
        e.picked("b", on(0, "08:29:59"), 1, fc="K"),
        e.tick(on(0, "08:31:30")),  # W = 08:30:30; the next window closes at 09:00
    )
    assert shifts(run) == [("K", "early", on(0, "00:30"), on(0, "08:30"), 8.0, 5, 0, 0.625)]


def test_fcs_in_different_zones_on_one_run() -> None:
    """Berlin (UTC+1 in November), New York (UTC-5) and the default UTC; W 19:00."""
    e = Events()
    run = Run(calendars(BER="Europe/Berlin", NYC="America/New_York")).feed(
        e.picked("a", on(0, "12:00"), 8, fc="BER"),  # 13:00 local: early, 05:00-13:00 UTC
        e.picked("b", on(0, "12:00"), 8, fc="NYC"),  # 07:00 local: early, 11:00-19:00 UTC
        e.picked("c", on(0, "12:00"), 8, fc="UTC"),  # early, 06:00-14:00 UTC
        e.tick(on(0, "19:01")),
    )
    assert shifts(run) == [
        ("BER", "early", on(0, "05:00"), on(0, "13:00"), 8.0, 8, 0, 1.0),
        ("NYC", "early", on(0, "11:00"), on(0, "19:00"), 8.0, 8, 0, 1.0),
        ("UTC", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 8, 0, 1.0),
    ]


def test_shards_add_up_and_an_instance_closes_once_every_shard_passed_it() -> None:
    e = Events()
    run = Run(shards=("a", "b"))
    run.feed(
        order(e, "o1", on(0, "05:00")),
        e.picked("o1", on(0, "07:00"), 2),
        e.tick(on(0, "14:01")),
        shard="a",
    )
    assert shifts(run) == []  # shard b has not reached 14:00
    run.feed(
        order(e, "o2", on(0, "06:30")),
        e.picked("o2", on(0, "13:00"), 6),
        e.shipped("o2", on(0, "14:00:30")),
        e.shipped("o2", on(0, "13:59:50")),  # earlier: moves o2 into the early shift
        e.tick(on(0, "14:01")),
        shard="b",
    )
    assert shifts(run) == [("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 8, 1, 1.0)]
    run.feed(e.tick(on(0, "22:01")), shard="a")
    run.feed(e.tick(on(0, "22:00")), shard="b")  # W 21:59 on b
    assert len(shifts(run)) == 1
    run.finish()  # W 22:00 on b: the late shift closes on both
    assert shifts(run)[1:] == [("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 0, 0, 0.0)]
    assert gauges(run, "FC1", "early") == (8, 1, 1.0)


def test_a_shard_without_shift_events_reports_at_every_instance_end() -> None:
    """Kolkata's early shift ends at 08:30 UTC, no window close: shard b, which has
    no pick or shipment, reports its W there all the same."""
    e = Events()
    run = Run(calendars(K="Asia/Kolkata"), shards=("a", "b"))
    run.feed(e.picked("a", on(0, "08:00"), 4, fc="K"), e.tick(on(0, "08:02")), shard="a")
    run.feed(e.tick(on(0, "08:02")), shard="b")
    run.feed(e.tick(on(0, "08:31:30")), shard="a")
    assert shifts(run) == []
    run.feed(e.tick(on(0, "08:31:30")), shard="b")
    assert shifts(run) == [("K", "early", on(0, "00:30"), on(0, "08:30"), 8.0, 4, 0, 0.5)]


def test_counts_and_where_each_shipment_counts_survive_a_snapshot() -> None:
    e = Events()
    before = [
        order(e, "o1", on(0, "10:00")),
        e.picked("o1", on(0, "12:00"), 3),
        e.shipped("o1", on(0, "14:00:30")),
        e.tick(on(0, "14:00:35")),
    ]
    after = [e.shipped("o1", on(0, "13:59:50")), e.tick(on(0, "22:01"))]
    whole = Run().feed(*before).feed(*after)
    resumed = Run().feed(*before).restored().feed(*after)
    assert shifts(whole) == [
        ("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 3, 1, 0.375),
        ("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 0, 0, 0.0),
    ]
    assert shifts(resumed) == shifts(whole)
    assert gauges(resumed, "FC1", "late") == gauges(whole, "FC1", "late") == (0, 0, 0.0)


def test_fcs_folded_into_other_add_up() -> None:
    """With two fc values admitted, FC3 and FC4 fold into `other` (records keep
    them apart): its gauges add the two fcs' latest instances."""
    e = Events()
    run = Run(max_label_values=2).feed(
        e.picked("a", on(0, "07:00"), 1, fc="FC1"),
        e.picked("b", on(0, "07:00"), 2, fc="FC2"),
        e.picked("c", on(0, "07:00"), 8, fc="FC3"),
        e.picked("d", on(0, "07:00"), 16, fc="FC4"),
        e.tick(on(0, "14:01")),
    )
    assert [units for _fc, _name, _a, _b, _h, units, *_ in shifts(run)] == [1, 2, 8, 16]
    assert gauges(run, "other", "early") == (24, 0, 3.0)
    assert gauges(run, "FC2", "early") == (2, 0, 0.25)


def test_an_order_id_placed_again_after_it_left_state_counts_again_in_the_same_shift() -> None:
    """o1 ships at 07:00 and is delivered at 07:10, both promises passed: it
    leaves state once W passes 07:10. Placed again at 08:00 it is a new order
    (README, Orders) whose first shipment at 09:00 falls in the same early
    instance: the instance counts both lives, 2 orders shipped."""
    e = Events()
    run = Run().feed(
        e.placed("o1", on(0, "06:00"), on(0, "07:00"), on(0, "07:10")),
        e.picked("o1", on(0, "06:30"), 1),
        e.shipped("o1", on(0, "07:00")),
        e.delivered("o1", on(0, "07:10")),
        e.tick(on(0, "07:30")),  # W 07:29: shipped, delivered, counted: o1 leaves state
    )
    assert "o1" not in run.orders()
    run.feed(
        order(e, "o1", on(0, "08:00")),
        e.shipped("o1", on(0, "09:00")),
        e.tick(on(0, "14:01")),
    )
    assert run.value("cockpit_orders_shipped_total", ("FC1", "true")) == 2
    assert shifts(run) == [("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 1, 2, 0.125)]
    assert gauges(run, "FC1", "early") == (1, 2, 0.125)


def test_a_shift_of_a_fractional_length_divides_by_its_real_hours() -> None:
    """Shifts at 06:30 and 14:00: the early instance lasts 7.5 h, so 15 units
    picked in it are 2.0 an hour, in the record as in the gauge (not 15 / 8)."""
    e = Events()
    config = replace(
        EngineConfig(), kpi=KpiSettings(shifts=(("early", "06:30"), ("late", "14:00")))
    )
    run = Run(config).feed(
        e.picked("a", on(0, "07:00"), 10),
        e.picked("b", on(0, "13:59"), 5),
        e.tick(on(0, "14:01")),
    )
    assert shifts(run) == [("FC1", "early", on(0, "06:30"), on(0, "14:00"), 7.5, 15, 0, 2.0)]
    assert gauges(run, "FC1", "early") == (15, 0, 2.0)


def test_an_earlier_instance_reported_late_by_a_slower_shard_is_not_lost() -> None:
    """Shard a, fast, has a pick only in the late shift and reports it at 22:00;
    shard b, slow, then reports its early-shift pick at 14:00. The fc's first
    instance is the early one: it closes once both shards passed 14:00 (with b's
    units), and the late one once both passed 22:00."""
    e = Events()
    run = Run(shards=("a", "b"))
    run.feed(e.picked("x", on(0, "15:00"), 4), e.tick(on(0, "22:01")), shard="a")
    assert shifts(run) == []
    run.feed(e.picked("y", on(0, "07:00"), 8), e.tick(on(0, "14:01")), shard="b")
    assert shifts(run) == [("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 8, 0, 1.0)]
    run.feed(e.tick(on(0, "22:01")), shard="b")
    assert shifts(run)[1:] == [("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 4, 0, 0.5)]
    assert gauges(run, "FC1", "early") == (8, 0, 1.0)


def test_a_snapshot_after_an_instance_with_a_shipment_closed_restores() -> None:
    """o1 ships at 12:00 and stays in state (its promises are far off); the early
    instance closes at 14:00 and the snapshot is taken after it: the late
    instance goes on with o1's pick at 15:00, as without the snapshot."""
    e = Events()
    before = [
        order(e, "o1", on(0, "10:00")),
        e.shipped("o1", on(0, "12:00")),
        e.tick(on(0, "14:01")),
    ]
    after = [e.picked("o1", on(0, "15:00"), 2), e.tick(on(0, "22:01"))]
    resumed = Run().feed(*before).restored().feed(*after)
    assert shifts(resumed) == [
        ("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 0, 1, 0.0),
        ("FC1", "late", on(0, "14:00"), on(0, "22:00"), 8.0, 2, 0, 0.25),
    ]


def test_the_gauges_are_set_when_nothing_takes_shift_records() -> None:
    e = Events()
    run = Run(takes_records=False).feed(e.picked("a", on(0, "07:00"), 4), e.tick(on(0, "14:01")))
    assert shifts(run) == []
    assert gauges(run, "FC1", "early") == (4, 0, 0.5)


def test_orders_shipped_on_two_shards_add_up() -> None:
    e = Events()
    run = Run(shards=("a", "b"))
    run.feed(
        order(e, "o1", on(0, "05:00")),
        e.shipped("o1", on(0, "07:00")),
        e.tick(on(0, "14:01")),
        shard="a",
    )
    run.feed(
        order(e, "o2", on(0, "06:30")),
        e.shipped("o2", on(0, "08:00")),
        e.tick(on(0, "14:01")),
        shard="b",
    )
    assert shifts(run) == [("FC1", "early", on(0, "06:00"), on(0, "14:00"), 8.0, 0, 2, 0.0)]
