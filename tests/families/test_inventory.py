"""The inventory-health family (contract §3.2, §3.5 stockout and demand spike):
table tests through one shard and the combine stage, values computed by hand.

Times are given as (day, hour) of the days from 2026-11-21 (day 0) on; windows
are hours, lateness 60 s, so a tick one minute after b closes [a, b)."""

from __future__ import annotations

import gc
import math
import pickle
from array import array
from dataclasses import replace
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import orjson
import pytest

from flows.build import is_compiled
from flows.decode import decode
from flows.events import MAX_UNITS
from flows.kpis import inventory
from flows.kpis.inventory import ITEM_FIELDS, bands_of, lots_of
from flows.kpis.sku_health import sku_health
from flows.kpis.upgrade import upgrade
from flows.kpisettings import KpiSettings
from flows.runtime.snapshot import body_of, dump_combine
from flows.settings import EngineConfig
from flows.timeutil import parse_time
from tests.scenario import Events, Run, at

MIDNIGHT = -8 * 60  # minutes from 2026-11-21 08:00 back to its midnight


def on(day: float, hour: float = 0, minute: float = 0) -> str:
    return at(MIDNIGHT + hour * 60 + minute, days=day)


def after(day: float, hour: float = 0) -> str:
    """A minute past (day, hour): W then reaches (day, hour)."""
    return on(day, hour, 1.5)


def order(e: Events, name: str, ts: str, sku: str, qty: int, fc: str = "FC1") -> bytes:
    """An order far from its promises (they play no part here)."""
    return e.placed(name, ts, on(400), on(401), fc=fc, sku=sku, qty=qty)


def gauges(run: Run, fc: str = "FC1") -> dict[str, Any]:
    names = ("tracked", "out_of_stock", "at_risk", "excess", "below_safety_stock")
    return {name: run.value(f"cockpit_skus_{name}", fc) for name in names}


def health(run: Run, sku: str, end: str) -> dict[str, Any]:
    (record,) = [
        r
        for r in run.records("kpi")
        if r["kpi"] == "sku_health" and (r["sku"], r["window_end"]) == (sku, end)
    ]
    return record


def alerts(run: Run, kind: str) -> list[tuple[str, str]]:
    return [(r["sku"], r["window_end"]) for r in run.records("alert") if r["alert"] == kind]


def test_keys_of_items_whose_fields_hold_the_separator_never_collide() -> None:
    """fc `A|B` with sku `C%` and fc `A` with sku `B|C%` both stock out: joined as
    they are, their keys would read the same, and a compacted topic would keep one."""
    e = Events()
    run = Run().feed(
        order(e, "O1", on(0, 1), "C%", 3, fc="A|B"),
        order(e, "O2", on(0, 1), "B|C%", 3, fc="A"),
        e.tick(after(0, 3)),
    )
    end = on(0, 2)
    keys = {key for kind, key, _record in run.outputs if kind == "alert"}
    assert keys == {
        f"stockout|A%7CB|C%25|{end}",
        f"stockout|A|B%7CC%25|{end}",
    }
    run.feed(e.tick(after(1, 0)))
    days = {key for _kind, key, record in run.outputs if record.get("kpi") == "sku_health"}
    assert days == {f"sku_health|A%7CB|C%25|{on(1)}", f"sku_health|A|B%7CC%25|{on(1)}"}


def test_an_fc_s_series_exist_at_0_from_its_first_close() -> None:
    """FC1's one item is in excess (stock, no demand), nothing else: its other
    series read 0, not "no data" (a series that does not exist)."""
    e = Events()
    run = Run().feed(e.stowed("R1", on(0, 1), 10, sku="A"), e.tick(after(0, 2)))
    series = run.combine.ledger.series
    assert series["cockpit_skus_excess"] == {"FC1": 1}
    names = ("out_of_stock", "at_risk", "below_safety_stock")
    for metric in (*(f"cockpit_skus_{name}" for name in names), "cockpit_stockouts_total"):
        assert series[metric] == {"FC1": 0}, metric
    assert series["cockpit_demand_spikes_total"] == {"FC1": 0}
    assert series["cockpit_units_on_hand_by_age"] == {
        ("FC1", band): 10 if band == "0-90" else 0 for band in inventory.BANDS
    }


def test_a_shard_behind_the_others_loses_no_window_of_rows() -> None:
    """Half-hour windows. Shard 1 stows an item at 12:02 but has closed only
    through 12:00 when shard 0's rows of 12:30 reach the combine step; the item's
    window [12:00, 12:30) still comes, and counts, as with one shard."""
    config = replace(EngineConfig(), window=1800 * 10**6)
    e = Events()
    received = e.received("R0", on(0, 11, 59.99), 2, fc="FC2")
    stowed = e.stowed("R0", on(0, 12, 2), 1, fc="FC2", sku="S1")
    adjusted, tick0, tick1 = (
        e.adjusted(on(0, 12, 52), -5),
        e.tick(on(0, 13, 14)),
        e.tick(on(0, 13, 14)),
    )
    one = Run(config).feed(received, stowed, adjusted, tick0, tick1).finish()
    two = Run(config, shards=("0", "1"))
    two.feed(received, stowed, shard="1").feed(adjusted, tick0, shard="0")
    two.feed(tick1, shard="1").finish()
    for run in (one, two):
        assert run.value("cockpit_units_on_hand_by_age", ("FC2", "0-90")) == 1
        assert run.value("cockpit_skus_tracked", "FC2") == 1


def test_cover_at_the_lead_time_boundary_is_not_at_risk() -> None:
    """cover = on hand / (units / 7 days) against 7 days: A has 10 on hand for 10
    ordered (cover exactly 7: not at risk), B 9 (cover 6.3: at risk)."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 10, sku="A"),
        e.stowed("R2", on(0, 1), 9, sku="B"),
        order(e, "O1", on(0, 2), "A", 10),
        order(e, "O2", on(0, 2), "B", 10),
        e.tick(after(0, 3)),
    )
    assert gauges(run) == {
        "tracked": 2,
        "out_of_stock": 0,
        "at_risk": 1,
        "excess": 0,
        "below_safety_stock": 0,
    }


def test_a_cover_of_exactly_7_days_reads_7() -> None:
    """9 on hand for 9 ordered in 7 days: 9 ÷ (9 / 7) rounded twice is
    6.999999999999999, shown beside a state that is not at risk."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 9, sku="A"),
        order(e, "O1", on(0, 2), "A", 9),
        e.tick(after(1)),
    )
    assert health(run, "A", on(1))["cover_days"] == 7.0
    assert gauges(run)["at_risk"] == 0


def test_out_of_stock_needs_demand_and_alerts_once_while_it_holds() -> None:
    """C: picked without stock and never ordered: on hand -5, no demand, no state.
    D: ordered without stock: out of stock (and alerting) at its first close; still
    at the next (no second alert); stocked, then emptied again: a second alert."""
    e = Events()
    run = Run().feed(
        e.picked("X1", on(0, 1), 5, sku="C"),
        order(e, "O1", on(0, 1), "D", 3),
        e.tick(after(0, 3)),
    )
    assert gauges(run) == {
        "tracked": 2,
        "out_of_stock": 1,
        "at_risk": 0,
        "excess": 0,
        "below_safety_stock": 0,
    }
    assert alerts(run, "stockout") == [("D", on(0, 2))]
    (alert,) = run.records("alert")
    assert (alert["fc"], alert["on_hand"], alert["demand_per_day"]) == ("FC1", 0, 3 / 7)
    run.feed(e.stowed("R1", on(0, 3, 30), 10, sku="D"), e.tick(after(0, 4)))
    assert gauges(run)["out_of_stock"] == 0  # cover 10 / (3/7) = 23.3 days: no state
    run.feed(e.picked("O1", on(0, 4, 30), 10, sku="D"), e.tick(after(0, 5)))
    assert alerts(run, "stockout") == [("D", on(0, 2)), ("D", on(0, 5))]
    assert run.value("cockpit_stockouts_total", "FC1") == 2


def test_excess_without_demand_or_beyond_the_excess_days() -> None:
    """E: stock and no demand. F: 1,000 on hand for 7 ordered a week: cover 1,000
    days > 90. G: 90 ordered, 1,000 on hand: cover 77.8 days: no state. I: no
    demand and nothing on hand: no state. J: 90 on hand for 7 ordered: cover
    exactly 90 days, not beyond: no state."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 5, sku="E"),
        e.stowed("R2", on(0, 1), 1000, sku="F"),
        e.stowed("R3", on(0, 1), 1000, sku="G"),
        order(e, "O1", on(0, 1), "F", 7),
        order(e, "O2", on(0, 1), "G", 90),
        e.stowed("R4", on(0, 1), 10, sku="I"),
        e.adjusted(on(0, 1), -10, sku="I"),
        e.stowed("R5", on(0, 1), 90, sku="J"),
        order(e, "O3", on(0, 1), "J", 7),
        e.tick(after(0, 2)),
    )
    assert gauges(run) == {
        "tracked": 5,
        "out_of_stock": 0,
        "at_risk": 0,
        "excess": 2,
        "below_safety_stock": 0,
    }


def test_cover_is_compared_exactly_beyond_64_bits() -> None:
    """on hand · demand_days against excess_days · units ordered (§2): 118,000
    adjustments of MAX_UNITS (2.5e14 units) times 36,500 demand days pass 2^63, a
    C product would wrap to a negative cover (at risk); it is excess."""
    e = Events()
    big = [e.adjusted(on(0, 1), MAX_UNITS, sku="H") for _ in range(118_000)]
    config = replace(EngineConfig(), kpi=KpiSettings(demand_days=36_500))
    run = Run(config).feed(*big, order(e, "O1", on(0, 3), "H", 1), e.tick(after(0, 4)))
    assert (118_000 * MAX_UNITS * 36_500).bit_length() > 63
    assert gauges(run) == {
        "tracked": 1,
        "out_of_stock": 0,
        "at_risk": 0,
        "excess": 1,
        "below_safety_stock": 0,
    }


def test_demand_leaves_the_trailing_window_and_its_history() -> None:
    """K: 14 ordered at 02:00 on day 0, 7 at 02:00 on day 8, 100 on hand. Day 1's
    record: 14 in the 7 days (2 a day); day 8's: none (the first left the window
    at 02:00 on day 7); day 9's: 7 (the first is out of the kept history too)."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 100, sku="K"),
        order(e, "O1", on(0, 2), "K", 14),
        e.tick(after(1)),
    )
    assert health(run, "K", on(1))["demand_per_day"] == 2.0
    run.feed(e.tick(after(8)))
    assert health(run, "K", on(8))["demand_per_day"] == 0
    run.feed(order(e, "O2", on(8, 2), "K", 7), e.tick(after(9)))
    assert health(run, "K", on(9))["demand_per_day"] == 1.0
    assert health(run, "K", on(9))["cover_days"] == 100.0


# 28 units on one day, none on the other 27 of the 28 days before day 0:
# mean 1, population variance (27^2 + 27 * 1^2) / 28 = 27.
SIGMA = math.sqrt(27)


@pytest.mark.parametrize(
    ("service_level", "z"),
    [(Fraction(95, 100), 1.6448536269514722), (Fraction(99, 100), 2.3263478740408408)],
)
def test_safety_stock_from_sigma_over_days_without_orders(
    service_level: Fraction, z: float
) -> None:
    """Safety stock = z * sigma * sqrt(7) = 22.61 (z 1.645) or 31.98 (z 2.326):
    20 on hand is below it. d = 28 / 7 = 4 a day, cover 5 days: at risk too."""
    config = replace(EngineConfig(), kpi=KpiSettings(service_level=service_level))
    assert NormalDist().inv_cdf(float(service_level)) == pytest.approx(z)
    e = Events()
    run = Run(config).feed(
        e.stowed("R1", on(-1, 9), 48, sku="H"),
        order(e, "O1", on(-1, 10), "H", 28),
        e.picked("O1", on(-1, 11), 28, sku="H"),
        e.tick(after(0, 0)),  # the close at midnight of day 0: day -1 is in sigma
    )
    record = health(run, "H", on(0))
    assert record["safety_stock"] == pytest.approx(z * SIGMA * math.sqrt(7))
    assert (record["on_hand"], record["demand_per_day"], record["cover_days"]) == (20, 4.0, 5.0)
    assert record["states"] == ["at_risk", "below_safety_stock"]
    assert gauges(run)["below_safety_stock"] == 1


def test_safety_stock_is_zero_without_orders_in_the_28_days() -> None:
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-40, 9), 48, sku="H"),
        order(e, "O1", on(-29, 10), "H", 28),  # the day before the 28 days
        e.tick(after(0, 0)),
    )
    record = health(run, "H", on(0))
    assert record["safety_stock"] == 0 and record["demand_per_day"] == 0
    assert record["states"] == ["excess"]


def test_fifo_ages_across_every_band_boundary() -> None:
    """Lots 366, 365, 91 and 90 days old at the close of midnight, day 0: the
    bands are inclusive day counts, 365+ from 366 days on. A pick of 20 just
    before takes the oldest first: all 17 of 366 days and 3 of 365."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-366), 17, sku="J"),
        e.stowed("R2", on(-365), 13, sku="J"),
        e.stowed("R3", on(-91), 11, sku="J"),
        e.stowed("R4", on(-90), 7, sku="J"),
        e.tick(on(-1, 22)),
    )
    run.feed(e.picked("X1", on(-1, 23), 20, sku="J"), e.tick(after(0, 0)))
    # The oldest lot, kept in the item, went; the next one left the list for its place.
    item = run.combine.combiners["inventory"].items["FC1"]["J"]
    lots = [(parse_time(on(day)), qty) for day, qty in ((-365, 10), (-91, 11), (-90, 7))]
    assert (item.oldest_ts, item.oldest_qty) == lots[0] and len(item.lots) == 2
    restore, values = item.__reduce__()
    assert lots_of(item) == lots == lots_of(restore(*values))
    expected = {"0-90": 7, "91-180": 11, "181-270": 0, "271-365": 10, "365+": 0}
    assert health(run, "J", on(0))["units_by_age"] == expected
    assert {
        age: run.value("cockpit_units_on_hand_by_age", ("FC1", age)) for age in expected
    } == expected
    run.feed(e.tick(after(1, 0)))  # a day on, every lot a day older
    assert health(run, "J", on(1))["units_by_age"] == {
        "0-90": 0,
        "91-180": 18,
        "181-270": 0,
        "271-365": 0,
        "365+": 10,
    }


def test_fifo_ages_across_the_180_and_270_day_boundaries() -> None:
    """The two middle boundaries, each from both sides: lots 271, 270, 181 and 180
    days old at the close of midnight, day 0, and lots a µs short of 271 and of
    181 days, whose age ⌊(b - ts) / 1 day⌋ is 270 and 180. A day on, each is a
    day older: 270 becomes 271, 180 becomes 181."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-271), 2, sku="L"),  # 271 days: 271-365
        e.stowed("R2", at(MIDNIGHT, days=-271, us=1), 3, sku="L"),  # 271 days - 1 µs: 270
        e.stowed("R3", on(-270), 5, sku="L"),  # 270 days: 181-270
        e.stowed("R4", on(-181), 11, sku="L"),  # 181 days: 181-270
        e.stowed("R5", at(MIDNIGHT, days=-181, us=1), 13, sku="L"),  # 181 days - 1 µs: 180
        e.stowed("R6", on(-180), 17, sku="L"),  # 180 days: 91-180
        e.tick(after(0, 0)),
    )
    expected = {"0-90": 0, "91-180": 13 + 17, "181-270": 3 + 5 + 11, "271-365": 2, "365+": 0}
    assert health(run, "L", on(0))["units_by_age"] == expected
    assert {
        age: run.value("cockpit_units_on_hand_by_age", ("FC1", age)) for age in expected
    } == expected
    run.feed(e.tick(after(1, 0)))  # ages 272, 271, 271, 182, 181, 181
    expected = {"0-90": 0, "91-180": 0, "181-270": 11 + 13 + 17, "271-365": 2 + 3 + 5, "365+": 0}
    assert health(run, "L", on(1))["units_by_age"] == expected
    assert {
        age: run.value("cockpit_units_on_hand_by_age", ("FC1", age)) for age in expected
    } == expected


def test_picks_beyond_the_lots_leave_a_shortfall_that_stows_fill_first() -> None:
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-10), 5, sku="K"),
        e.picked("X1", on(-9), 8, sku="K"),  # 5 from the lot, 3 short
        e.stowed("R2", on(-2), 10, sku="K"),  # 3 fill the shortfall, 7 make a lot
        e.tick(after(0, 0)),
    )
    record = health(run, "K", on(0))
    assert record["on_hand"] == 7
    assert record["units_by_age"] == {"0-90": 7, "91-180": 0, "181-270": 0, "271-365": 0, "365+": 0}


@pytest.mark.parametrize("arrival", ["in time order", "reversed", "restored between"])
def test_a_windows_takes_leave_the_lots_fifo_leaves_wherever_they_fall(arrival: str) -> None:
    """A shard keeps a window's takes of an item as one sum (the lots are always
    the newest max(on hand, 0) units stowed). In time order: a lot of 5 from day
    -100, then in the last minute of day -1 a pick of 2, a stow of 10, a pick of
    2 and a stow of 6: the picks take 4 of the old lot, 1 stays 91-180 days old.
    Any arrival order within the lateness, and a snapshot between, agree."""
    e = Events()
    run = Run().feed(e.stowed("R0", on(-100), 5, sku="T"), e.tick(on(-1, 23, 58)))
    window = [
        e.picked("X1", on(-1, 23, 59 + 5 / 60), 2, sku="T"),
        e.stowed("R1", on(-1, 23, 59 + 10 / 60), 10, sku="T"),
        e.picked("X2", on(-1, 23, 59 + 20 / 60), 2, sku="T"),
        e.stowed("R2", on(-1, 23, 59 + 30 / 60), 6, sku="T"),
    ]
    if arrival == "reversed":
        window.reverse()
    if arrival == "restored between":
        run.feed(*window[:3])
        (family,) = [f for f in run.shard.families if f.NAME == "inventory"]
        (saved,) = family.export_state().values()
        assert saved[1][("FC1", "T")][-1] == (parse_time(on(-1, 23)), "", -4)  # the takes as one
        run = run.restored().feed(window[3])
    else:
        run.feed(*window)
    run.feed(e.tick(after(0, 0)))
    record = health(run, "T", on(0))
    assert record["on_hand"] == 5 - 2 + 10 - 2 + 6
    assert record["units_by_age"] == {
        "0-90": 16,
        "91-180": 1,
        "181-270": 0,
        "271-365": 0,
        "365+": 0,
    }


def spike_history(e: Events, sku: str, now: int) -> list[bytes]:
    """An item that exists from day -8, ordered 4 units at 10:00-11:00 on each of
    the 7 days before (baseline 4: a spike from 3 * 4 = 12 units), then `now`."""
    lines = [e.adjusted(on(-8, 9), 0, sku=sku)]
    lines += [order(e, f"{sku}-{day}", on(-day, 10, 10), sku, 4) for day in range(7, 0, -1)]
    return [*lines, order(e, f"{sku}-now", on(0, 10, 10), sku, now)]


def in_time_order(*lines: bytes) -> list[bytes]:
    return sorted(lines, key=lambda line: decode(line).ts)


def test_a_spike_exactly_at_the_factor_and_just_below() -> None:
    e = Events()
    history = in_time_order(*spike_history(e, "L", 12), *spike_history(e, "M", 11))
    run = Run().feed(*history, e.tick(after(0, 11)))
    assert alerts(run, "demand_spike") == [("L", on(0, 11))]
    (record,) = [r for r in run.records("alert") if r["alert"] == "demand_spike"]
    assert (record["window_start"], record["units"], record["baseline"]) == (on(0, 10), 12, 4.0)
    assert run.value("cockpit_demand_spikes_total", "FC1") == 1


def test_without_a_taker_of_records_a_days_close_makes_none_and_the_rest_stays() -> None:
    """Nothing takes KPI records (a replay without --kpis): the day's close makes no
    `sku_health` record, and its gauges and alerts are those of a run that makes them."""
    e = Events()
    lines = [
        e.stowed("R1", on(0, 1), 10, sku="A"),
        order(e, "O1", on(0, 2), "A", 4),
        order(e, "O2", on(0, 2), "B", 3),  # B has no stock: a stockout
        e.tick(after(1, 0)),
    ]
    taken, untaken = Run().feed(*lines), Run(takes_records=False).feed(*lines)
    assert {r["sku"] for r in taken.records("kpi") if r["kpi"] == "sku_health"} == {"A", "B"}
    assert [r for r in untaken.records("kpi") if r["kpi"] == "sku_health"] == []
    assert untaken.records("alert") == taken.records("alert") != []
    assert untaken.combine.ledger.series == taken.combine.ledger.series
    # B: out of stock, and below its safety stock (sigma of 3 units on one day of 28)
    assert (
        gauges(untaken)
        == gauges(taken)
        == {
            "tracked": 2,
            "out_of_stock": 1,
            "at_risk": 0,
            "excess": 0,
            "below_safety_stock": 1,
        }
    )


def test_an_item_new_within_the_spike_days_does_not_spike() -> None:
    """First seen at 10:10 seven days before: not strictly before a - 7 days."""
    e = Events()
    run = Run().feed(
        order(e, "N-7", on(-7, 10, 10), "N", 1),
        order(e, "N-now", on(0, 10, 10), "N", 50),
        e.tick(after(0, 11)),
    )
    assert alerts(run, "demand_spike") == []


def test_a_spike_alerts_again_only_after_a_close_without_it() -> None:
    e = Events()
    lines = spike_history(e, "P", 30)
    lines += [order(e, "P-next", on(0, 11, 10), "P", 30), e.tick(after(0, 12))]  # holds
    lines += [e.tick(after(0, 13)), order(e, "P-later", on(0, 13, 10), "P", 30)]  # a pause
    run = Run().feed(*lines, e.tick(after(0, 14)))
    assert alerts(run, "demand_spike") == [("P", on(0, 11)), ("P", on(0, 14))]


def test_an_item_leaves_after_90_quiet_days_at_zero_and_comes_back_new() -> None:
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 5, sku="Q"),
        e.picked("X1", on(0, 2), 5, sku="Q"),  # at 0 from the window of 02:00
        e.tick(after(90, 2)),  # 90 days after: [b - 90 d, b) still holds 02:xx
    )
    assert gauges(run)["tracked"] == 1
    run.feed(e.tick(after(90, 3)))
    assert gauges(run)["tracked"] == 0
    run.feed(e.adjusted(on(90, 4), 2, sku="Q"), e.tick(after(91, 0)))
    assert gauges(run)["tracked"] == 1
    assert health(run, "Q", on(91))["on_hand"] == 2  # only its new life's events


def ordered_on_two_days(e: Events) -> Run:
    """Q: 9 stowed, 3 ordered on day 0 and 2 on day 1; W at 06:00 of day 1."""
    return Run().feed(
        e.stowed("R1", on(0, 1), 9, sku="Q"),
        order(e, "O1", on(0, 2), "Q", 3),
        order(e, "O2", on(1, 5), "Q", 2),
        e.tick(after(1, 6)),
    )


def test_an_item_an_earlier_build_saved_restores_its_history() -> None:
    """Builds before 4557f84 kept an item's demand and day history as arrays in
    snapshots: they restore as the lists this build keeps, with the same values."""
    e = Events()
    run = ordered_on_two_days(e)
    item = run.combine.combiners["inventory"].items["FC1"]["Q"]
    restore, values = item.__reduce__()
    saved = list(values)
    for name in ("demand", "daily"):
        saved[ITEM_FIELDS.index(name)] = array("q", getattr(item, name))
    restored = restore(*saved)
    assert (type(restored.demand), type(restored.daily)) == (list, list)
    assert restored.demand == item.demand == [parse_time(on(0, 2)), 3, parse_time(on(1, 5)), 2]
    assert restored.daily == item.daily == [3]  # whole days: day 1 is not closed yet
    assert restore(*values).__reduce__() == (restore, values)


def test_a_snapshot_whose_days_held_the_open_day_upgrades_to_whole_days() -> None:
    """Inventory health's combine step at state version 3 kept the units of the
    day W is in among an item's days; the upgrade takes them out (the day's close
    adds the whole day, from the demand entries that hold them too), and leaves a
    snapshot taken at a day's close as it was."""
    e = Events()
    run = ordered_on_two_days(e)

    def as_version_3(add_open_day: bool) -> tuple[Any, dict[str, Any]]:
        """The combine snapshot as version 3 wrote it, and its upgrade's body."""
        header = pickle.loads(dump_combine(run.combine))
        body = pickle.loads(header["body"])
        item = body["combiners"]["inventory"]["state"]["items"][("FC1", "Q")]
        if add_open_day:
            item.daily.append(2)  # day 1's units so far
        header["versions"]["inventory"], header["body"] = 3, pickle.dumps(body)
        upgraded = upgrade(pickle.dumps(header))
        assert upgraded["versions"]["inventory"] == 4
        return item, body_of(upgraded)["combiners"]["inventory"]["state"]["items"]

    saved, items = as_version_3(add_open_day=True)
    assert saved.daily == [3, 2] and items[("FC1", "Q")].daily == [3]
    run.feed(e.tick(after(2)))
    saved, items = as_version_3(add_open_day=False)
    assert saved.daily == [3, 2] and items[("FC1", "Q")].daily == [3, 2]


def test_the_collector_never_scans_an_items_history_in_the_compiled_build() -> None:
    """An item's lots, demand and days can never be in a cycle: compiled, they are
    off the collector's list (made so, and restored so), where tens of thousands
    of them made each collection scan them all; interpreted, the collector keeps
    them (a list is never taken off it by itself). Its age bands are C numbers."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(0, 1), 9, sku="Q"),
        e.stowed("R2", on(0, 2), 4, sku="Q"),  # a second lot: the item's list of later lots
        order(e, "O1", on(0, 2), "Q", 3),
        e.tick(after(1, 6)),
    )
    item = run.combine.combiners["inventory"].items["FC1"]["Q"]
    restore, values = item.__reduce__()
    compiled = is_compiled(inventory)
    for state in (item, restore(*values)):
        assert state.lots and state.demand and state.daily and any(bands_of(state))
        lists = [gc.is_tracked(getattr(state, name)) for name in ("lots", "demand", "daily")]
        assert lists == [not compiled] * 3


@pytest.mark.parametrize(
    ("on_hand", "ordered", "safety"),
    [(20, 28, 22.6), (0, 0, 0.0), (-4, 3, 1e-7), (7, 0, 1e15), (5, 1, 2 / 3)],
)
def test_a_sku_health_record_is_written_as_orjson_would_write_its_object(on_hand, ordered, safety):
    """msgspec writes the record from its Struct: the same bytes as orjson's writing
    of the record's object built by hand (contract §5), field for field and number
    for number (below 10^16, where only the exponent's sign would differ)."""
    record = sku_health(
        "FC1", "H", "2026-11-20T00:00:00.000Z", "2026-11-21T00:00:00.000Z",
        on_hand, ordered, 28, safety, ("at_risk", "below_safety_stock"), (1, 2, 3, 4, 5),
    )  # fmt: skip
    by_hand = {
        "kpi": "sku_health",
        "fc": "FC1",
        "sku": "H",
        "window_start": "2026-11-20T00:00:00.000Z",
        "window_end": "2026-11-21T00:00:00.000Z",
        "on_hand": on_hand,
        "demand_per_day": ordered / 28,
        "cover_days": on_hand * 28 / ordered if ordered else None,
        "safety_stock": safety,
        "states": ["at_risk", "below_safety_stock"],
        "units_by_age": {"0-90": 1, "91-180": 2, "181-270": 3, "271-365": 4, "365+": 5},
    }
    assert record.value == orjson.dumps(by_hand)
    assert record.record == by_hand
    assert record.key == "sku_health|FC1|H|2026-11-21T00:00:00.000Z"


def test_an_order_line_counts_in_the_item_of_its_own_fc_when_the_label_folds() -> None:
    """A cap of 1: FC2 folds into `other` in the metrics, but its order line makes
    the item (FC2, B), whose stockout alert names FC2."""
    e = Events()
    run = Run(max_label_values=1).feed(
        e.stowed("R1", on(0, 1), 10, sku="A"),  # FC1 takes the one label
        order(e, "O1", on(0, 1), "B", 3, fc="FC2"),
        e.tick(after(0, 2)),
    )
    assert [(r["fc"], r["sku"]) for r in run.records("alert")] == [("FC2", "B")]
    assert run.value("cockpit_skus_out_of_stock", "other") == 1


def test_a_spike_needs_at_least_the_minimum_units() -> None:
    """Baseline 1 (one unit at 10:xx on each of the 7 days before): u = 10, exactly
    spike_min_units, spikes; u = 9 (three times the baseline and more) does not."""
    e = Events()
    lines = []
    for sku, now in (("U", 10), ("V", 9)):
        lines += [e.adjusted(on(-8, 9), 0, sku=sku)]
        lines += [order(e, f"{sku}-{day}", on(-day, 10, 10), sku, 1) for day in range(7, 0, -1)]
        lines += [order(e, f"{sku}-now", on(0, 10, 10), sku, now)]
    run = Run().feed(*in_time_order(*lines), e.tick(after(0, 11)))
    assert alerts(run, "demand_spike") == [("U", on(0, 11))]


def test_demand_exactly_demand_days_before_the_close_is_in_its_window() -> None:
    """7 ordered at 00:10 on day -7: its window [00:00, 01:00) starts exactly at
    b - 7 days for the close b = midnight of day 0, so it is in [b - 7 d, b): d = 1
    (it leaves at the close of 01:00). A stow at 23:30 on day -1 makes the item
    change at the close of midnight."""
    e = Events()
    run = Run().feed(
        order(e, "O1", on(-7, 0, 10), "W", 7),
        e.tick(after(-6)),
        e.stowed("R1", on(-1, 23, 30), 5, sku="W"),
        e.tick(after(0)),
    )
    record = health(run, "W", on(0))
    assert (record["on_hand"], record["demand_per_day"]) == (5, 1.0)


@pytest.mark.parametrize(
    ("day", "hour"),
    [(-1, 0), (-28, 10)],
    ids=["in the day's first window", "on the oldest of the 28 days"],
)
def test_safety_stock_counts_the_edges_of_its_days(day: int, hour: int) -> None:
    """28 units on one day of the 28 before day 0, as in the sigma test above: an
    order in the first window (00:xx) of day -1 counts in day -1, and day -28 is
    the first of the 28 whole days. Safety stock z * sqrt(27) * sqrt(7)."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-40, 9), 48, sku="H"),
        order(e, "O1", on(day, hour, 10), "H", 28),
        e.tick(after(0, 0)),
    )
    z = NormalDist().inv_cdf(0.95)
    assert health(run, "H", on(0))["safety_stock"] == pytest.approx(z * SIGMA * math.sqrt(7))


def test_a_pick_that_empties_the_oldest_lot_exactly_leaves_the_next_one_oldest() -> None:
    """Lots of 5 from day -200 and from day -100; a pick of 5 on day -50 takes
    the whole oldest lot, one of 2 on day -20 then takes from the lot of day
    -100: 3 left, 100 days old."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-200), 5, sku="K"),
        e.stowed("R2", on(-100), 5, sku="K"),
        e.picked("X1", on(-50), 5, sku="K"),
        e.picked("X2", on(-20), 2, sku="K"),
        e.tick(after(0, 0)),
    )
    record = health(run, "K", on(0))
    assert record["on_hand"] == 3
    assert record["units_by_age"] == {"0-90": 0, "91-180": 3, "181-270": 0, "271-365": 0, "365+": 0}


def test_an_item_with_negative_on_hand_and_no_demand_gets_its_record() -> None:
    """§5: a record for every item with on hand != 0 or d > 0: C, picked without
    stock, has on hand -5 and no state."""
    e = Events()
    run = Run().feed(e.picked("X1", on(0, 1), 5, sku="C"), e.tick(after(1, 0)))
    record = health(run, "C", on(1))
    assert (record["on_hand"], record["demand_per_day"], record["states"]) == (-5, 0, [])


def test_two_shards_moves_and_takes_of_one_window_add_up() -> None:
    """Both shards stow and pick item A in the window [12:00, 13:00): the combine
    step adds the second shard's moves and takes to the first's: 10 + 5 - 2 - 3."""
    e = Events()
    run = Run(shards=("0", "1"))
    run.feed(
        e.stowed("R1", on(0, 12, 10), 10, sku="A"),
        e.picked("X1", on(0, 12, 15), 2, sku="A"),
        e.tick(after(1, 0)),
        shard="0",
    )
    run.feed(
        e.stowed("R2", on(0, 12, 20), 5, sku="A"),
        e.picked("X2", on(0, 12, 25), 3, sku="A"),
        e.tick(after(1, 0)),
        shard="1",
    )
    assert health(run, "A", on(1))["on_hand"] == 10
    assert run.value("cockpit_units_on_hand_by_age", ("FC1", "0-90")) == 10


def test_stows_of_one_window_make_lots_in_time_order_whatever_their_arrival() -> None:
    """Two stows in the window [00:00, 01:00) of day -91, the later (00:00:30)
    first to arrive, within the lateness; a pick on day -50 takes the earlier one
    (00:00, 91 days old at midnight of day 0): the 5 left are 90 days old then."""
    e = Events()
    run = Run().feed(e.stowed("R2", on(-91, 0, 0.5), 5, sku="F"))
    run.feed(e.stowed("R1", on(-91), 5, sku="F"))
    run.feed(e.picked("X1", on(-50), 5, sku="F"), e.tick(after(0, 0)))
    record = health(run, "F", on(0))
    assert record["units_by_age"] == {"0-90": 5, "91-180": 0, "181-270": 0, "271-365": 0, "365+": 0}


def test_below_safety_stock_clears_when_the_order_day_leaves_the_28_days() -> None:
    """H is below its safety stock at day 0 (the sigma test above) and nothing
    happens to it after day 6; at the close of day 28 day -1 has left the 28 days:
    safety stock 0, excess (stock, no demand) only."""
    e = Events()
    run = Run().feed(
        e.stowed("R1", on(-1, 9), 48, sku="H"),
        order(e, "O1", on(-1, 10), "H", 28),
        e.picked("O1", on(-1, 11), 28, sku="H"),
        e.tick(after(27, 0)),
    )
    assert health(run, "H", on(27))["states"] == ["below_safety_stock", "excess"]
    run.feed(e.tick(after(28, 0)))
    record = health(run, "H", on(28))
    assert (record["safety_stock"], record["states"]) == (0, ["excess"])
    assert gauges(run)["below_safety_stock"] == 0


def test_published_items_are_made_once_per_close_and_again_after_a_restore() -> None:
    """The web API polls the items every 2 s per display: they change only at a close."""
    e = Events()
    run = Run().feed(e.adjusted(on(0, 8), 5), e.tick(on(0, 9, 1)))
    (source,) = run.combine.item_sources().values()
    first = source()
    assert source() is first
    assert [(i.sku, i.on_hand, i.as_of) for i in first] == [("S1", 5, parse_time(on(0, 9)))]
    run.feed(e.adjusted(on(0, 9, 30), 2))  # within the open window: no close
    assert source() is first
    run.feed(e.tick(on(0, 10, 1)))
    later = source()
    assert [(i.on_hand, i.as_of) for i in later] == [(7, parse_time(on(0, 10)))]
    (restored,) = run.restored().combine.item_sources().values()
    assert restored() is not later and restored() == later
