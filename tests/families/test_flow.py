"""The fulfilment flow (contract §3.3, §3.5): stage times, stage backlog and
bottlenecks, table tests through the shards and the combine stage, values
computed by hand.

Day 0 is Saturday 2026-11-21 (UTC). Settings are the defaults unless a case
says otherwise: lateness 60 s, 1 h windows, bottleneck_windows 3, bottleneck_min
25. A tick a minute after a close makes W pass it."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from flows.decode import decode
from flows.entities.orders import T_SHIPMENT
from flows.kpis import FAMILIES
from flows.kpis.upgrade import upgrade
from flows.kpisettings import KpiSettings
from flows.labels import LabelCap
from flows.runtime.consts import MIN_TS, NEVER, TAG_BITS
from flows.runtime.core import Shard
from flows.runtime.snapshot import dump_combine, dump_shard, load_combine, load_shard
from flows.settings import EngineConfig
from tests.scenario import Events, Run

ALERT_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "outputs" / "alert.json"
DAY0 = datetime(2026, 11, 21, tzinfo=UTC)
FAR = "2027-06-01T00:00:00Z"  # promises no case reaches
HOUR = 3600 * 10**6


def on(clock: str, day: int = 0) -> str:
    """RFC 3339 of day `day` at "HH:MM", "HH:MM:SS" or "HH:MM:SS.ffffff" UTC."""
    hours, minutes, *seconds = clock.split(":")
    moment = DAY0 + timedelta(
        days=day,
        hours=int(hours),
        minutes=int(minutes),
        seconds=float(seconds[0] if seconds else 0),
    )
    return moment.isoformat().replace("+00:00", "Z")


def order(e: Events, name: str, clock: str, fc: str = "FC1", promise: str = FAR) -> bytes:
    return e.placed(name, on(clock), promise, promise, fc=fc)


def packed(e: Events, name: str, clock: str) -> bytes:
    return e("inventory.packed", on(clock), order_id=name, fc="FC1")


def histogram(run: Run, name: str) -> list[Any]:
    """FC1's buckets (not cumulated), +Inf, and sum (in seconds; kept in whole µs)
    of a stage-time histogram."""
    found: list[Any] = run.series(name).get("FC1", [])
    return [*found[:-1], found[-1] / 10**6] if found else []


def backlog(run: Run) -> dict[tuple[str, str], int]:
    """The stage backlog gauges that are not 0."""
    return {k: v for k, v in run.combine.ledger.series["cockpit_stage_backlog"].items() if v}


def bottlenecks(run: Run) -> list[tuple[str, str, str, int, list[int]]]:
    """(fc, stage, window_end, backlog, samples) of each bottleneck alert, as written."""
    return [
        (r["fc"], r["stage"], r["window_end"], r["backlog"], r["samples"])
        for r in run.records("alert")
        if r["alert"] == "bottleneck"
    ]


def flags(run: Run) -> dict[tuple[str, str], int]:
    return {k: v for k, v in run.combine.ledger.series["cockpit_bottleneck"].items() if v}


def orders_per_window(e: Events, fc: str, per_window: dict[str, int]) -> list[bytes]:
    """`n` orders placed (never picked) at the start of each window "HH:MM"."""
    return [
        order(e, f"{fc}-{start}-{i}", start, fc=fc)
        for start, n in per_window.items()
        for i in range(n)
    ]


def in_time_order(lines: list[bytes]) -> list[bytes]:
    return sorted(lines, key=lambda line: str(json.loads(line)["ts"]))


def test_stage_times_out_of_order_within_the_lateness_and_with_a_missing_stage() -> None:
    """o1's later pick, pack and shipment arrive first; o2 is never packed (no
    pick to pack, no pack to ship); o3 is packed without a pick; o4's pick comes
    before it is placed (-30 s). Each is observed once W reaches its later time."""
    e = Events()
    run = Run().feed(
        e.picked("o4", on("07:59:30")),  # held until o4 is placed
        order(e, "o4", "08:00"),
        order(e, "o1", "08:00"),
        order(e, "o2", "08:00"),
        order(e, "o3", "08:00"),
        packed(e, "o3", "08:02"),
        e.picked("o2", on("08:05")),
        e.picked("o1", on("08:10:30")),
        e.picked("o1", on("08:10")),  # W is 08:09:30: not late, and the earliest
        e.tick(on("08:10:59")),
    )
    # W = 08:09:59: o4 (-30 s) and o2 (300 s) are decided, o1 waits for W >= 08:10
    assert histogram(run, "cockpit_pick_wait_seconds") == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 270.0]
    run.feed(e.tick(on("08:11")))
    assert histogram(run, "cockpit_pick_wait_seconds") == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 870.0]
    run.feed(
        e.shipped("o3", on("08:12")),
        packed(e, "o1", "08:20"),
        packed(e, "o1", "08:19:30"),  # k2 = 08:19:30: pick to pack 570 s
        e.shipped("o2", on("08:25")),
        e.shipped("o1", on("08:30")),
        e.tick(on("08:30:59")),
    )
    assert histogram(run, "cockpit_pick_to_pack_seconds") == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 570.0]
    # o3: 600 s; o1 (08:19:30 -> 08:30) not before W reaches 08:30
    assert histogram(run, "cockpit_pack_to_ship_seconds") == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 600.0]
    run.feed(e.tick(on("09:00")))
    assert histogram(run, "cockpit_pack_to_ship_seconds") == [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1230.0]
    assert histogram(run, "cockpit_pick_wait_seconds")[-2:] == [0, 870.0]  # each once
    assert sum(histogram(run, "cockpit_pick_to_pack_seconds")[:-1]) == 1  # none of o2, o3


def test_pack_to_ship_waits_for_the_later_of_pack_and_shipment_as_they_move() -> None:
    """o5 is packed after it shipped: observed (-30 s) once W reaches the pack,
    not the shipment. o6's pack moves from after its shipment to before it:
    observed once (10 s), when the shipment is final. o7's shipment moves before
    its pack: observed once (-35 s), when W reaches the pack."""
    e = Events()
    run = Run().feed(
        order(e, "o5", "08:00"),
        order(e, "o6", "08:00"),
        order(e, "o7", "08:00"),
        e.shipped("o5", on("08:10:00")),
        packed(e, "o5", "08:10:30"),
        e.shipped("o6", on("08:10:00")),
        packed(e, "o6", "08:10:20"),
        packed(e, "o6", "08:09:50"),
        packed(e, "o7", "08:10:40"),
        e.shipped("o7", on("08:10:50")),
        e.shipped("o7", on("08:10:05")),
    )  # W = 08:09:50: no shipment is final
    assert histogram(run, "cockpit_pack_to_ship_seconds") == []
    run.feed(e.tick(on("08:11:05")))  # W = 08:10:05: every shipment is final
    assert histogram(run, "cockpit_pack_to_ship_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0]
    run.feed(e.tick(on("08:11:45")))  # W = 08:10:45: o5's and o7's packs too
    assert histogram(run, "cockpit_pack_to_ship_seconds") == [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, -55.0]
    run.feed(e.tick(on("10:00")))
    assert histogram(run, "cockpit_pack_to_ship_seconds")[0] == 3  # each once


def test_a_pack_at_the_time_of_a_shipment_already_final_is_observed() -> None:
    """W reaches o8's shipment (08:10) before its pack at the same time arrives:
    that pack (ts = W, not late) is observed (0 s), as when it comes first."""
    e = Events()
    run = Run().feed(
        order(e, "o8", "08:00"),
        e.shipped("o8", on("08:10")),
        e.tick(on("08:11")),  # W = 08:10: the shipment is final, with no pack yet
        packed(e, "o8", "08:10"),
        e.tick(on("09:00")),
    )
    assert histogram(run, "cockpit_pack_to_ship_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]


def test_the_retention_of_a_receipt_id_used_again_is_its_own() -> None:
    """r1 completes at 00:30; received again at 01:30 it is a new receipt (15 min
    windows), in the stow backlog until its stow at 03:15: not dropped at the
    first one's deadline (02:00), nor held to its own (03:30)."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=2 * HOUR, window=HOUR // 4)).feed(
        e.received("r1", on("00:00"), 5),
        e.stowed("r1", on("00:30"), 5),
        e.tick(on("00:31")),
        e.received("r1", on("01:30"), 5),
        e.tick(on("03:01")),
    )
    assert backlog(run) == {("FC1", "stow"): 1}
    run.feed(e.stowed("r1", on("03:15"), 5), e.tick(on("03:31")))
    assert backlog(run) == {}


def test_stage_backlog_across_a_window_boundary() -> None:
    """As of b counts facts with ts < b: a pick, stow or order at 11:00 exactly
    counts only at the 12:00 close. o2, packed without a pick, waits to ship."""
    e = Events()
    run = Run().feed(
        order(e, "o2", "10:10"),
        order(e, "o3", "10:15"),
        packed(e, "o2", "10:20"),
        e.received("r1", on("10:30"), 5),
        e.stowed("r1", on("10:45"), 2),
        order(e, "o1", "10:59:59"),
        e.picked("o1", on("11:00")),
        e.stowed("r1", on("11:00"), 3),  # completes r1, not as of 11:00
        order(e, "o4", "11:00"),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {("FC1", "pick"): 2, ("FC1", "ship"): 1, ("FC1", "stow"): 1}
    run.feed(
        e.cancelled("o3", on("11:30")),
        e.received("r2", on("11:59:59.999999"), 1, fc="FC2"),
        e.shipped("o2", on("12:00")),  # shipped as of 13:00, not as of 12:00
        e.tick(on("12:01")),
    )
    assert backlog(run) == {
        ("FC1", "pick"): 1,  # o4
        ("FC1", "pack"): 1,  # o1
        ("FC1", "ship"): 1,  # o2
        ("FC2", "stow"): 1,  # r2
    }
    run.feed(e.tick(on("13:01")))
    assert backlog(run) == {("FC1", "pick"): 1, ("FC1", "pack"): 1, ("FC2", "stow"): 1}
    assert run.combine.ledger.series["cockpit_stage_backlog"]["FC2", "pick"] == 0


def test_earlier_facts_arriving_later_move_orders_and_receipts_back_across_a_close() -> None:
    """Within the lateness: o1's earlier pick puts it in `pack` as of 11:00, o2's
    earlier shipment takes it out; r1's earlier stows complete it before 11:00."""
    e = Events()
    run = Run().feed(
        order(e, "o1", "10:00"),
        order(e, "o2", "10:00"),
        e.received("r1", on("10:00"), 4),
        e.picked("o1", on("11:00:20")),
        e.shipped("o2", on("11:00:10")),
        e.stowed("r1", on("11:00:30"), 2),  # W = 10:59:30 from here on
        e.stowed("r1", on("10:59:45"), 2),  # completes r1 at 11:00:30 still
        e.tick(on("11:00:31")),
    )
    run.feed(e.picked("o1", on("10:59:40")), e.shipped("o2", on("10:59:50")))
    assert backlog(run) == {}  # 11:00 not closed yet
    run.feed(e.stowed("r1", on("10:59:50"), 2), e.tick(on("11:01")))  # completes at 10:59:50
    assert backlog(run) == {("FC1", "pack"): 1}


def test_a_bottleneck_exactly_at_the_minimum() -> None:
    """FC1's pick backlog rises 5, 15, 25 over the closes 11:00-13:00 (from 0 at
    10:00): a bottleneck at 25; FC2's stops at 24."""
    e = Events()
    placed = [
        *orders_per_window(e, "FC1", {"10:00": 5, "11:00": 10, "12:00": 10}),
        *orders_per_window(e, "FC2", {"10:00": 5, "11:00": 10, "12:00": 9}),
    ]
    run = Run().feed(*in_time_order(placed), e.tick(on("12:01")))
    assert bottlenecks(run) == []  # two rises so far
    run.feed(e.tick(on("13:30")))
    assert bottlenecks(run) == [("FC1", "pick", on("13:00"), 25, [5, 15, 25])]
    assert flags(run) == {("FC1", "pick"): 1}
    assert run.value("cockpit_bottleneck", ("FC2", "pick")) == 0
    assert run.value("cockpit_bottlenecks_total", ("FC1", "pick")) == 1
    assert backlog(run) == {("FC1", "pick"): 25, ("FC2", "pick"): 24}
    schema = Draft202012Validator(
        json.loads(ALERT_SCHEMA.read_text()), format_checker=FormatChecker()
    )
    for kind, key, record in run.outputs:
        if kind == "alert" and record["alert"] == "bottleneck":
            schema.validate(record)
            assert key == f"bottleneck|FC1|pick|{record['window_end']}"
            assert record["decided_ts"] == on("13:29")
    run.feed(e.tick(on("14:01")))  # holds still at 14:00: no longer a bottleneck
    assert flags(run) == {} and len(bottlenecks(run)) == 1


def test_a_bottleneck_whose_rise_pauses_for_a_window() -> None:
    """Backlog 10, 20, 20 (pause), 30, 40, 50, 60 at 11:00 .. 17:00: the run of
    rises starts again after the pause, a bottleneck at 16:00 that still holds at
    17:00 (no second alert); 30 orders ship, and 40, 50, 60 at 19:00-21:00 make
    a second one."""
    e = Events()
    placed = orders_per_window(
        e, "FC1", {"10:00": 10, "11:00": 10, "13:00": 10, "14:00": 10, "15:00": 10, "16:00": 10}
    )
    run = Run().feed(*placed, e.tick(on("17:01")))
    assert bottlenecks(run) == [("FC1", "pick", on("16:00"), 50, [30, 40, 50])]
    assert flags(run) == {("FC1", "pick"): 1}  # 60 at 17:00: still rising
    names = [json.loads(line)["order_id"] for line in placed[:30]]
    run.feed(*(e.shipped(name, on("17:30")) for name in names), e.tick(on("18:01")))
    assert flags(run) == {} and backlog(run) == {("FC1", "pick"): 30}
    more = orders_per_window(e, "FC1", {"18:00": 10, "19:00": 10, "20:00": 10})
    run.feed(*more, e.tick(on("21:01")))
    assert [(end, samples) for *_, end, _b, samples in bottlenecks(run)] == [
        (on("16:00"), [30, 40, 50]),
        (on("21:00"), [40, 50, 60]),
    ]
    assert run.value("cockpit_bottlenecks_total", ("FC1", "pick")) == 2
    two = replace(EngineConfig(), kpi=KpiSettings(bottleneck_windows=2))
    shorter = Run(two).feed(*placed[:50], e.tick(on("15:01")))
    assert [(end, samples) for *_, end, _b, samples in bottlenecks(shorter)] == [
        (on("15:00"), [30, 40])
    ]


def test_a_stow_backlog_bottleneck_and_quiet_windows() -> None:
    """Receipts received 10 an hour and never stowed: stow rises 10 .. 30; a
    receipt completes. Quiet hours after that change nothing, and a jump of W
    over days takes no time."""
    e = Events()
    received = [
        e.received(f"r{hour}-{i}", on(f"{hour}:00"), 2) for hour in (10, 11, 12) for i in range(10)
    ]
    run = Run(replace(EngineConfig(), kpi=KpiSettings(bottleneck_min=30)))
    run.feed(*received, e.tick(on("13:01")))
    assert bottlenecks(run) == [("FC1", "stow", on("13:00"), 30, [10, 20, 30])]
    run.feed(e.stowed("r10-0", on("13:30"), 2), e.tick(on("14:01")))
    assert backlog(run) == {("FC1", "stow"): 29} and flags(run) == {}
    run.feed(e.tick(on("14:01", day=400)))
    assert backlog(run) == {("FC1", "stow"): 29} and len(bottlenecks(run)) == 1


def test_the_retention_takes_open_orders_and_receipts_out_at_their_deadline() -> None:
    """With a 1 h retention, an order promised for 10:00 and a receipt received at
    10:00 leave state at 11:00: in the 11:00 backlog, not in the 12:00 one."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=HOUR)).feed(
        order(e, "o1", "09:30", promise=on("10:00")),
        e.received("r1", on("10:00"), 5),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {("FC1", "pick"): 1, ("FC1", "stow"): 1}
    run.feed(e.tick(on("12:01")))
    assert backlog(run) == {}


def test_shards_add_up_and_a_close_is_final_once_every_shard_passed_it() -> None:
    e = Events()
    run = Run(shards=("a", "b"))
    run.feed(order(e, "o1", "10:00"), e.tick(on("11:01")), shard="a")
    assert backlog(run) == {}  # shard b has not reached 11:00
    run.feed(order(e, "o2", "10:30"), e.picked("o2", on("10:40")), e.tick(on("11:01")), shard="b")
    assert backlog(run) == {("FC1", "pick"): 1, ("FC1", "pack"): 1}


def test_fcs_folded_into_other_share_one_backlog() -> None:
    e = Events()
    run = Run(max_label_values=1).feed(
        order(e, "o1", "10:00", fc="FC1"),
        order(e, "o2", "10:00", fc="FC2"),
        order(e, "o3", "10:00", fc="FC3"),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {("FC1", "pick"): 1, ("other", "pick"): 2}


def test_steps_runs_of_rises_and_stage_timers_survive_a_snapshot() -> None:
    e = Events()
    before = [
        *orders_per_window(e, "FC1", {"10:00": 10, "11:00": 10}),
        e.picked("FC1-10:00-0", on("11:30")),
        e.tick(on("12:01")),
        order(e, "late", "12:10"),
        e.picked("late", on("12:15")),  # its pick wait is observed after the snapshot
    ]
    after = [
        e.picked("FC1-10:00-0", on("11:29")),  # W is 12:09: late, ignored
        packed(e, "late", "12:20"),
        *orders_per_window(e, "FC1", {"12:30": 10}),
        e.tick(on("13:01")),
    ]
    whole = Run().feed(*before).feed(*after)
    resumed = Run().feed(*before).restored().feed(*after)
    assert bottlenecks(whole) == [("FC1", "pick", on("13:00"), 29, [10, 19, 29])]
    assert bottlenecks(resumed) == bottlenecks(whole)
    assert backlog(resumed) == backlog(whole)
    assert backlog(whole) == {("FC1", "pick"): 29, ("FC1", "pack"): 1, ("FC1", "ship"): 1}
    for name in ("cockpit_pick_wait_seconds", "cockpit_pick_to_pack_seconds"):
        assert histogram(resumed, name) == histogram(whole, name)
    assert histogram(whole, "cockpit_pick_wait_seconds")[-1] == 5400.0 + 300.0
    assert histogram(whole, "cockpit_pick_to_pack_seconds") == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 300.0]


def restored_without_flow(lines: list[bytes]) -> Run:
    """A run restored from a snapshot of a shard that ran `lines` without the flow
    family (new since the snapshot)."""
    without = tuple(family for family in FAMILIES if family.NAME != "flow")
    old = Shard("0", EngineConfig(), LabelCap(1000), without)
    old.process("input", [decode(line) for line in lines])
    resumed = Run()
    resumed.shard = resumed.every["0"] = load_shard(
        dump_shard(old), EngineConfig(), resumed.shard.labels, FAMILIES, upgrade
    )
    return resumed


def test_a_snapshot_taken_without_the_flow_family_restores_every_open_backlog() -> None:
    """The family is new since the snapshot: it takes the steps of the orders and
    receipts in state then, and goes on as if it had always run."""
    e = Events()
    before = [
        order(e, "o1", "10:00"),
        order(e, "o2", "10:05"),
        e.picked("o2", on("10:10")),
        order(e, "o3", "10:20"),
        packed(e, "o3", "10:30"),
        e.received("r1", on("10:40"), 4),
        e.stowed("r1", on("10:50"), 1),
        e.tick(on("11:30")),
    ]
    after = [e.picked("o1", on("11:40")), e.shipped("o3", on("11:45")), e.tick(on("12:01"))]
    whole = Run().feed(*before).feed(*after)
    resumed = restored_without_flow(before).feed(*after)
    expected = {("FC1", "pack"): 2, ("FC1", "stow"): 1}
    assert backlog(resumed) == backlog(whole) == expected
    assert histogram(resumed, "cockpit_pick_wait_seconds") == histogram(
        whole, "cockpit_pick_wait_seconds"
    )


def test_a_snapshot_without_the_flow_family_keeps_a_cancelled_order_out_of_the_backlog() -> None:
    """o1 is cancelled at 10:55 and shipped at 12:00:05, after that; the snapshot is
    taken at W = 11:59:10, the shipment not final yet. Cancelled, o1 is in no
    backlog at the 12:00 close (nor at 13:00), not in `pick` until its shipment."""
    e = Events()
    before = [
        order(e, "o1", "10:45"),
        e.cancelled("o1", on("10:55")),
        e.shipped("o1", on("12:00:05")),
        e.tick(on("12:00:10")),  # W = 11:59:10
    ]
    resumed = restored_without_flow(before).feed(e.tick(on("12:01")))
    assert backlog(resumed) == {}
    resumed.feed(e.tick(on("13:01")))
    assert backlog(resumed) == {}


RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release-3862025"


def test_a_pack_of_an_order_picked_before_the_upgrade_observes_no_pick_to_pack() -> None:
    """A snapshot of the release before KPI families (tests/fixtures/release-3862025,
    W 2026-11-20T17:19:19.615Z): ORD-11-00000225 (FC-ORD1) was picked then, at a
    time that release did not keep, and not packed. Its pack at 17:25 is in the
    stage backlog but observes no pick to pack (README, Updates: a pick at an
    unknown time observes no stage time), not 17:25 minus the minimum time."""
    run = Run()
    run.shard = run.every["0"] = load_shard(
        (RELEASE / "shards.snapshot").read_bytes(),
        EngineConfig(),
        run.shard.labels,
        FAMILIES,
        upgrade,
    )
    book = run.orders()
    assert book["ORD-11-00000225"].picked == MIN_TS  # the flow family's UNKNOWN_TIME
    assert book["ORD-11-00000225"].packed == NEVER
    before = list(run.series("cockpit_pick_to_pack_seconds").get("FC-ORD1", []))
    e = Events()
    run.feed(
        e("inventory.packed", "2026-11-20T17:25:00Z", order_id="ORD-11-00000225", fc="FC-ORD1"),
        e.tick("2026-11-20T17:30:00Z"),
    )
    assert run.orders()["ORD-11-00000225"].packed < NEVER  # the pack applied
    assert run.series("cockpit_pick_to_pack_seconds").get("FC-ORD1", []) == before


def test_the_retention_takes_an_order_out_of_the_backlog_at_its_later_promise() -> None:
    """o1's ship promise (12:00) is later than its delivery promise (10:00), so its
    retention deadline is 12:00 + the retention. Restarted with the retention
    lengthened from 1 h to 3 h, it leaves state at the old deadline (W past
    13:00) and the stage backlog at the new one, 15:00 (README, Updates:
    "Lengthened"): in the pick backlog at the 14:00 and 15:00 closes, out at
    16:00; never at 10:00 + 3 h. Without the restart W passes 13:00 before it
    leaves: in the 13:00 backlog, out at 14:00."""
    e = Events()
    placed = e.placed("o1", on("09:30"), on("12:00"), on("10:00"))
    one_hour = replace(EngineConfig(), retention=HOUR)
    run = Run(one_hour).feed(placed, e.tick(on("12:01")))
    assert backlog(run) == {("FC1", "pick"): 1}
    three_hours = replace(EngineConfig(), retention=3 * HOUR)
    resumed = Run(three_hours)
    resumed.shard = resumed.every["0"] = load_shard(
        dump_shard(run.shard), three_hours, resumed.shard.labels, FAMILIES, upgrade
    )
    load_combine(dump_combine(run.combine), resumed.combine, upgrade)
    run.feed(e.tick(on("13:01")))
    resumed.feed(e.tick(on("13:01")))
    assert backlog(run) == backlog(resumed) == {("FC1", "pick"): 1}
    run.feed(e.tick(on("14:01")))
    resumed.feed(e.tick(on("14:01")))
    assert "o1" not in run.orders() and "o1" not in resumed.orders()
    assert backlog(run) == {}
    assert backlog(resumed) == {("FC1", "pick"): 1}
    resumed.feed(e.tick(on("15:01")))
    assert backlog(resumed) == {("FC1", "pick"): 1}
    resumed.feed(e.tick(on("16:01")))
    assert backlog(resumed) == {}


def as_version_2_at_its_shipment(data: bytes, order_id: str) -> bytes:
    """A shard snapshot taken with W at the order's earliest shipment, as the order
    entity at state version 2 wrote it (README, Updates: a shipment was final once
    W reached it): the order `final`, its shipment timer fired, version 2."""
    header = pickle.loads(data)
    body = pickle.loads(header["body"])
    saved = body["families"]["orders_entity"]["state"]["orders"][order_id]
    assert saved.shipped == body["runtime"]["watermark"]
    saved.final = True
    entity = body["family_order"].index("orders_entity") << TAG_BITS | T_SHIPMENT
    timers = body["runtime"]["timers"]
    body["runtime"]["timers"] = [t for t in timers if (t[1], t[2]) != (entity, order_id)]
    assert len(body["runtime"]["timers"]) == len(timers) - 1
    header["versions"]["orders_entity"] = 2
    header["body"] = pickle.dumps(body)
    return pickle.dumps(header)


def test_a_pack_at_a_shipment_final_since_an_upgrade_is_observed() -> None:
    """Restored from a version-2 snapshot taken at W = 08:10, o8's shipment at
    08:10 is final already (that version made it final once W reached it, and
    told every family then). Its pack at 08:10 (ts = W, not late) is observed at
    once (0 s): no announcement of the shipment is left to find it. (Today a
    shipment is final only once W passes it, so a pack at its time arriving
    later always has k2 > s, or comes while the shipment is not final.)"""
    e = Events()
    run = Run().feed(
        order(e, "o8", "08:00"),
        e.shipped("o8", on("08:10")),
        e.tick(on("08:11")),  # W = 08:10: the shipment is not final today
    )
    resumed = Run()
    resumed.shard = resumed.every["0"] = load_shard(
        as_version_2_at_its_shipment(dump_shard(run.shard), "o8"),
        EngineConfig(),
        resumed.shard.labels,
        FAMILIES,
        upgrade,
    )
    assert resumed.orders()["o8"].final
    resumed.feed(packed(e, "o8", "08:10"))
    assert histogram(resumed, "cockpit_pack_to_ship_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]
    resumed.feed(e.tick(on("09:00")))
    assert histogram(resumed, "cockpit_pack_to_ship_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]


def test_an_order_packed_before_its_pick_goes_from_pick_straight_to_ship() -> None:
    """o1 is packed at 10:30 and picked only at 11:30, in the next window: its
    furthest stage is `ship` from 10:30 (contract §3.3), so it is in `ship` at
    the 11:00 and 12:00 closes and never in `pack` (no -1 there, nor in `pick`)."""
    e = Events()
    run = Run().feed(order(e, "o1", "10:00"), packed(e, "o1", "10:30"), e.tick(on("11:01")))
    assert backlog(run) == {("FC1", "ship"): 1}
    run.feed(e.picked("o1", on("11:30")), e.tick(on("12:01")))
    assert backlog(run) == {("FC1", "ship"): 1}


def test_a_flat_backlog_is_no_rise() -> None:
    """30 orders at 10:00; in each of the next three windows one order is placed and
    one picked: the pick backlog stays at 30 (30 at 11:00 .. 14:00) while the pack
    backlog rises 1, 2, 3. Holding still is no strict rise: no bottleneck."""
    e = Events()
    lines = orders_per_window(e, "FC1", {"10:00": 30})
    for n, hour in enumerate(("11", "12", "13")):
        lines += [order(e, f"n{n}", f"{hour}:10"), e.picked(f"FC1-10:00-{n}", on(f"{hour}:20"))]
    run = Run().feed(*lines, e.tick(on("14:01")))
    assert backlog(run) == {("FC1", "pick"): 30, ("FC1", "pack"): 3}
    assert bottlenecks(run) == [] and flags(run) == {}


def test_a_bottleneck_alert_holds_the_last_bottleneck_windows_rises() -> None:
    """Backlog 10, 20, 30, 40 at 11:00 .. 14:00, bottleneck_min 35: four rises in a
    row, the bottleneck at 40; its samples are the last 3 (bottleneck_windows)."""
    e = Events()
    placed = orders_per_window(e, "FC1", {"10:00": 10, "11:00": 10, "12:00": 10, "13:00": 10})
    run = Run(replace(EngineConfig(), kpi=KpiSettings(bottleneck_min=35)))
    run.feed(*placed, e.tick(on("14:01")))
    assert bottlenecks(run) == [("FC1", "pick", on("14:00"), 40, [20, 30, 40])]


def test_an_earlier_cancellation_of_a_shipped_order_leaves_the_ship_backlog_alone() -> None:
    """o1, packed, ships at 10:30 and is out of every backlog from then. Cancelled at
    12:00:30, then (arriving later, within the lateness) at 12:00: its end stays
    the shipment, so the ship backlog stays 0 at the 12:00 and 13:00 closes."""
    e = Events()
    run = Run().feed(
        order(e, "o1", "10:00"),
        packed(e, "o1", "10:10"),
        e.shipped("o1", on("10:30")),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {}
    run.feed(
        e.cancelled("o1", on("12:00:30")),  # W = 11:59:30
        e.cancelled("o1", on("12:00")),
        e.tick(on("12:01")),
    )
    assert backlog(run) == {}
    run.feed(e.tick(on("13:01")))
    assert backlog(run) == {}


def test_a_pick_before_the_order_is_placed_waits_for_w_to_reach_the_placement() -> None:
    """o1's pick (08:00) arrives before o1 is placed (08:00:40, W 08:00:30 then):
    the pick wait (-40 s) is observed once W reaches p, the later of the two, not
    once W passes the pick."""
    e = Events()
    run = Run().feed(
        e.picked("o1", on("08:00")),  # held until o1 is placed
        e.tick(on("08:01:30")),  # W = 08:00:30
        order(e, "o1", "08:00:40"),
        e.tick(on("08:01:35")),  # W = 08:00:35: past the pick, not the placement
    )
    assert histogram(run, "cockpit_pick_wait_seconds") == []
    run.feed(e.tick(on("08:01:40")))  # W = 08:00:40
    assert histogram(run, "cockpit_pick_wait_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, -40.0]


def test_a_pick_at_the_placement_time_arriving_later_moves_the_order_to_pack() -> None:
    """o1 is placed and picked at 10:00, the pick arriving second: its furthest
    stage as of 11:00 is picked, so it waits in `pack`, not in `pick`."""
    e = Events()
    run = Run().feed(order(e, "o1", "10:00"), e.picked("o1", on("10:00")), e.tick(on("11:01")))
    assert backlog(run) == {("FC1", "pack"): 1}


def test_a_pack_before_the_pick_observes_a_negative_pick_to_pack() -> None:
    """o1 is packed at 10:30 and picked at 11:30: pick to pack k2 - k1 is -3600 s,
    observed once W reaches the pick (the later time)."""
    e = Events()
    run = Run().feed(
        order(e, "o1", "10:00"),
        packed(e, "o1", "10:30"),
        e.picked("o1", on("11:30")),
        e.tick(on("11:30:59")),  # W = 11:29:59
    )
    assert histogram(run, "cockpit_pick_to_pack_seconds") == []
    run.feed(e.tick(on("11:31")))  # W = 11:30
    assert histogram(run, "cockpit_pick_to_pack_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3600.0]


def test_an_earlier_shipment_after_the_cancellation_leaves_the_backlog_alone() -> None:
    """o1 is cancelled at 10:20, so out of every backlog from then on; shipped at
    11:00:30 and then (within the lateness) at 10:59:50, both after the
    cancellation: no close counts it."""
    e = Events()
    run = Run().feed(
        order(e, "o1", "10:00"),
        e.cancelled("o1", on("10:20")),
        e.shipped("o1", on("11:00:30")),  # W = 10:59:30
        e.shipped("o1", on("10:59:50")),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {}
    run.feed(e.tick(on("12:01")))
    assert backlog(run) == {}


def test_a_receipt_completes_at_its_stows_in_time_order_not_arrival_order() -> None:
    """r1 (4 units) is stowed 2 at 11:00:30, then (within the lateness) 2 at
    10:59:45: the stowed quantity reaches 4 only at 11:00:30, so r1 is in the
    stow backlog as of 11:00 and out of it as of 12:00."""
    e = Events()
    run = Run().feed(
        e.received("r1", on("10:00"), 4),
        e.stowed("r1", on("11:00:30"), 2),
        e.stowed("r1", on("10:59:45"), 2),
        e.tick(on("11:01")),
    )
    assert backlog(run) == {("FC1", "stow"): 1}
    run.feed(e.tick(on("12:01")))
    assert backlog(run) == {}


def test_a_later_pick_arriving_first_waits_for_an_earlier_one_before_pick_to_pack() -> None:
    """o1 is picked at 10:00:50 and packed at 10:00:10; W passes the pack, then a
    pick at 10:00:30 (not late) becomes the earliest: pick to pack is observed
    once, -20 s, once W reaches the earliest pick."""
    e = Events()
    run = Run().feed(
        order(e, "o1", "10:00"),
        e.picked("o1", on("10:00:50")),  # W = 09:59:50
        packed(e, "o1", "10:00:10"),
        e.tick(on("10:01:20")),  # W = 10:00:20: past the pack, not the pick
        e.picked("o1", on("10:00:30")),
        e.tick(on("11:00")),
    )
    assert histogram(run, "cockpit_pick_to_pack_seconds") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, -20.0]


def test_a_receipt_leaving_at_its_retention_keeps_the_pick_backlog_rising() -> None:
    """With a 1 h retention, r1 (received 10:00, never stowed) leaves the stow
    backlog at 11:00 while FC1's pick backlog rises 10, 20, 30 at 11:00 .. 13:00
    (fed a window at a time): a pick bottleneck at 13:00 all the same."""
    e = Events()
    placed = orders_per_window(e, "FC1", {"10:00": 10, "11:00": 10, "12:00": 10})
    run = Run(replace(EngineConfig(), retention=HOUR))
    run.feed(e.received("r1", on("10:00"), 5), *placed[:10], e.tick(on("11:01")))
    run.feed(*placed[10:20], e.tick(on("12:01")))  # W passes r1's deadline
    run.feed(*placed[20:], e.tick(on("13:01")))
    assert bottlenecks(run) == [("FC1", "pick", on("13:00"), 30, [10, 20, 30])]
    assert backlog(run) == {("FC1", "pick"): 30}
