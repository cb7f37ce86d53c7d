"""The deliveries family (contract §3.1): late deliveries per region."""

from __future__ import annotations

import pytest

from tests.scenario import Events, Run, at


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
    got = {k: v for k, v in run.series("cockpit_deliveries_total").items() if v}
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


@pytest.mark.parametrize(
    ("cancelled", "late"),
    [
        (at(10), 0),
        (at(120), 0),  # exactly at the promise: cancelled when it passed
        (at(120, ms=1), 1),  # the promise passed first
    ],
)
def test_an_order_cancelled_by_its_delivery_promise_is_not_late(cancelled, late):
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(120)), e.cancelled("O1", cancelled), e.tick(at(500))
    )
    assert run.value("cockpit_late_deliveries_total", "east") == late
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    assert run.orders() == {}


def test_a_delivery_at_the_promise_arriving_when_w_reaches_it_is_on_time():
    """Dd passes when W > Dd (contract §2): at W = Dd a delivery at Dd may still
    come, and it is on time (contract §3.1); nothing was late meanwhile."""
    e = Events()
    run = Run().feed(
        e.placed("O1", at(0), at(60), at(120)), e.shipped("O1", at(30)), e.tick(at(121))
    )  # W = Dd
    assert run.value("cockpit_late_deliveries_total", "east") == 0
    assert run.value("cockpit_orders_past_delivery_promise", "east") == 0
    run.feed(e.delivered("O1", at(120)), e.tick(at(300)))
    assert run.value("cockpit_late_deliveries_total", "east") == 0
    assert run.value("cockpit_deliveries_total", ("east", "true")) == 1
    assert run.value("cockpit_deliveries_total", ("east", "false")) == 0
    assert ("late_delivery", "O1") not in run.alerts()
