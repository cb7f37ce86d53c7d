"""The orders and ship-SLA family (contract §3.1): table tests through one shard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.settings import EngineConfig
from flows.timeutil import format_time
from tests.scenario import Events, Run, at, us


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
    assert {k: v for k, v in run.series("cockpit_orders_shipped_total").items() if v} == shipped
    assert run.alerts() == ({("ship_sla_breach", "O1")} if breach else set())


@pytest.mark.parametrize(
    ("decided_ms", "named"),
    [(1, False), (2, True)],
    ids=["shipped at the decision", "shipped before it"],
)
def test_a_breach_names_a_shipment_only_when_it_is_before_the_decision(decided_ms, named):
    """README, Semantics: `shipped_ts` is s when s < decided_ts, else null (a
    shipment at W may not have arrived yet when W passes S)."""
    e = Events()
    s = us(at(60)) + 1000  # 1 ms late
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(3000)),
        e.tick(at(61)),  # W = S
        e.shipped("O1", format_time(s)),  # not decided yet
        e.tick(at(61, ms=decided_ms)),  # W passes S: decided at this W
    )
    [alert] = [r for r in run.records("alert") if r["alert"] == "ship_sla_breach"]
    assert alert["decided_ts"] == format_time(us(at(60)) + decided_ms * 1000)
    assert alert["shipped_ts"] == (format_time(s) if named else None)


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
    # A late shipment afterwards counts as a late shipment (once W passes it, when no
    # earlier shipment, nor one at its ts with a smaller event id, can come), not as a
    # second breach.
    run.feed(e.shipped("O1", at(90)))
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0
    run.feed(e.tick(at(91)))  # W = 90:00, the shipment's ts
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0
    run.feed(e.tick(at(91, us=1)))
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
    assert run.orders() == {}  # done, nothing held


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
    assert len(run.orphans()["O9"]) == 1  # the later one is still held
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


def test_retention_drops_open_orders_and_their_gauges():
    e = Events()
    run = Run(EngineConfig(retention=3600 * 10**6)).feed(
        e.placed("O1", at(0), at(10), at(20)),
        e.tick(at(82)),  # W 09:21, past 08:20 + 1 h
    )
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0
    assert run.value("cockpit_orders_awaiting_shipment", "FC1") == 0
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    assert run.value("cockpit_state_expired_total", "order") == 1
    assert run.orders() == {}


def test_retention_has_not_passed_while_w_is_at_its_deadline():
    """O1's later promise 08:20 plus 1 h: at W = 09:20 a shipment then is not late
    and finds the order; an order and a receipt drop only once W passes 09:20 (and
    the shipment counts then)."""
    e = Events()
    run = Run(EngineConfig(retention=3600 * 10**6))
    run.feed(e.placed("O1", at(0), at(10), at(20)), e.received("R1", at(20), 5))
    run.feed(e.tick(at(81)), e.shipped("O1", at(80)), e.stowed("R1", at(80), 5))
    assert run.value("cockpit_state_expired_total", "order") == 0
    assert run.value("cockpit_state_expired_total", "receipt") == 0
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == 3600 * 10**6  # µs
    run.feed(e.tick(at(81, us=1)))  # W passes 09:20: the shipment counts, then O1 leaves
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 1
    assert run.value("cockpit_state_expired_total", "order") == 1  # never delivered


@pytest.mark.parametrize("earlier_first", [True, False])
def test_each_held_event_is_dropped_at_its_own_horizon_in_any_arrival_order(earlier_first):
    """Two shipments of an order not placed yet, 6 µs apart, in either order: the
    earlier one is dropped once W passes its ts + 24 h; the later one ships the order."""
    e = Events()
    early, late = e.shipped("O1", at(600, us=-3)), e.shipped("O1", at(600, us=3))
    run = Run(replace(EngineConfig(), lateness=300 * 10**6))
    run.feed(*((early, late) if earlier_first else (late, early)))
    placed = e.placed("O1", at(600, days=1), at(720, days=1), at(960, days=1))
    run.feed(e.tick(at(605, days=1)), placed).finish()
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 1
    cycle = run.value("cockpit_order_cycle_seconds", "FC1")
    assert cycle[-1] == -86400 * 10**6 + 3  # whole µs  # from the later shipment


def test_a_held_event_is_kept_while_w_is_at_its_horizon_and_dropped_once_w_passes_it():
    """A held event is dropped when W passes its ts + 24 h, not when W reaches it:
    the earlier event's timer, firing at that W, leaves the later one held."""
    e = Events()
    run = Run().feed(e.cancelled("O1", at(0, us=-1)), e.shipped("O1", at(0)))
    run.feed(e.tick(at(1, days=1)))  # W = ts of the shipment + 24 h
    assert run.value("cockpit_orphan_events_total", "order.cancelled") == 1
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 0
    run.feed(e.tick(at(1, days=1, us=1)))
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 1


def test_a_ship_promise_at_the_last_ts_of_a_finite_input_has_not_passed():
    """At the end of a finite input W becomes the largest accepted ts (contract §2),
    and S passes only when W > S: a promise at that ts is not breached."""
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(10), at(3000)), e.tick(at(10))).finish()
    assert run.shard.watermark == us(at(10))
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 0
    assert run.value("cockpit_orders_past_ship_promise", "FC1") == 0
    assert ("ship_sla_breach", "O1") not in run.alerts()


def test_a_per_order_alert_names_the_fc_and_region_a_label_cap_folded():
    """One value per label: O2's fc and region fold into `other` in the metrics, but
    its alerts, records of one order, name them as its events do."""
    e = Events()
    run = Run(max_label_values=1).feed(
        e.placed("O1", at(0), at(600), at(900)),
        e.placed("O2", at(0), at(10), at(20), fc="FC2", region="west"),
        e.tick(at(30)),
    )
    assert run.value("cockpit_ship_sla_breaches_total", "other") == 1
    named = {(r["alert"], r["order_id"], r["fc"], r["region"]) for r in run.records("alert")}
    assert named == {
        ("ship_sla_breach", "O2", "FC2", "west"),
        ("late_delivery", "O2", "FC2", "west"),
    }


@pytest.mark.parametrize("smaller_id_first", [True, False])
def test_of_two_shipments_at_one_ts_the_smaller_event_id_ships_the_order(smaller_id_first):
    """§2: events in (ts, event_id) order, whichever arrives first. The shipment is
    final once W passes its ts (a tie may come while W is at it): it counts once,
    from FC2, in units shipped, shipments and the shift's orders shipped."""
    e = Events()
    ties = [
        e("order.shipped", at(30), "s-1", order_id="O1", fc="FC2"),
        e("order.shipped", at(30), "s-2", order_id="O1", fc="FC3"),
    ]
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(3000)),
        *(ties if smaller_id_first else ties[::-1]),
        e.tick(at(31)),  # W = the shipments' ts: not final yet
    )
    assert run.value("cockpit_units_shipped_total", "FC2") == 0
    run.feed(e.tick(at(31, us=1)), e.tick(at(60 * 16)))  # W passes it; then the shift ends
    assert {k: v for k, v in run.series("cockpit_units_shipped_total").items() if v} == {"FC2": 1}
    assert {k: v for k, v in run.series("cockpit_orders_shipped_total").items() if v} == {
        ("FC2", "true"): 1
    }
    shipped = [(r["fc"], r["orders_shipped"]) for r in run.records("kpi") if r["kpi"] == "shift"]
    assert ("FC2", 1) in shipped and ("FC3", 1) not in shipped


def test_a_shipment_at_the_last_ts_of_a_finite_input_counts_at_its_end():
    """At the end of the input W is its last ts: nothing can come after it, so a
    shipment then is final (a deadline at that ts has not passed)."""
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(30), at(3000)), e.shipped("O1", at(30)))
    run.finish()
    assert run.value("cockpit_orders_shipped_total", ("FC1", "true")) == 1
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 0
    assert run.alerts() == set()


def test_a_late_shipment_known_at_the_deadline_counts_once_w_passes_it():
    """O1 ships at 09:00:30, 30 s after its ship promise, and is delivered (late:
    promised by 08:30) at 09:00:45, both known before W passes 09:00. There the
    breach is decided and every other family has let O1 go, but the order stays
    until W passes 09:00:30, where its shipment counts, late."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(30)),
        e.shipped("O1", at(60, seconds=30)),
        e.delivered("O1", at(60, seconds=45)),  # W = 08:59:45
        e.tick(at(61, seconds=10)),  # W = 09:00:10
    )
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0
    run.feed(e.tick(at(62)))  # W = 09:01
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 1
    assert run.value("cockpit_units_shipped_total", "FC1") == 1
    assert run.orders() == {}


def test_a_shipment_at_w_when_the_retention_passes_leaves_with_the_order():
    """README, Semantics: O1's later promise 08:20 plus 1 h passes while W is at
    its shipment's ts, 09:20:30 (not final yet: a tie may still come): the order
    leaves state uncounted; W passing 09:20:30 then counts nothing."""
    e = Events()
    run = Run(EngineConfig(retention=3600 * 10**6)).feed(
        e.placed("O1", at(0), at(10), at(20)),
        e.shipped("O1", at(80, seconds=30)),  # W = 09:19:30
        e.tick(at(81, seconds=30)),  # W = 09:20:30, the shipment's ts
    )
    assert run.value("cockpit_state_expired_total", "order") == 1
    run.feed(e.tick(at(90)))
    assert run.value("cockpit_orders_shipped_total", ("FC1", "false")) == 0
    assert run.value("cockpit_units_shipped_total", "FC1") == 0


def test_an_order_whose_held_events_all_dropped_leaves_no_entry():
    """O9's one held shipment is dropped once W passes its ts + 24 h: nothing of O9
    is held any more, not even an empty list."""
    e = Events()
    run = Run().feed(e.shipped("O9", at(0)), e.tick(at(24 * 60 + 1, ms=1)))
    assert run.value("cockpit_orphan_events_total", "order.shipped") == 1
    assert run.orphans() == {}
    assert run.value("cockpit_state_entries", "orphans") == 0


def test_a_shipment_restored_without_its_event_id_keeps_its_fc_against_a_tie():
    """An order from a snapshot of state version 2 may hold its earliest shipment
    without that event's id: a shipment at the same ts then does not replace it
    (which of the two came first is unknown), so O1 ships from FC3."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(3000)),
        e("order.shipped", at(30), "s-2", order_id="O1", fc="FC3"),
    )
    run.orders()["O1"].ship_id = None  # as restored from version 2
    run.feed(e("order.shipped", at(30), "s-1", order_id="O1", fc="FC2"), e.tick(at(32)))
    assert {k: v for k, v in run.series("cockpit_units_shipped_total").items() if v} == {"FC3": 1}


def test_a_snapshot_without_retention_timers_sets_them_past_the_later_promise():
    """Restored from a snapshot whose orders had no retention timer, with a 1 h
    retention on: O1 (later promise 08:20) leaves once W passes 09:20, not at it."""
    config = EngineConfig(retention=3600 * 10**6)
    e = Events()
    before = Run().feed(e.placed("O1", at(0), at(10), at(20)))
    state = before.shard.family("orders_entity").export_state()
    run = Run(config)
    run.shard.family("orders_entity").restore_state({**state, "retention_timers": False})
    run.feed(e.tick(at(81)))  # W = 09:20
    assert run.value("cockpit_state_expired_total", "order") == 0
    run.feed(e.tick(at(81, us=1)))
    assert run.value("cockpit_state_expired_total", "order") == 1
