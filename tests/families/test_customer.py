"""The customer family (contract §3.4): cancellation, return and click-through
ratios per closed window through the combine stage, and cancelled orders and
returned units by reason. Values computed by hand; windows are 1 h from 08:00."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flows.kpis import FAMILIES
from flows.kpis.upgrade import upgrade
from flows.runtime.snapshot import dump_shard, load_shard
from flows.schemas import output_schemas
from flows.settings import EngineConfig
from tests.scenario import Events, Run, at, us

HOUR = 3600 * 10**6
LATER = (at(600), at(3000))  # ship and delivery promises no case reaches


def ratios(run: Run, kpi: str) -> dict[tuple[str, str], tuple[int, int, float]]:
    """{(fc or widget, window start): (numerator, divisor, value)} of one kind."""
    owner = "widget" if kpi == "click_through_ratio" else "fc"
    found = {}
    for _kind, key, r in run.outputs:
        if r.get("kpi") == kpi:
            assert key == f"{kpi}|{r[owner]}|{r['window_start']}"
            assert us(r["window_end"]) - us(r["window_start"]) == HOUR
            found[r[owner], r["window_start"]] = (r["numerator"], r["divisor"], r["value"])
    return found


def gauge(run: Run, metric: str) -> dict[Any, Any]:
    return dict(run.combine.ledger.series[metric])


def nonzero(run: Run, metric: str) -> dict[Any, Any]:
    return {key: value for key, value in run.series(metric).items() if value}


def test_cancellation_ratio_and_cancelled_orders_by_reason():
    e = Events()
    run = Run().feed(
        e.placed("O7", at(-30), *LATER, fc="FC3"),
        e.placed("O1", at(0), *LATER),
        e.placed("O6", at(5), *LATER, fc="FC2"),
        e.shipped("O6", at(6), fc="FC2"),
        e.cancelled("O6", at(6)),  # at its shipment's ts: not before it
        e.placed("O2", at(10), *LATER),
        e.cancelled("O7", at(15), reason="changed_mind"),  # into [08, 09): no FC3 order there
        e.placed("O3", at(20), *LATER),
        e.shipped("O2", at(20)),
        e.cancelled("O1", at(30), reason="customer"),
        e.cancelled("O2", at(40)),  # after its shipment: counted, but not in the ratio
        e.cancelled("O4", at(50)),  # before its order.placed: held
        e.placed("O5", at(65), *LATER),
        e.cancelled("O3", at(70), reason=None),  # into [09, 10) by its own ts
        e.placed("O4", at(80), *LATER),  # ... and O4's by the placed ts
        e.tick(at(121)),  # W = 10:00
    )
    assert ratios(run, "cancellation_ratio") == {
        ("FC3", at(-60)): (0, 1, 0.0),
        ("FC1", at(0)): (1, 3, 1 / 3),
        ("FC2", at(0)): (0, 1, 0.0),
        ("FC1", at(60)): (2, 2, 1.0),
    }
    assert gauge(run, "cockpit_cancellation_ratio") == {"FC1": 1.0}  # FC2, FC3: not set
    assert nonzero(run, "cockpit_orders_cancelled_total") == {
        ("FC1", "customer"): 1,
        ("FC1", "unknown"): 3,  # absent or null
        ("FC2", "unknown"): 1,
        ("FC3", "changed_mind"): 1,
    }


def test_a_cancellation_counts_once_w_passes_it_with_the_reason_of_the_earliest():
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), *LATER),
        e.cancelled("O1", at(10), reason="late"),
        e.cancelled("O1", at(9, seconds=30), reason="fraud"),  # earlier, arrives later
        e.cancelled("O1", at(9, seconds=30), reason="again"),  # the same ts, a larger id
        e.placed("O2", at(10), *LATER),
        e.cancelled("O2", at(20)),
        e.shipped("O2", at(19, seconds=30)),  # earlier than the cancellation, arrives later
        e.tick(at(21)),  # W = 08:20: O2's cancellation not passed yet
    )
    assert nonzero(run, "cockpit_orders_cancelled_total") == {("FC1", "fraud"): 1}
    run.feed(e.tick(at(21, us=1)))  # W passes 08:20
    assert nonzero(run, "cockpit_orders_cancelled_total") == {
        ("FC1", "fraud"): 1,
        ("FC1", "unknown"): 1,
    }
    run.feed(e.tick(at(61)))
    assert ratios(run, "cancellation_ratio") == {("FC1", at(0)): (1, 2, 0.5)}


@pytest.mark.parametrize("smaller_id_first", [True, False])
def test_of_two_cancellations_at_one_ts_the_smaller_event_id_decides_the_reason(
    smaller_id_first: bool,
):
    """§2: events in (ts, event_id) order, whichever arrives first; counted once."""
    e = Events()
    ties = [
        e("order.cancelled", at(10), "c-1", order_id="O1", reason="fraud"),
        e("order.cancelled", at(10), "c-2", order_id="O1", reason="late"),
    ]
    run = Run().feed(
        e.placed("O1", at(0), *LATER),
        *(ties if smaller_id_first else ties[::-1]),
        e.tick(at(12)),
    )
    assert nonzero(run, "cockpit_orders_cancelled_total") == {("FC1", "fraud"): 1}
    run.feed(e.tick(at(61)))
    assert ratios(run, "cancellation_ratio") == {("FC1", at(0)): (1, 1, 1.0)}


@pytest.mark.parametrize("shipment_first", [True, False])
def test_a_cancelled_order_past_its_promises_waits_for_its_cancellation_to_be_decided(
    shipment_first,
):
    """Both promises passed (W = 08:30), then a cancellation at 08:30:50 and a
    shipment at 08:30:20, in either order: neither is late, and the shipment,
    earlier than the cancellation, must find the order in state however they came."""
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(10), at(20)), e.tick(at(31)))
    cancel, ship = e.cancelled("O1", at(seconds=30 * 60 + 50)), e.shipped("O1", at(seconds=1820))
    run.feed(*((ship, cancel) if shipment_first else (cancel, ship)))
    run.feed(e.tick(at(130)))
    assert ratios(run, "cancellation_ratio") == {("FC1", at(0)): (0, 1, 0.0)}
    assert ratios(run, "return_ratio") == {("FC1", at(0)): (0, 1, 0.0)}
    assert run.value("cockpit_orders_cancelled_total", ("FC1", "unknown")) == 1
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 0


def test_the_units_of_an_order_gone_before_w_reaches_its_shipment_are_not_shipped():
    """O1 (4 units), cancelled, ships at 10:00:30 while in state; it leaves state
    (W past its promises and its cancellation) before W reaches the shipment: its
    units are in no return ratio, as it is in no `cockpit_orders_shipped_total`.
    O2 leaves state as W reaches its shipment: its units count."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(120), qty=4),
        e.placed("O2", at(0), at(60), at(110), qty=2),
        e.cancelled("O1", at(30)),
        e.delivered("O2", at(100)),
        e.shipped("O1", at(seconds=2 * 3600 + 30)),  # W is 09:59:30: not late
        e.shipped("O2", at(seconds=2 * 3600 + 40)),
        e.tick(at(seconds=2 * 3600 + 70)),  # W 10:00:10: O1 leaves state
        e.tick(at(seconds=2 * 3600 + 101)),  # W 10:00:41: O2 counted, and leaves
        e.returned("O2", at(130), 1),
        e.tick(at(181)),
    )
    assert ratios(run, "return_ratio") == {("FC1", at(120)): (1, 2, 0.5)}
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 1


def test_return_ratio_follows_the_earliest_shipment_while_windows_are_open():
    e = Events()
    run = Run(EngineConfig(lateness=2 * HOUR)).feed(
        e.placed("O1", at(0), *LATER, qty=4),
        e.placed("O2", at(5), *LATER, lines=[("S1", 1), ("S2", 1)]),
        e.shipped("O1", at(40)),
        e.returned("O1", at(50), 2, reason="damaged"),
        e.returned("GHOST", at(55), 1),  # an order never placed: returns never wait
        e.shipped("O2", at(70)),  # into [09, 10) from FC1, until ...
        e.shipped("O2", at(50), fc="FC2"),  # ... an earlier shipment arrives: [08, 09), FC2
        e.shipped("O3", at(115)),  # before its order: held
        e.returned("O9", at(90), 1, fc="FC3", reason=None),  # nothing shipped from FC3
        e.placed("O3", at(125), *LATER, qty=3),  # shipped into [10, 11) by the placed ts
        e.tick(at(300)),  # W = 11:00
    )
    assert ratios(run, "return_ratio") == {
        ("FC1", at(0)): (3, 4, 0.75),
        ("FC2", at(0)): (0, 2, 0.0),
        ("FC1", at(120)): (0, 3, 0.0),
    }
    assert gauge(run, "cockpit_return_ratio") == {"FC1": 0.0}
    assert nonzero(run, "cockpit_units_returned_total") == {
        ("FC1", "damaged"): 2,
        ("FC1", "unknown"): 1,
        ("FC3", "unknown"): 1,
    }


def test_click_through_ratio_per_widget_and_gauges_of_the_latest_window_only():
    e = Events()
    run = Run().feed(
        e.shown(at(0)),
        e.shown(at(1)),
        e.shown(at(2), "w2"),
        e.clicked(at(3)),
        e.clicked(at(4), "w3"),  # no impressions of w3: not set
        e.shown(at(70)),
        e.clicked(at(71)),
        e.clicked(at(72)),  # clicks of impressions seen before the window
        e.tick(at(121)),
    )
    assert ratios(run, "click_through_ratio") == {
        ("w1", at(0)): (1, 2, 0.5),
        ("w2", at(0)): (0, 1, 0.0),
        ("w1", at(60)): (2, 1, 2.0),
    }
    assert all("fc" not in r for r in run.records("kpi"))
    assert gauge(run, "cockpit_recommendation_click_through_ratio") == {"w1": 2.0}
    run.feed(e.tick(at(181)))  # [10, 11) closes without an impression
    assert gauge(run, "cockpit_recommendation_click_through_ratio") == {}


def test_ratios_with_a_zero_divisor_are_not_set():
    e = Events()
    run = Run().feed(
        e.cancelled("GHOST", at(0)),
        e.returned("O1", at(10), 1),  # nothing shipped
        e.clicked(at(20)),  # no impressions
        e.tick(at(61)),
    )
    assert run.records("kpi") == []
    for metric in ("cancellation_ratio", "return_ratio", "recommendation_click_through_ratio"):
        assert gauge(run, f"cockpit_{metric}") == {}


def test_a_reason_takes_a_place_under_the_cap_only_once_it_decides():
    """Of two cancellations at one ts, the one with the larger id arrives first:
    its reason never counts, so the one place under the cap goes to the other."""
    e = Events()
    run = Run(max_label_values=1).feed(
        e.placed("O1", at(0), *LATER),
        e("order.cancelled", at(10), "c-2", order_id="O1", reason="late"),
        e("order.cancelled", at(10), "c-1", order_id="O1", reason="fraud"),
        e.tick(at(12)),
    )
    assert nonzero(run, "cockpit_orders_cancelled_total") == {("FC1", "fraud"): 1}
    assert run.value("cockpit_label_overflow_total", "reason") == 0


def test_a_reason_an_earlier_release_folded_is_not_folded_again():
    """The customer family at state version 2 folded a cancellation's reason when
    heard, and kept the label in its timer: restored, it counts under that label,
    and the fold it counted then is not counted twice."""
    e = Events()
    run = Run(max_label_values=1).feed(
        e.placed("O1", at(0), *LATER),
        e.placed("O2", at(0), *LATER),
        e("order.cancelled", at(1), "c-1", order_id="O1", reason="a"),
        e.tick(at(3)),  # "a" counts: the cap is full
        e("order.cancelled", at(5), "c-2", order_id="O2", reason="b"),
    )
    header = pickle.loads(dump_shard(run.shard))
    body = pickle.loads(header["body"])
    family = body["family_order"].index("customer") << 4  # its cancellation timers: tag 0
    body["runtime"]["timers"] = [  # as version 2 kept them: "b" folded when heard
        (when, slot, key, (*ref[:2], "other", ref[3]) if slot == family else ref)
        for when, slot, key, ref in body["runtime"]["timers"]
    ]
    header["versions"]["customer"], header["body"] = 2, pickle.dumps(body)
    run.shard = run.every["0"] = load_shard(
        pickle.dumps(header), run.config, run.shard.labels, FAMILIES, upgrade
    )
    run.shard.ledger.series["cockpit_label_overflow_total"]["reason"] = 1  # counted then
    run.feed(e.tick(at(7)))
    assert nonzero(run, "cockpit_orders_cancelled_total") == {("FC1", "a"): 1, ("FC1", "other"): 1}
    assert run.value("cockpit_label_overflow_total", "reason") == 1


def test_reasons_are_capped_like_every_label_taken_from_events():
    e = Events()
    run = Run(max_label_values=2).feed(
        e.placed("O1", at(0), *LATER),
        e.placed("O2", at(1), *LATER),
        e.cancelled("O1", at(2), reason="a"),
        e.cancelled("O2", at(3), reason="b"),
        e.tick(at(10)),  # W passes both cancellations: their reasons take the places
        e.returned("O1", at(11), 5, reason="c"),  # a third reason: folded
    )
    assert nonzero(run, "cockpit_orders_cancelled_total") == {("FC1", "a"): 1, ("FC1", "b"): 1}
    assert nonzero(run, "cockpit_units_returned_total") == {("FC1", "other"): 5}
    assert run.value("cockpit_label_overflow_total", "reason") == 1


def test_ratio_records_follow_their_schema():
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), *LATER),
        e.shipped("O1", at(1)),
        e.returned("O1", at(2), 1),
        e.shown(at(3)),
        e.tick(at(61)),
    )
    validator = Draft202012Validator(output_schemas()["kpi"])
    records = run.records("kpi")
    kinds = {r["kpi"] for r in records}
    assert {"cancellation_ratio", "return_ratio", "click_through_ratio"} <= kinds
    for record in records:
        assert list(validator.iter_errors(record)) == [], record
    clicks = next(r for r in records if r["kpi"] == "click_through_ratio")
    assert not validator.is_valid({**clicks, "fc": "FC1"})  # a widget's record has no fc
    assert not validator.is_valid({k: v for k, v in clicks.items() if k != "widget"})


def test_the_cancellation_ratio_counts_orders_not_units():
    """O1 (3 units) is cancelled, O2 (2 units in two lines) is not: 1 of 2 orders."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), *LATER, qty=3),
        e.placed("O2", at(5), *LATER, lines=[("S1", 1), ("S2", 1)]),
        e.cancelled("O1", at(10)),
        e.tick(at(61)),
    )
    assert ratios(run, "cancellation_ratio") == {("FC1", at(0)): (1, 2, 0.5)}


def test_the_parts_of_each_shard_add_up():
    """The orders and impressions of one window come from two shards: each ratio
    adds both shards' numerators and divisors."""
    e = Events()
    run = Run(shards=("a", "b"))
    run.feed(
        e.placed("O1", at(0), *LATER),
        e.shown(at(1)),
        e.clicked(at(2)),
        e.placed("O2", at(5), *LATER),
        e.cancelled("O1", at(10)),
        e.tick(at(61)),
        shard="a",
    )
    run.feed(
        e.shown(at(3)),
        e.shown(at(4)),
        e.placed("O3", at(20), *LATER),
        e.cancelled("O3", at(30)),
        e.tick(at(61)),
        shard="b",
    )
    assert ratios(run, "cancellation_ratio") == {("FC1", at(0)): (2, 3, 2 / 3)}
    assert ratios(run, "click_through_ratio") == {("w1", at(0)): (1, 3, 1 / 3)}
    assert gauge(run, "cockpit_cancellation_ratio") == {"FC1": 2 / 3}


def test_returned_units_count_at_the_fc_of_the_return():
    """O1 (2 units) ships from FC1, O2 (4 units) from FC2; one unit of O2 comes
    back to FC2: FC1 0 of 2, FC2 1 of 4."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), *LATER, qty=2),
        e.placed("O2", at(0), *LATER, fc="FC2", qty=4),
        e.shipped("O1", at(10)),
        e.shipped("O2", at(10), fc="FC2"),
        e.returned("O2", at(20), 1, fc="FC2"),
        e.tick(at(61)),
    )
    assert ratios(run, "return_ratio") == {
        ("FC1", at(0)): (0, 2, 0.0),
        ("FC2", at(0)): (1, 4, 0.25),
    }


def test_the_gauges_are_set_when_nothing_takes_ratio_records():
    e = Events()
    run = Run(takes_records=False).feed(
        e.placed("O1", at(0), *LATER),
        e.placed("O2", at(1), *LATER),
        e.cancelled("O1", at(2)),
        e.tick(at(61)),
    )
    assert run.records("kpi") == []
    assert gauge(run, "cockpit_cancellation_ratio") == {"FC1": 0.5}
