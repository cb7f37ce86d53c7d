"""Table-driven tests of each KPI of contract §3, through the shard engine."""

from __future__ import annotations

import pickle

import pytest

from flows.decode import decode
from flows.engine import EngineConfig
from flows.labels import LabelCap
from tests.scenario import Events, Run, at, us

# --- ship SLA


@pytest.mark.parametrize(
    ("ship_offset_s", "cancel_offset_s", "breach", "shipped"),
    [
        (0, None, 0, {("FC1", "true"): 1}),  # shipped exactly at the promise
        (0.001, None, 1, {("FC1", "false"): 1}),  # one millisecond late
        (-600, None, 0, {("FC1", "true"): 1}),
        (None, -0.001, 0, {}),  # cancelled just before the promise
        (None, 0, 0, {}),  # cancelled at the promise
        (None, 0.001, 1, {}),  # cancelled just after: breached
        (None, None, 1, {}),  # never shipped, deadline passed
        (3600, -60, 0, {("FC1", "false"): 1}),  # cancelled in time, shipped later anyway
    ],
)
def test_ship_sla(ship_offset_s, cancel_offset_s, breach, shipped):
    e = Events()
    lines = [e.placed("O1", at(0), at(60), at(3000))]
    if cancel_offset_s is not None:
        lines.append(e.cancelled("O1", at(60, seconds=cancel_offset_s)))
    if ship_offset_s is not None:
        lines.append(e.shipped("O1", at(60, seconds=ship_offset_s)))
    lines.append(e.tick(at(200)))
    run = Run().feed(*lines)
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == breach
    assert {
        k: v for k, v in run.engine.ledger["cockpit_orders_shipped_total"].items() if v
    } == shipped
    assert run.alerts() == ({("ship_sla_breach", "O1")} if breach else set())


def test_breach_is_detected_when_the_watermark_passes_without_an_event_of_the_order():
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(60), at(3000)), e.tick(at(61)))
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 0  # W = 60:00, not > S
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0
    run.feed(e.tick(at(61, seconds=0.001)))  # W = 60:00.001 > S
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 1
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 1
    assert run.alerts() == {("ship_sla_breach", "O1")}
    # A late shipment afterwards counts as a late shipment (once W reaches it, when no
    # earlier shipment can come any more), not as a second breach.
    run.feed(e.shipped("O1", at(90)))
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0
    run.feed(e.tick(at(91)))
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 1
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0


def test_slightly_late_shipment_is_decided_when_the_deadline_passes():
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(60), at(3000)), e.shipped("O1", at(60, seconds=30)))
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0  # not certain yet
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0
    run.feed(e.tick(at(62)))
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 1
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0


def test_order_events_arriving_before_the_order_within_the_lateness():
    e = Events()
    lines = [
        e.tick(at(0)),
        e.shipped("O1", at(1)),
        e.picked("O1", at(0, seconds=40)),
        e.placed("O1", at(0, seconds=30), at(60), at(3000)),
        e.delivered("O1", at(50)),
        e.tick(at(4000)),
    ]
    run = Run().feed(*lines).finish()
    assert run.value("cockpit_orders_shipped_total", ("FC1", "true")) == 1
    assert run.value("cockpit_deliveries_total", ("east", "true")) == 1
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 0
    assert run.value("cockpit_orders_in_stage", ("FC1", "placed")) == 0
    assert run.engine.orders == {}  # done, nothing held


def test_orphan_events_are_dropped_once_the_horizon_has_passed():
    e = Events()
    run = Run().feed(
        e.stowed("R9", at(0), 5),
        e.shipped("O9", at(0)),
        e.shipped("O9", at(30)),
        e.stowed("R9", at(600), 5),
        e.tick(at(24 * 60 + 1)),
    )  # W = ts + 24 h exactly: not passed
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 0
    run.feed(e.tick(at(24 * 60 + 1, ms=1)))
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 1
    assert run.value("cockpit_orphan_events_total", "inventory.stowed") == 1
    assert len(run.engine.order_orphans["O9"]) == 1  # the later one is still held
    run.finish()  # W = 08:00:00.001 the next day + 1 min: nothing more passes
    assert run.value("cockpit_orphan_events_total", "inventory.stowed") == 1


def test_stages_of_orders_awaiting_shipment():
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(600), at(3000)),
        e.placed("O2", at(0), at(600), at(3000)),
        e.picked("O2", at(1)),
        e.picked("O2", at(2)),
        e("inventory.packed", at(3), order_id="O2", fc="FC1"),
    )
    assert run.value("cockpit_orders_in_stage", ("FC1", "placed")) == 1
    assert run.value("cockpit_orders_in_stage", ("FC1", "packed")) == 1
    assert run.value("cockpit_orders_in_stage", ("FC1", "picked")) == 0
    run.feed(e.shipped("O2", at(5)), e.cancelled("O1", at(6)))
    assert run.value("cockpit_orders_in_stage", ("FC1", "packed")) == 0
    assert run.value("cockpit_orders_in_stage", ("FC1", "placed")) == 0
    assert run.value("cockpit_orders_cancelled_total", "FC1") == 1


# --- deliveries


@pytest.mark.parametrize(
    ("updates", "deliveries", "late"),
    [
        ([("delivered", 0)], {("east", "true"): 1}, 0),  # exactly at the promise
        ([("delivered", 0.001)], {("east", "false"): 1}, 1),
        ([("delivered", -5), ("delivered", 60)], {("east", "true"): 1}, 0),  # second ignored
        ([("delivered", 30), ("delivered", -5)], {("east", "true"): 1}, 0),  # earliest decides
        ([("failed_attempt", -60), ("out_for_delivery", -30)], {}, 1),  # never delivered
        ([], {}, 1),
    ],
)
def test_deliveries(updates, deliveries, late):
    e = Events()
    lines = [e.placed("O1", at(0), at(60), at(120)), e.shipped("O1", at(30))]
    lines += [e.delivered("O1", at(120, seconds=offset), status) for status, offset in updates]
    run = Run().feed(*lines, e.tick(at(300))).finish()
    got = {k: v for k, v in run.engine.ledger["cockpit_deliveries_total"].items() if v}
    assert got == deliveries
    assert run.value("cockpit_late_deliveries_total", "east") == late
    assert run.value("cockpit_orders_past_delivery_promise", "east") == (1 if not deliveries else 0)


def test_lost_delivery_is_late_once_then_a_late_delivery_clears_the_gauge():
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(120)), e.shipped("O1", at(30)), e.tick(at(125))
    )
    assert run.value("cockpit_late_deliveries_total", "east") == 1
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 1
    run.feed(e.delivered("O1", at(130)), e.tick(at(200)))
    assert run.value("cockpit_late_deliveries_total", "east") == 1
    assert run.value("cockpit_deliveries_total", ("east", "false")) == 1
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    assert ("late_delivery", "O1") in run.alerts()


def test_cancelled_before_the_delivery_promise_is_not_late():
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(120)), e.cancelled("O1", at(10)), e.tick(at(500))
    )
    assert run.value("cockpit_late_deliveries_total", "east") == 0
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    assert run.engine.orders == {}


# --- dock-to-stock


@pytest.mark.parametrize(
    ("stows", "completed_s"),
    [
        ([(20, 4), (50, 6)], 50),  # partial stows reaching the received quantity
        ([(50, 6), (20, 4)], 50),  # arriving out of order, within the lateness
        ([(20, 4), (30, 7)], 30),  # over-stow
        ([(60, 10), (20, 10)], 20),  # an earlier stow alone completes it
        ([(20, 3), (30, 3), (40, 4)], 40),
    ],
)
def test_dock_to_stock(stows, completed_s):
    e = Events()
    lines = [e.received("R1", at(0), 10)] + [e.stowed("R1", at(seconds=s), q) for s, q in stows]
    run = Run().feed(*lines).finish()
    counts = run.value("cockpit_dock_to_stock_seconds", "FC1")
    assert counts[-1] == completed_s  # the sum of observations, in seconds
    assert sum(counts[:-1]) == 1
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0


def test_receipt_awaits_stow_until_complete_and_is_observed_once_final():
    e = Events()
    run = Run().feed(e.received("R1", at(0), 10), e.stowed("R1", at(5), 4))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 1
    run.feed(e.stowed("R1", at(20), 6))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert run.value("cockpit_dock_to_stock_seconds", "FC1") == 0  # W = 19:00 < 20:00
    run.feed(e.tick(at(21)))
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == 1200
    # Stows received before the dock scan wait for it.
    run.feed(e.stowed("R2", at(22), 5), e.received("R2", at(21, seconds=30), 5), e.tick(at(30)))
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == 1200 + 30


# --- inventory and sell-through


def test_on_hand_and_sell_through_over_windows():
    e = Events()
    lines = [
        e.adjusted(at(0), 100),  # window 08:00
        e.stowed("R1", at(10), 20),
        e.placed("O1", at(20), at(600), at(3000), qty=12),
        e.picked("O1", at(30), 12),
        e.placed("O2", at(70), at(600), at(3000), qty=9),  # window 09:00
        e.stowed("R2", at(80), 10),
        e.adjusted(at(90), -3),
        e.tick(at(185)),  # closes 10:00; the 10:00 window stays quiet
    ]
    run = Run().feed(*lines)
    kpis = {(r["kpi"], r["window_start"]): r for r in run.records("kpi")}
    first = kpis[("sell_through", at(0))]
    assert (first["numerator"], first["divisor"]) == (12, 0 + 20)  # nothing before 08:00
    second = kpis[("sell_through", at(60))]
    assert (second["numerator"], second["divisor"]) == (9, 108 + 10)
    assert second["value"] == pytest.approx(9 / 118)
    assert ("sell_through", at(120)) not in kpis  # no event in any fc: no record
    assert run.value("cockpit_sell_through_ratio", "FC1") == 0.0  # latest closed is quiet
    assert run.value("cockpit_units_on_hand", "FC1") == 100 + 20 - 12 + 10 - 3
    cover = kpis[("days_of_cover", at(60))]
    assert cover["value"] == pytest.approx((108 + 10 - 3) / (9 * 24))


def test_sell_through_is_not_set_when_the_divisor_is_zero():
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(600), at(3000), qty=2), e.tick(at(61)))
    assert "FC1" not in run.windows.ledger.series["cockpit_sell_through_ratio"]
    assert [r["kpi"] for r in run.records("kpi")] == ["days_of_cover"]


# --- duplicates, lateness, watermark


def test_duplicates_and_late_events_are_counted_and_ignored():
    e = Events()
    placed = e.placed("O1", at(10), at(600), at(3000), event_id="dup")
    run = Run().feed(
        placed,
        placed,
        e.tick(at(20)),
        e.adjusted(at(18, seconds=59), 5),
        e.adjusted(at(19, seconds=1), 7),
    )
    assert run.value("cockpit_events_duplicate_total", "order.placed") == 1
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_units_on_hand", "FC1") == 7
    assert run.value("cockpit_events_total", "order.placed") == 1
    assert run.value("cockpit_watermark_timestamp_seconds") == run.engine.watermark / 1e6
    run.finish()
    assert run.engine.watermark == run.engine.max_ts["input"]


def test_a_late_event_sent_again_is_a_duplicate():
    e = Events()
    late = e.adjusted(at(0), 5)
    run = Run().feed(e.tick(at(10)), late, late)
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1


def test_ids_are_remembered_until_the_horizon():
    e = Events()
    first = e.adjusted(at(0), 5)
    run = Run().feed(first, e.tick(at(24 * 60 + 60)), first)  # W = 08:59 next day
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    run.feed(e.tick(at(24 * 60 + 61)), first)  # W = 09:00: the 08:00 hour is forgotten
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1


def test_rejects_go_to_the_dead_letter_output_with_reason():
    run = Run().feed(b"not json", b'{"type": "nope"}', b'{"type": "order.shipped"}', b"\xff")
    reasons = [r["reason"] for r in run.records("dlq")]
    assert reasons == ["invalid_json", "unknown_type", "invalid_event", "invalid_json"]
    assert run.value("cockpit_events_rejected_total", "invalid_json") == 2
    assert run.records("dlq")[3]["payload_encoding"] == "base64"


def test_watermark_is_the_minimum_over_partitions_that_are_not_idle():
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.engine.process(
        "a", [decode(e.placed("O1", at(0), at(10), at(3000))), decode(e.tick(at(100)))]
    )
    assert run.engine.watermark < 0  # b has not reported
    run.engine.mark("b", us(at(50)), idle=False)
    assert run.engine.watermark == us(at(49))
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    run.engine.mark("b", us(at(50)), idle=True)  # b idle: only a counts
    assert run.engine.watermark == us(at(99))
    run.engine.mark("a", us(at(100)), idle=True)  # all idle: drained, W = max ts
    assert run.engine.watermark == us(at(100))


# --- labels and state


def test_label_values_fold_into_other_beyond_the_cap():
    e = Events()
    run = Run(max_label_values=2).feed(*(e.adjusted(at(i), 1, fc=f"FC{i}") for i in range(4)))
    assert run.engine.ledger["cockpit_units_on_hand"] == {"FC0": 1, "FC1": 1, "other": 2}
    assert run.value("cockpit_label_overflow_total", "fc") == 2


def test_engine_state_survives_pickling_with_its_labels():
    e = Events()
    run = Run(max_label_values=1).feed(
        e.placed("O1", at(0), at(60), at(3000)), e.adjusted(at(1), 5, fc="FC2")
    )
    labels = LabelCap(1)
    restored = pickle.loads(pickle.dumps(run.engine)).attach(run.config, labels)
    assert labels.export() == {"fc": ["FC1"], "region": ["east"]}
    restored.process("input", [decode(e.tick(at(62)))])
    assert restored.ledger["cockpit_ship_sla_breaches_total"] == {"FC1": 1}
    assert restored.ledger["cockpit_units_on_hand"] == {"other": 5}


def test_retention_drops_open_orders_and_their_gauges():
    e = Events()
    run = Run(EngineConfig(retention=3600 * 10**6)).feed(
        e.placed("O1", at(0), at(10), at(20)), e.tick(at(81))
    )
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    assert run.value("cockpit_state_expired_total", "order") == 1
    assert run.engine.orders == {}
